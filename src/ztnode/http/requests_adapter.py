"""requests on the overlay: ``session(blocking_node)``, or ``ZtAdapter(blocking_node)`` mounted
on a session of your own.

Why an adapter whose pools make their connections with classes of ours: requests sends through
urllib3, and a urllib3 connection makes its socket in one method, ``_new_conn`` (urllib3 2.x);
TLS (``context.wrap_socket``, which takes ztnode sockets), certificate and hostname checks,
pooling and keep-alive, retries and timeouts all happen around it. :class:`ZtAdapter`'s pool
manager builds pools whose connection classes override that method: the node's ``lookup``
says whether the host is on the overlay (an IP literal a network routes, an overlay name), and
then the socket is a ztnode one, each address tried in turn; any other host is left to urllib3
(kernel sockets) unless ``overlay_only``. Errors are urllib3's own (``NewConnectionError``,
``ConnectTimeoutError``, ``NameResolutionError``), so requests raises what it always does:
``ConnectionError``, ``ConnectTimeout``, ``ReadTimeout``.

The environment's proxies (``HTTP_PROXY``...) are kernel ones: requests to overlay hosts skip
them. Use from any thread but the node's loop thread. Needs the ``http`` extra.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import urlsplit

import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from ztnode.http._routing import connect_blocking, lookup_blocking, not_on_overlay

if TYPE_CHECKING:
    from ztnode.sockets.blocking.node import BlockingNode

__all__ = ["ZtAdapter", "ZtHTTPConnection", "ZtHTTPSConnection", "session"]


def _new_conn(
    conn: HTTPConnection,
    node: BlockingNode,
    overlay_only: bool,
    kernel: Callable[[], socket.socket],
) -> socket.socket:
    """The socket for one urllib3 connection (module docstring)."""
    host = conn.host
    try:
        targets = lookup_blocking(node, host)
    except socket.gaierror as exc:
        raise NameResolutionError(host, conn, exc) from exc
    if not targets:
        if overlay_only:
            reason = not_on_overlay(host, node.address)
            raise NewConnectionError(conn, f"Failed to establish a new connection: {reason}")
        return kernel()
    port = conn.port if conn.port is not None else conn.default_port
    try:
        sock = connect_blocking(
            targets,
            port,
            conn.timeout,
            source_address=conn.source_address,
            socket_options=conn.socket_options or (),
        )
    except TimeoutError as exc:
        raise ConnectTimeoutError(
            conn, f"Connection to {host} timed out. (connect timeout={conn.timeout})"
        ) from exc
    except OSError as exc:
        raise NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from exc
    sys.audit("http.client.connect", conn, host, port)
    return cast(socket.socket, sock)  # a socket.socket look-alike, TLS included


class ZtHTTPConnection(HTTPConnection):
    """urllib3's connection with its socket made by the overlay for overlay hosts; the node
    is a class attribute because urllib3 builds connections itself (:func:`_pool_classes`
    makes one subclass per adapter)."""

    ztnode: ClassVar[BlockingNode | None] = None
    overlay_only: ClassVar[bool] = False

    def _new_conn(self) -> socket.socket:
        if self.ztnode is None:
            return super()._new_conn()
        return _new_conn(self, self.ztnode, self.overlay_only, super()._new_conn)


class ZtHTTPSConnection(HTTPSConnection):
    """The https:// twin of :class:`ZtHTTPConnection`: urllib3 wraps the socket in TLS."""

    ztnode: ClassVar[BlockingNode | None] = None
    overlay_only: ClassVar[bool] = False

    def _new_conn(self) -> socket.socket:
        if self.ztnode is None:
            return super()._new_conn()
        return _new_conn(self, self.ztnode, self.overlay_only, super()._new_conn)


def _pool_classes(node: BlockingNode, overlay_only: bool) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes whose connections use ``node``, for a pool manager's
    ``pool_classes_by_scheme``."""

    class Http(ZtHTTPConnection):
        ztnode = node

    class Https(ZtHTTPSConnection):
        ztnode = node

    Http.overlay_only = Https.overlay_only = overlay_only

    class HttpPool(HTTPConnectionPool):
        ConnectionCls = Http

    class HttpsPool(HTTPSConnectionPool):
        ConnectionCls = Https

    return {"http": HttpPool, "https": HttpsPool}


class ZtAdapter(HTTPAdapter):
    """requests' ``HTTPAdapter`` whose connections to overlay hosts go through ``node`` (a
    :class:`~ztnode.sockets.blocking.BlockingNode`); other hosts as usual, unless
    ``overlay_only``. Keyword arguments as ``HTTPAdapter``'s (``pool_connections``,
    ``pool_maxsize``, ``max_retries``, ``pool_block``)."""

    def __init__(self, node: BlockingNode, *, overlay_only: bool = False, **kwargs: Any) -> None:
        self.ztnode = node  # before super().__init__, which builds the pool manager
        self.overlay_only = overlay_only
        super().__init__(**kwargs)

    def init_poolmanager(
        self,
        connections: int,
        maxsize: int,
        block: bool = DEFAULT_POOLBLOCK,
        **pool_kwargs: Any,
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.ztnode, self.overlay_only)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """As ``HTTPAdapter.send``; a kernel proxy is not used for an overlay host."""
        if proxies and self._on_overlay(request.url or ""):
            proxies = None
        return super().send(
            request,
            stream=stream,
            timeout=timeout,
            verify=verify,
            cert=cert,
            proxies=dict(proxies) if proxies else None,
        )

    def _on_overlay(self, url: str) -> bool:
        host = urlsplit(url).hostname
        if not host:
            return False
        try:
            return bool(lookup_blocking(self.ztnode, host))
        except socket.gaierror:
            return True  # an overlay name that fails: the connection reports it


def session(
    node: BlockingNode, *, overlay_only: bool = False, **adapter_kwargs: Any
) -> requests.Session:
    """A ``requests.Session`` with :class:`ZtAdapter` on http:// and https://."""
    s = requests.Session()
    adapter = ZtAdapter(node, overlay_only=overlay_only, **adapter_kwargs)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s
