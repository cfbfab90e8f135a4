"""aiohttp's client on the overlay: ``aiohttp.ClientSession(connector=ZtConnector(node))``.

Why a connector: aiohttp (3.10 and later) opens its kernel sockets itself (happy eyeballs) and
hands them to the loop, so no loop patch reaches it; its connector is the one place that knows
the destination. :class:`ZtConnector` is aiohttp's own ``TCPConnector`` (pooling, keep-alive,
TLS, limits, resolvers: all aiohttp's) with the last step, opening the connection, done on the
node's network when one routes the resolved address, and by aiohttp otherwise. It overrides
that one step, whose signature is aiohttp's internal one; the tests run it against the aiohttp
that CI installs (the ``aiohttp`` extra pins what it supports).

Needs the ``aiohttp`` extra: ``pip install 'ztnode[aiohttp]'``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import (
    ClientConnectorCertificateError,
    ClientConnectorError,
    ClientConnectorSSLError,
)
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

if TYPE_CHECKING:
    from ztnode.sockets.aio import Node

__all__ = ["ZtConnector", "ZtResolver"]


class ZtResolver(AbstractResolver):
    """Overlay names by the node (:meth:`Node.lookup`), every other name by ``fallback``
    (aiohttp's default resolver when None)."""

    def __init__(self, node: Node, fallback: AbstractResolver | None = None) -> None:
        self.node = node
        self.fallback = fallback if fallback is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.node.lookup(host, family=family)
        if not found:
            return await self.fallback.resolve(host, port, family)
        return [
            ResolveResult(
                hostname=host,
                host=ip,
                port=port,
                family=socket.AF_INET6 if ":" in ip else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for _, ip in found
        ]

    async def close(self) -> None:
        await self.fallback.close()


class ZtConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` whose connections to overlay addresses go through ``node``; names
    are resolved by :class:`ZtResolver` unless a ``resolver`` is given."""

    def __init__(self, node: Node, **kwargs: Any) -> None:
        kwargs.setdefault("resolver", ZtResolver(node))
        super().__init__(**kwargs)
        self.ztnode = node

    async def _wrap_create_connection(
        self,
        *args: Any,
        addr_infos: list[Any],
        req: Any,
        timeout: Any,
        client_error: type[Exception] = ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, Any]:
        sockaddr = addr_infos[0][4] if addr_infos else None
        net = self.ztnode.network_for(str(sockaddr[0])) if sockaddr else None
        if net is None or sockaddr is None:
            return await super()._wrap_create_connection(
                *args,
                addr_infos=addr_infos,
                req=req,
                timeout=timeout,
                client_error=client_error,
                **kwargs,
            )
        try:
            async with asyncio.timeout(timeout.sock_connect):
                transport, protocol = await net.create_connection(
                    args[0],
                    str(sockaddr[0]),
                    int(sockaddr[1]),
                    ssl=kwargs.get("ssl") or None,
                    server_hostname=kwargs.get("server_hostname"),
                )
        except ssl.SSLCertVerificationError as exc:
            raise ClientConnectorCertificateError(req.connection_key, exc) from exc
        except ssl.SSLError as exc:
            raise ClientConnectorSSLError(req.connection_key, exc) from exc
        except OSError as exc:
            if exc.errno is None and isinstance(exc, asyncio.TimeoutError):
                raise
            raise client_error(req.connection_key, exc) from exc
        return transport, protocol
