"""``http.client`` connections over the overlay: ``HTTPConnection(node_or_network, host)``.

Why subclasses of the stdlib's: ``http.client`` opens its socket through one hook, the
connection's ``_create_connection`` (``socket.create_connection`` by default); everything else
(requests, responses, chunking, keep-alive, ``context.wrap_socket`` for HTTPS, which takes
ztnode sockets) is the stdlib's. These classes set that hook:

* given a :class:`~ztnode.sockets.blocking.BlockingNetwork`, the connection is on that network
  (the network's ``create_connection``: IP literals and the network's names);
* given a :class:`~ztnode.sockets.blocking.BlockingNode`, it goes where the node's ``lookup``
  places the host (the network that routes the address, or the overlay name's network) and to
  the kernel for any other host, unless ``overlay_only``.

``BlockingNetwork.url_opener()`` does the same for ``urllib``. Use from any thread but the
node's loop thread.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ztnode.http._routing import connect_blocking, lookup_blocking, not_on_overlay
from ztnode.sockets.blocking.common import _GLOBAL_DEFAULT_TIMEOUT
from ztnode.sockets.blocking.node import BlockingNetwork, BlockingNode

if TYPE_CHECKING:
    from ztnode.sockets.blocking.facade import Socket

__all__ = ["HTTPConnection", "HTTPSConnection", "connector"]

Via = BlockingNetwork | BlockingNode
Connector = Callable[..., Any]
# http.client's "no timeout given" marker (the socket module's), typed as the stdlib's own
# signatures declare the parameter.
_DEFAULT_TIMEOUT: Any = _GLOBAL_DEFAULT_TIMEOUT


def connector(via: Via, *, overlay_only: bool = False) -> Connector:
    """A ``socket.create_connection`` look-alike that connects over ``via`` (module
    docstring): the hook ``http.client`` connections call."""
    if isinstance(via, BlockingNetwork):
        return via.create_connection
    node = via

    def create_connection(
        address: tuple[str, int],
        timeout: float | object | None = _GLOBAL_DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
    ) -> Socket | socket.socket:
        host, port = address[0], address[1]
        targets = lookup_blocking(node, host)
        if targets:
            return connect_blocking(targets, port, timeout, source_address=source_address)
        if overlay_only:
            raise not_on_overlay(host, node.address)
        return socket.create_connection(
            (host, port), cast(Any, timeout), source_address=source_address
        )

    return create_connection


def _check(via: object) -> Via:
    if not isinstance(via, BlockingNetwork | BlockingNode):
        raise TypeError(
            f"expected a BlockingNode or a BlockingNetwork, not {type(via).__name__} "
            "(an asyncio Node belongs to an event loop: use its blocking view, or httpx)"
        )
    return via


class HTTPConnection(http.client.HTTPConnection):
    """``http.client.HTTPConnection`` over a node or one of its networks (module
    docstring); the other arguments are the stdlib's."""

    def __init__(
        self,
        via: Via,
        host: str,
        port: int | None = None,
        timeout: float | None = _DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
        blocksize: int = 8192,
        *,
        overlay_only: bool = False,
    ) -> None:
        self.via = _check(via)
        super().__init__(host, port, timeout, source_address, blocksize)
        self._create_connection = connector(via, overlay_only=overlay_only)


class HTTPSConnection(http.client.HTTPSConnection):
    """``http.client.HTTPSConnection`` over a node or one of its networks: TLS with
    ``context`` (the system's default when None), checked against ``host``."""

    def __init__(
        self,
        via: Via,
        host: str,
        port: int | None = None,
        *,
        context: ssl.SSLContext | None = None,
        timeout: float | None = _DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
        blocksize: int = 8192,
        overlay_only: bool = False,
    ) -> None:
        self.via = _check(via)
        super().__init__(
            host,
            port,
            timeout=timeout,
            source_address=source_address,
            context=context,
            blocksize=blocksize,
        )
        self._create_connection = connector(via, overlay_only=overlay_only)
