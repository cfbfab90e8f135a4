"""Where an HTTP client's connection goes: onto a network of the node, or to the kernel.

Why one module: httpx, requests and ``http.client`` must route the same way, or a URL would
reach a server with one library and miss it with another. The node's ``lookup`` decides (an IP
literal one of its networks routes, an overlay name: ``(network, address)`` pairs in the order
to try; nothing for everything else, which the caller leaves to the kernel); this module holds
what the blocking clients share after that: trying each overlay address in turn the way
``socket.create_connection`` does, and the message for a host that ``overlay_only`` refuses.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ztnode.sockets.blocking.common import _GLOBAL_DEFAULT_TIMEOUT
from ztnode.sockets.blocking.node import SocketOption, connect_first

if TYPE_CHECKING:
    from ztnode.sockets.blocking.facade import Socket
    from ztnode.sockets.blocking.node import BlockingNetwork, BlockingNode

__all__ = ["SocketOption", "connect_blocking", "lookup_blocking", "not_on_overlay", "unbracket"]


def unbracket(host: str) -> str:
    """A URL's IPv6 host as the resolver takes it: ``[fd00::1]`` -> ``fd00::1``."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def not_on_overlay(host: str, node_address: str) -> OSError:
    """The error for a host that no network of the node reaches when the kernel is not an
    option (``overlay_only``): ENETUNREACH, as for an address no route covers."""
    return OSError(
        errno.ENETUNREACH,
        f"{host} is not on any ZeroTier network of node {node_address} "
        "(overlay_only: the kernel's network is not used)",
    )


def connect_blocking(
    targets: Sequence[tuple[BlockingNetwork, str]],
    port: int,
    timeout: float | object | None = _GLOBAL_DEFAULT_TIMEOUT,
    *,
    source_address: tuple[str, int] | None = None,
    socket_options: Iterable[SocketOption] = (),
) -> Socket:
    """A connected ztnode socket to the first of ``targets`` that accepts (the sockets
    layer's :func:`~ztnode.sockets.blocking.node.connect_first`, the rule of
    ``socket.create_connection`` that urllib3 and ``http.client`` users expect)."""
    return connect_first(
        targets, port, timeout, source_address=source_address, socket_options=socket_options
    )


def lookup_blocking(node: BlockingNode, host: str) -> list[tuple[BlockingNetwork, str]]:
    """``node.lookup`` for a URL's host (brackets removed); ``socket.gaierror`` for an overlay
    name that does not resolve."""
    return node.lookup(unbracket(host))
