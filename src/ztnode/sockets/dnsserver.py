"""A DNS server on a network's overlay address: the controller's DNS role, or any zone.

Why: a network's config pushes a domain and server addresses, and with a ztnode controller
joined to its own network those names can be answered by the controller itself
(:mod:`ztnode.controller.dnszone` makes the zone from its members). The same server serves any
:class:`~ztnode.names.zone.Zone` a program gives (``network.serve_dns(zone)``).

Answers come from :func:`ztnode.names.zone.answer` over UDP and TCP port 53 (RFC 7766: TCP
clients may send several queries on one connection). Even authenticated members can flood, so
the work is bounded: ``MAX_QPS`` answers per second across both transports, ``MAX_TCP``
connections, each closed after ``TCP_IDLE`` seconds of silence; every refusal is counted.
The controller's zone is rebuilt from its members at most once per ``ZONE_REFRESH_MS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ztnode.budget import SecondBudget
from ztnode.controller.dnszone import member_zone
from ztnode.names.zone import Zone, answer

if TYPE_CHECKING:
    from ztnode.sockets.aio import Network
    from ztnode.sockets.aio_tcp import TcpServer

log = logging.getLogger("ztnode.names")

__all__ = ["MAX_QPS", "MAX_TCP", "DnsServer", "controller_zone_source"]

MAX_QPS = 5000
MAX_TCP = 64
TCP_IDLE = 10.0
ZONE_REFRESH_MS = 1000

ZoneSource = Callable[[], Zone | None]


def controller_zone_source(net: Network) -> ZoneSource:
    """The zone of ``net``'s members from the controller this node hosts, cached briefly."""
    cached: list[Any] = [None, -ZONE_REFRESH_MS]

    def source() -> Zone | None:
        now = net.node._now()
        if now - cached[1] >= ZONE_REFRESH_MS:
            api = net.node.controller
            try:
                cached[0] = member_zone(api.network(net.id), api.members(net.id))
            except (LookupError, RuntimeError, ValueError):
                cached[0] = None
            cached[1] = now
        zone: Zone | None = cached[0]
        return zone

    return source


class DnsServer:
    """Answers one zone on one network (module docstring)."""

    def __init__(self, net: Network, zone: Zone | ZoneSource, *, port: int = 53) -> None:
        self.net = net
        self.port = port
        self._source: ZoneSource = zone if callable(zone) else (lambda: zone)
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: TcpServer | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._budget = SecondBudget()
        self.counters: dict[str, int] = {
            "queries": 0,
            "answered": 0,
            "ignored": 0,
            "rate_limited": 0,
            "no_zone": 0,
            "tcp_connections": 0,
            "tcp_refused": 0,
        }

    @property
    def zone(self) -> Zone | None:
        return self._source()

    async def start(self) -> DnsServer:
        server = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                reply = server._answer(data, tcp=False)
                if reply is not None:
                    assert isinstance(self.transport, asyncio.DatagramTransport)
                    self.transport.sendto(reply, addr)

        for family, wildcard in ((4, "0.0.0.0"), (6, "::")):
            if not any(a.version == family for a in self.net.addresses):
                continue
            tr, _ = await self.net.create_datagram_endpoint(
                Udp, local_addr=(wildcard, self.port), family=family
            )
            self._udp.append(tr)
        try:
            self._tcp = await self.net.start_server(self._serve_tcp, None, self.port, family=0)
        except OSError:
            self.close()
            raise
        return self

    def _answer(self, data: bytes, *, tcp: bool) -> bytes | None:
        self.counters["queries"] += 1
        if not self._budget.take(self.net.node._now(), MAX_QPS):
            self.counters["rate_limited"] += 1
            return None
        zone = self._source()
        if zone is None:
            self.counters["no_zone"] += 1
            return None
        reply = answer(zone, data, tcp=tcp)
        self.counters["answered" if reply is not None else "ignored"] += 1
        return reply

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._conns) >= MAX_TCP:
            self.counters["tcp_refused"] += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self.counters["tcp_connections"] += 1
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    query = await reader.readexactly(size)
                reply = self._answer(query, tcp=True)
                if reply is None:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    def close(self) -> None:
        for tr in self._udp:
            tr.close()
        self._udp.clear()
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        for task in list(self._conns):
            task.cancel()

    async def __aenter__(self) -> DnsServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
