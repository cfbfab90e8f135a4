"""HTTP on the overlay with the libraries people use: httpx and requests clients, ASGI served by
uvicorn, WSGI through the stdlib's server on the blocking facade. Each library is optional
(``pip install 'ztnode[http]'``); nothing here imports one until it is asked for."""
