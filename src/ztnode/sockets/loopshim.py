"""Libraries on the overlay without glue: the event loop's connect and listen, routed by address.

Why: websockets, aiohttp's server, asyncpg, aioredis and most asyncio libraries open their
connections with ``loop.create_connection(factory, host, port, ...)`` and listen with
``loop.create_server(factory, host, port, ...)`` (``asyncio.open_connection`` and
``asyncio.start_server`` do too). Inside :func:`patch_loop`, a connection to an address that one
of the node's networks routes, or to an overlay name (:meth:`Node.lookup`), goes over that
network, ``loop.getaddrinfo`` answers overlay names with overlay addresses, and a server asked
to listen on one of the node's overlay addresses listens there; every other call is the loop's
own, unchanged (kernel sockets, other names, ``sock=``). Nothing global changes: the patch is on
one loop object, for the duration of the ``with`` block, and patches of several nodes on one
loop stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ztnode.sockets.addresses import ip_literal

if TYPE_CHECKING:
    from ztnode.sockets.aio import Network, Node

__all__ = ["patch_loop"]

_ORIGINAL = object()


def _network_holding(node: Node, host: str) -> Network | None:
    """The network on which ``host`` is one of this node's own addresses."""
    ip = ipaddress.ip_address(host)
    for net in node.networks:
        if any(iface.ip == ip for iface in net.addresses):
            return net
    return None


async def _connect_by_name(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str,
    port: int,
    found: list[tuple[Network, str]],
    kwargs: dict[str, Any],
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """An overlay name's addresses tried in turn; TLS checks the name, as asyncio does."""
    local = kwargs.get("local_addr")
    ssl = kwargs.get("ssl")
    errors: list[OSError] = []
    for net, ip in found:
        try:
            return await net.create_connection(
                protocol_factory,
                ip,
                port,
                ssl=ssl,
                server_hostname=kwargs.get("server_hostname", host if ssl else None),
                ssl_handshake_timeout=kwargs.get("ssl_handshake_timeout"),
                ssl_shutdown_timeout=kwargs.get("ssl_shutdown_timeout"),
                local_port=int(local[1]) if local else 0,
            )
        except OSError as exc:
            errors.append(exc)
    raise errors[0]


@contextlib.contextmanager
def patch_loop(node: Node, loop: asyncio.AbstractEventLoop | None = None) -> Iterator[None]:
    """Route the loop's ``create_connection`` and ``create_server`` through ``node`` where the
    address belongs to one of its networks (module docstring)."""
    loop = loop if loop is not None else asyncio.get_running_loop()
    saved = {
        name: vars(loop).get(name, _ORIGINAL)
        for name in ("create_connection", "create_server", "getaddrinfo")
    }
    inner_connect: Callable[..., Any] = loop.create_connection
    inner_serve: Callable[..., Any] = loop.create_server
    inner_getaddrinfo: Callable[..., Any] = loop.getaddrinfo

    async def getaddrinfo(
        host: Any, port: Any, *, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        if isinstance(host, str) and node.started and ip_literal(host) is None:
            found = await node.lookup(host, family=family)
            if found:
                return await node.getaddrinfo(host, port, family, type, proto, flags)
        return await inner_getaddrinfo(
            host, port, family=family, type=type, proto=proto, flags=flags
        )

    async def create_connection(
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int | None = None,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        if kwargs.get("sock") is None and isinstance(host, str) and ip_literal(host) is None:
            found = await node.lookup(host) if node.started and port is not None else []
            if found and port is not None:
                return await _connect_by_name(protocol_factory, host, port, found, kwargs)
        ip = ip_literal(host) if kwargs.get("sock") is None else None
        net = node.network_for(ip) if ip is not None and node.started else None
        if net is None or ip is None or port is None:
            result: tuple[asyncio.Transport, asyncio.BaseProtocol] = await inner_connect(
                protocol_factory, host, port, **kwargs
            )
            return result
        local = kwargs.get("local_addr")
        return await net.create_connection(
            protocol_factory,
            ip,
            port,
            ssl=kwargs.get("ssl"),
            server_hostname=kwargs.get("server_hostname"),
            ssl_handshake_timeout=kwargs.get("ssl_handshake_timeout"),
            ssl_shutdown_timeout=kwargs.get("ssl_shutdown_timeout"),
            local_port=int(local[1]) if local else 0,
        )

    async def create_server(
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: Any = None,
        port: int | None = None,
        **kwargs: Any,
    ) -> Any:
        ip = ip_literal(host) if kwargs.get("sock") is None else None
        net = _network_holding(node, ip) if ip is not None and node.started else None
        if net is None or ip is None:
            return await inner_serve(protocol_factory, host, port, **kwargs)
        family = kwargs.get("family", socket.AF_UNSPEC)
        return await net.create_server(
            protocol_factory,
            ip,
            port or 0,
            family=family if family != socket.AF_UNSPEC else (6 if ":" in ip else 4),
            backlog=kwargs.get("backlog", 100),
            ssl=kwargs.get("ssl"),
            ssl_handshake_timeout=kwargs.get("ssl_handshake_timeout"),
            ssl_shutdown_timeout=kwargs.get("ssl_shutdown_timeout"),
        )

    setattr(loop, "create_connection", create_connection)  # noqa: B010 (an instance patch)
    setattr(loop, "create_server", create_server)  # noqa: B010
    setattr(loop, "getaddrinfo", getaddrinfo)  # noqa: B010
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is _ORIGINAL:
                vars(loop).pop(name, None)
            else:
                setattr(loop, name, previous)
