"""The stdlib's HTTP clients over a ZeroTier network, with no global patching.

Why: ``http.client`` and ``urllib`` open their connections with ``socket.create_connection``.
An ``http.client`` connection object can be pointed at a network's ``create_connection``; these
classes do that for every connection ``urllib`` makes, so ``opener.open("https://10.1.2.3/")``
runs over the overlay, TLS included (``context.wrap_socket`` takes ztnode sockets, see
:mod:`ztnode.sockets.blocking.tls`).
"""

from __future__ import annotations

import http.client
import ssl
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ztnode.sockets.blocking.node import BlockingNetwork

__all__ = ["url_opener"]


def url_opener(
    network: BlockingNetwork, *, context: ssl.SSLContext | None = None
) -> urllib.request.OpenerDirector:
    """A ``urllib`` opener whose http:// and https:// connections go over ``network``
    (``context`` checks servers' certificates; the system's default when None)."""

    class Http(http.client.HTTPConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = network.create_connection

    class Https(http.client.HTTPSConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = network.create_connection

    class HttpHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Http, req)

    class HttpsHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Https, req, context=context)

    # No proxies from the environment: HTTP_PROXY names a kernel proxy, which cannot reach
    # the overlay addresses this opener connects to.
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), HttpHandler(), HttpsHandler(context=context)
    )
