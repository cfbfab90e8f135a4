"""The TCP fallback tunnel, relay side: a ztnode node (normally a root) accepts tunnels.

A member whose network blocks UDP connects here (its ``settings.tcpFallbackRelay``) and frames
its datagrams as :mod:`ztnode.wire.tcptunnel` records. This is switched on with
``ztnode node --tcp-relay-listen IP/port``, or with local.conf's ``settings.tcpRelayListen``
(ztnode's own key), and it is off by default.

**Design: the node consumes the tunnelled packets itself. It is not a tcp-proxy.** ZeroTier's
relay program (``tcp-proxy/tcp-proxy.cpp``) gives every TCP client a UDP socket of its own on
the relay host. It sends each record's datagram to whatever IP and port the record names
(any port above 1024), and frames every reply back. Here, each record's datagram is instead
handed to this node's core, as if it had arrived by UDP from the connection's TCP peer address.
The core then does what it does for any packet:

* A packet for this node (HELLO, WHOIS, and so on) is answered. The answer goes back through
  the tunnel, because the core's path to that member *is* the connection.
* A packet for another node (a member, the controller) is relayed by ZeroTier address, over
  the paths this root already has, as every root relays. Members therefore reach each other
  and the controller through the root, and the root's RENDEZVOUS and relaying rules apply
  unchanged.

Why not a tcp-proxy:

* It would be an open UDP relay. Unauthenticated TCP clients could make this host send
  arbitrary UDP to arbitrary addresses (reflection, and port scanning from our address).
* It needs a UDP socket per client, so per-source allocation beyond the connection itself.

Here, nothing leaves this host that the core would not have sent for a UDP packet anyway.
The record's address is not used for routing. It is remembered per connection, as the address
the member believes it is talking to (this root's UDP address). That is the address named by
records whose packet is for this node's ZeroTier address. Replies are framed with that address
as their source, so the member's core attributes them to the same path as UDP.

One limit follows from this design: a datagram can only reach a node this root can reach.
That covers the requirement (members and the controller all keep paths to the root), but not
arbitrary third-party relays.

Bounds against unauthenticated clients (each counted in :attr:`TcpRelayServer.counters` when
hit):

* ``max_connections`` (default 256) concurrent connections. A connection beyond it is closed on
  accept (``refused_full``).
* ``max_body``: one record's body (default :data:`~ztnode.wire.tcptunnel.MAX_BODY`). Each
  connection buffers at most one partial record. A longer declared length, a bad header or a
  bad address type closes the connection (``protocol_errors``).
* ``write_limit`` (default 64 KiB, as the reference's client) bytes queued toward one
  connection. Past it, datagrams to that connection are dropped (``dropped_queue_full``).
* ``hello_timeout_ms`` (10 s): the client's hello must be the first record, and must come
  within this time (``hello_timeouts``; a datagram before it is a protocol error). The
  reference's relay also serves clients without a hello (to 127.0.0.1:9993). This one does
  not: every ZeroTier version that can fall back to TCP sends the hello.
* ``idle_timeout_ms`` (300 s, tcp-proxy's ``ZT_TCP_PROXY_CONNECTION_TIMEOUT_SECONDS``) without
  a received byte closes the connection (``idle_timeouts``).
* Records without an address, and datagrams under 16 bytes, are dropped (``dropped_short``,
  ``dropped_no_address``). Every datagram goes through the core's ordinary receive path, so a
  malformed one is a counted drop there.

The timeouts are checked by one sweep every ``sweep_ms`` (1 s) while connections exist, and
the sweep walks at most ``max_connections`` entries.

The core knows a tunnelled member's path by the TCP peer address (IP, port). A UDP peer at
exactly the same IP and port would share that path. The tunnel takes precedence for sending,
and only a client on that same IP (behind the same NAT) could arrange such a collision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from ztnode.errors import DecodeError
from ztnode.transport.localconf import LocalConf
from ztnode.transport.tcprelay import MIN_DATAGRAM
from ztnode.wire.tcptunnel import MAX_BODY, Datagram, Hello, RecordDecoder, encode_datagram

log = logging.getLogger("ztnode.service")

Addr = tuple[str, int]
Deliver = Callable[[bytes, Addr], None]

LISTEN_KEY: Final = "tcpRelayListen"


def listen_from_local_conf(settings: Mapping[str, Any]) -> Addr | None:
    """``settings.tcpRelayListen`` ("IP/port"), or None when absent (the relay is off)."""
    return LocalConf.parse({"settings": settings}).tcp_relay_listen


@dataclass(frozen=True, slots=True)
class RelayLimits:
    max_connections: int = 256
    max_body: int = MAX_BODY
    write_limit: int = 64 * 1024
    hello_timeout_ms: int = 10_000
    idle_timeout_ms: int = 300_000
    sweep_ms: int = 1_000


class _Client(asyncio.Protocol):
    def __init__(self, server: TcpRelayServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.decoder = RecordDecoder(server.limits.max_body)
        self.remote: Addr = ("", 0)
        self.hello = False
        self.target: Addr | None = None
        self.opened = 0
        self.last_receive = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport of the loop's, but not necessarily an asyncio.Transport instance:
        # uvloop's are classes of their own with the same methods.
        self.transport = cast(asyncio.Transport, transport)
        self.opened = self.last_receive = self.server.clock()
        peer = transport.get_extra_info("peername")
        self.server._accepted(self, (str(peer[0]), int(peer[1])) if peer else None)

    def data_received(self, data: bytes) -> None:
        server = self.server
        self.last_receive = server.clock()
        try:
            records = self.decoder.feed(data)
            for record in records:
                if isinstance(record, Hello):
                    self.hello = True
                    continue
                if not self.hello:
                    raise DecodeError("tunnel record before the hello")
                self._datagram(record)
        except DecodeError as e:
            server.count("protocol_errors")
            log.debug("TCP relay client %s: %s", self.remote, e)
            self.close()

    def _datagram(self, record: Datagram) -> None:
        server = self.server
        if record.address is None:
            server.count("dropped_no_address")
            return
        if len(record.payload) < MIN_DATAGRAM:
            server.count("dropped_short")
            return
        # The address the member uses for *us* (a packet whose destination is our address):
        # our replies carry it as their source. Packets to others may name their addresses.
        if self.target is None or record.payload[8:13] == server.self_address:
            self.target = record.address
        server.count("datagrams_in")
        server.deliver(record.payload, self.remote)

    def send(self, data: bytes | bytearray | memoryview) -> None:
        transport = self.transport
        if transport is None or self.target is None:
            self.server.count("dropped_no_target")
            return
        if transport.get_write_buffer_size() >= self.server.limits.write_limit:
            self.server.count("dropped_queue_full")
            return
        transport.write(encode_datagram(self.target, data))
        self.server.count("datagrams_out")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.server._lost(self)


class TcpRelayServer:
    """Accepts tunnels and routes their datagrams through the node (see the module docstring).

    ``deliver(payload, remote)`` hands one datagram to the node, attributed to ``remote`` (the
    client's TCP address), and pumps. The service asks :meth:`send` first for every outgoing
    datagram.
    """

    def __init__(
        self,
        listen: Addr,
        clock: Callable[[], int],
        deliver: Deliver,
        self_address: int,
        limits: RelayLimits | None = None,
    ) -> None:
        self.listen = listen
        self.self_address = self_address.to_bytes(5, "big")
        self.clock = clock
        self.deliver = deliver
        self.limits = limits or RelayLimits()
        self.clients: dict[Addr, _Client] = {}
        self.counters: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    async def start(self) -> Addr:
        """Listen; returns the bound address (port 0 picks one)."""
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: _Client(self), self.listen[0], self.listen[1], reuse_address=True
        )
        name = self._server.sockets[0].getsockname()
        self.listen = (str(name[0]), int(name[1]))
        log.info("TCP fallback relay listening on %s/%d", *self.listen)
        return self.listen

    def send(self, data: bytes | bytearray | memoryview, remote: Addr) -> bool:
        """An outgoing datagram; True when ``remote`` is a tunnel client (it went there)."""
        if not self.clients:
            return False
        client = self.clients.get(remote)
        if client is None:
            return False
        client.send(data)
        return True

    def _accepted(self, client: _Client, peer: Addr | None) -> None:
        if peer is None or len(self.clients) >= self.limits.max_connections:
            self.count("refused_full" if peer is not None else "refused_no_peer")
            client.close()
            return
        old = self.clients.get(peer)
        if old is not None:  # the kernel reused the address: the old one is gone
            old.close()
        client.remote = peer
        self.clients[peer] = client
        self.count("accepted")
        self._arm()

    def _lost(self, client: _Client) -> None:
        if self.clients.get(client.remote) is client:
            del self.clients[client.remote]

    def _arm(self) -> None:
        if self._sweep is None and self._loop is not None and self.clients:
            self._sweep = self._loop.call_later(self.limits.sweep_ms / 1000, self._run_sweep)

    def _run_sweep(self) -> None:
        self._sweep = None
        self.sweep(self.clock())
        self._arm()

    def sweep(self, now: int) -> None:
        """Close connections past their hello deadline or idle timeout."""
        lim = self.limits
        for client in list(self.clients.values()):
            if not client.hello and now - client.opened >= lim.hello_timeout_ms:
                self.count("hello_timeouts")
                client.close()
            elif now - client.last_receive >= lim.idle_timeout_ms:
                self.count("idle_timeouts")
                client.close()

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for client in list(self.clients.values()):
            client.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
