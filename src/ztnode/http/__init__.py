"""HTTP on the overlay with the libraries people use: httpx and requests clients, ASGI served by
uvicorn, WSGI through the stdlib's server on the blocking facade. Each library is optional
(``pip install 'ztnode[http]'``); nothing here imports one until it is asked for.

* :mod:`ztnode.http.httpx_transport`: ``AsyncZtTransport(node)``, ``ZtTransport(blocking_node)``
* :mod:`ztnode.http.requests_adapter`: ``session(blocking_node)``, ``ZtAdapter``
* :mod:`ztnode.http.client`: ``http.client`` connections over a node or a network
* :mod:`ztnode.http.asgi`: ``serve_asgi(network, app)``, ``serve_asgi_blocking``
* :mod:`ztnode.http.wsgi`: ``serve_wsgi(blocking_network, app)``
"""
