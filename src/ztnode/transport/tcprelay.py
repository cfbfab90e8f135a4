"""The TCP fallback tunnel, client side: how a node behind a UDP-blocking network gets online.

This follows ZeroTierOne 1.14.1's service (``service/OneService.cpp``:
``nodeWirePacketSendFunction``, ``phyOnDatagram``, ``phyOnTcpConnect``/``Data``/``Close`` and
the main loop's close check). The reference makes these decisions, and so does
:class:`FallbackDecider`:

* **Only the send path decides.** A datagram qualifies when it goes to an IPv4 address of
  GLOBAL scope and is at least 16 bytes long. IPv6, private and loopback destinations never use
  the tunnel.
* **Engaged** when ``forceTcpRelay`` is set, or when no UDP datagram of at least 16 bytes has
  come from a GLOBAL address for more than 60 s (``ZT_TCP_FALLBACK_AFTER``) *and* the service
  started more than 60 s ago. While engaged, each qualifying datagram is framed into the open
  tunnel. The write queue is capped at 64 KiB, and a datagram that finds it full is dropped and
  counted. Without an open tunnel, a connection is started, but only when the previous qualifying
  send was between 2.5 s (half of ``ZT_PING_CHECK_INTERVAL``) and 60 s ago. The reference has
  no other backoff: the node's own pings pace the attempts. This implementation keeps at most
  one attempt in flight, where the reference can start several and keep the last to connect.
* **UDP goes out as well**, whether or not the tunnel takes the datagram. As soon as UDP works
  again, the node "fails forward" to it. Only ``forceTcpRelay`` stops UDP in both directions.
  The reference then does not bind UDP at all and ignores every datagram it receives.
* **Dropped** when a qualifying UDP datagram (≥16 bytes, from a GLOBAL address) arrives. The
  reference's main loop closes the tunnel once the last such receipt is under 30 s old, which is
  at the next loop turn. Here the close happens when that datagram is received. Never with
  ``forceTcpRelay``. Tunnelled receipts never count as UDP heard.
* **Received records** are handed to the node as datagrams from the address named in the record
  (the relay writes in where the datagram came from). The node's path is that remote address,
  so the core sees the same path whether the packet came by UDP or through the tunnel. The
  reference uses local socket -1 ("any"). Here the path's local side is the service's first IPv4
  endpoint, whose replies also leave by UDP (that is the fail-forward). The 4-byte hello and
  records without an address are ignored, as in the reference. A record with an unknown address
  type, or one too short, is a protocol error. The connection is closed and the error counted.
* **Settings** (local.conf ``settings``): ``allowTcpFallbackRelay`` (default true),
  ``forceTcpRelay`` (default false) and ``tcpFallbackRelay`` ("IP/port", default
  ``204.80.128.1/443``). Bonding turns both ``allow`` and ``force`` off, as in the reference
  (OneService.cpp, where ``settings`` is applied).
* ``/status``'s ``tcpFallbackActive`` is true while a tunnel is connected, and so is every
  peer's ``tunneled`` in ``/peer`` (the reference passes that one flag for all peers).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from ztnode.errors import DecodeError
from ztnode.transport.localconf import LocalConf, parse_endpoint
from ztnode.wire.constants import SOFTWARE_MAJOR, SOFTWARE_MINOR, SOFTWARE_REVISION
from ztnode.wire.inetaddr import IpScope, ip_scope
from ztnode.wire.tcptunnel import Datagram, RecordDecoder, encode_datagram, encode_hello

log = logging.getLogger("ztnode.service")

Addr = tuple[str, int]

#: No UDP from a global address for this long (and up this long): use the tunnel.
FALLBACK_AFTER: Final = 60_000
#: A tunnel is closed once UDP from a global address is newer than this.
CLOSE_WHEN_HEARD_WITHIN: Final = FALLBACK_AFTER // 2
#: A new connection only when the previous global IPv4 send is older than this (half the
#: reference's ping check interval), so a busy send loop does not start connections.
CONNECT_MIN_GAP: Final = 2_500
#: Bytes queued in the tunnel's transport before further datagrams are dropped.
WRITE_QUEUE_LIMIT: Final = 64 * 1024
#: Datagrams shorter than this neither qualify nor count as heard (the reference's ``len >= 16``).
MIN_DATAGRAM: Final = 16
#: The reference's default relay, run by ZeroTier, Inc.
DEFAULT_RELAY: Final[Addr] = ("204.80.128.1", 443)
#: Bound on the scope cache of the per-packet checks (cleared when full).
_SCOPE_CACHE_MAX: Final = 1024
#: How long a connection attempt may take.
CONNECT_TIMEOUT_S: Final = 10.0


def parse_ip_port(text: str, key: str) -> Addr:
    """``IP/port`` as ZeroTierOne writes addresses in local.conf (a port is required: a relay
    without one would be unreachable); errors name ``settings.<key>``."""
    return parse_endpoint(text, f"settings.{key}")


@dataclass(frozen=True, slots=True)
class TcpRelaySettings:
    """The three local.conf keys of the TCP fallback (see the module docstring)."""

    allow: bool = True
    force: bool = False
    relay: Addr = DEFAULT_RELAY

    @classmethod
    def from_conf(cls, conf: LocalConf) -> TcpRelaySettings:
        """The tunnel's part of a checked ``local.conf``."""
        relay = conf.tcp_fallback_relay or DEFAULT_RELAY
        return cls(conf.allow_tcp_fallback_relay, conf.force_tcp_relay, relay)

    @classmethod
    def from_local_conf(cls, settings: Mapping[str, Any]) -> TcpRelaySettings:
        """From a ``settings`` object alone (checked as the whole file is)."""
        return cls.from_conf(LocalConf.parse({"settings": settings}))


@dataclass(frozen=True, slots=True)
class SendDecision:
    tunnel: bool
    """Frame the datagram into the open tunnel."""
    connect: bool
    """Start a connection to the relay (none is open or in flight)."""
    udp: bool
    """Also send it by UDP (always, except with forceTcpRelay)."""


#: The common answers, made once: this runs for every outgoing datagram.
_UDP_ONLY: Final = SendDecision(tunnel=False, connect=False, udp=True)
_NOTHING: Final = SendDecision(tunnel=False, connect=False, udp=False)
_TUNNEL_AND_UDP: Final = SendDecision(tunnel=True, connect=False, udp=True)


#: Scopes whose IPv4 destinations use the tunnel and whose UDP counts as heard: GLOBAL only, as
#: in the reference. Tests on loopback widen it (never a setting): a plain module variable, not
#: Final, so the compiled module reads it at each use as its source does.
TUNNEL_SCOPES: frozenset[IpScope] = frozenset({IpScope.GLOBAL})


class FallbackDecider:
    """The reference's open/close decisions without I/O; times are the caller's milliseconds."""

    def __init__(self, settings: TcpRelaySettings, now: int, bonding: bool = False) -> None:
        self.enabled = settings.allow and not bonding
        self.force = settings.force and not bonding
        self.last_heard_global = 0
        self.started = now
        self.last_send_global_v4 = 0
        self._scopes: dict[str, tuple[bool, bool]] = {}

    def _classify(self, ip: str) -> tuple[bool, bool]:
        """(is IPv4, is of a tunnel scope) of an address, cached: this runs for every datagram."""
        hit = self._scopes.get(ip)
        if hit is None:
            try:
                parsed = ipaddress.ip_address(ip)
            except ValueError:
                hit = (False, False)
            else:
                hit = (parsed.version == 4, ip_scope(parsed) in TUNNEL_SCOPES)
            if len(self._scopes) >= _SCOPE_CACHE_MAX:
                self._scopes.clear()
            self._scopes[ip] = hit
        return hit

    def engaged(self, now: int) -> bool:
        if not self.enabled:
            return False
        return self.force or (
            now - self.last_heard_global > FALLBACK_AFTER and now - self.started > FALLBACK_AFTER
        )

    def on_send(self, remote: Addr, length: int, now: int, open_: bool, busy: bool) -> SendDecision:
        """One outgoing datagram. ``open_``: a tunnel is connected; ``busy``: one is connecting."""
        if not self.enabled:
            return _UDP_ONLY
        udp = not self.force
        if length < MIN_DATAGRAM:
            return _UDP_ONLY if udp else _NOTHING
        v4, global_ = self._classify(remote[0])
        if not (v4 and global_):
            return _UDP_ONLY if udp else _NOTHING
        gap = now - self.last_send_global_v4
        self.last_send_global_v4 = now
        if not self.engaged(now):
            return _UDP_ONLY
        if open_:
            return _TUNNEL_AND_UDP if udp else SendDecision(True, False, False)
        connect = not busy and (self.force or CONNECT_MIN_GAP < gap < FALLBACK_AFTER)
        return SendDecision(False, connect, udp)

    def udp_only(self, remote: Addr, length: int) -> bool | None:
        """What :meth:`on_send` answers for a datagram that neither reads nor changes the
        decider's state (tunnelling off, a datagram too short to count, a destination outside
        the tunnel's scope): whether it goes by UDP. None when only ``on_send`` can tell. It
        lets the sender skip the clock, asked otherwise for every datagram."""
        if not self.enabled:
            return True
        if length < MIN_DATAGRAM:
            return not self.force
        v4, global_ = self._classify(remote[0])
        return not self.force if not (v4 and global_) else None

    def ignores_received(self, remote: Addr, length: int) -> bool:
        """Whether :meth:`on_udp_received` would do nothing with this datagram (too short, or
        from outside the tunnel's scope): the receiver then skips the clock."""
        return length < MIN_DATAGRAM or not self._classify(remote[0])[1]

    def on_udp_received(self, remote: Addr, length: int, now: int) -> bool:
        """One UDP datagram arrived; True when an open tunnel must now be closed."""
        if self.force or length < MIN_DATAGRAM:
            return False
        if self._classify(remote[0])[1]:
            self.last_heard_global = now
            return self.should_close(now)
        return False

    def should_close(self, now: int) -> bool:
        """The reference's main-loop check: UDP from a global address is under 30 s old."""
        return (
            self.enabled
            and not self.force
            and now - self.last_heard_global < CLOSE_WHEN_HEARD_WITHIN
        )


Deliver = Callable[[bytes, Addr], None]


class _TunnelProtocol(asyncio.Protocol):
    def __init__(self, owner: TcpRelayClient) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.decoder = RecordDecoder()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport of the loop's, but not necessarily an asyncio.Transport instance:
        # uvloop's are classes of their own with the same methods.
        self.transport = stream = cast(asyncio.Transport, transport)
        stream.write(encode_hello(SOFTWARE_MAJOR, SOFTWARE_MINOR, SOFTWARE_REVISION))

    def data_received(self, data: bytes) -> None:
        try:
            records = self.decoder.feed(data)
        except DecodeError as e:
            self.owner.count("protocol_errors")
            log.warning("TCP relay %s: %s; closing", self.owner.settings.relay, e)
            if self.transport is not None:
                self.transport.abort()
            return
        for record in records:
            if isinstance(record, Datagram) and record.address is not None:
                self.owner.count("datagrams_in")
                self.owner.deliver(record.payload, record.address)
            else:
                self.owner.count("ignored_records")

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost(self)


class TcpRelayClient:
    """The tunnel's connection and the service's two hooks (:meth:`send`, :meth:`heard_udp`).

    ``deliver`` hands a received datagram to the node, as a UDP receive would, and pumps.
    ``clock`` is the service's millisecond clock. The decisions are :class:`FallbackDecider`'s.
    """

    def __init__(
        self,
        settings: TcpRelaySettings,
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], int],
        deliver: Deliver,
        bonding: bool = False,
    ) -> None:
        self.settings = settings
        self._loop = loop
        self._clock = clock
        self.deliver = deliver
        self.decider = FallbackDecider(settings, clock(), bonding)
        self._protocol: _TunnelProtocol | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._closed = False
        self.counters: dict[str, int] = {}

    @property
    def active(self) -> bool:
        """A tunnel is connected (``tcpFallbackActive``, ``tunneled``)."""
        return self._protocol is not None and self._protocol.transport is not None

    @property
    def force(self) -> bool:
        return self.decider.force

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def reconfigure(self, settings: TcpRelaySettings, bonding: bool) -> None:
        """local.conf changed (applied live, as the reference's applyLocalConfig does): the
        decisions follow the new keys at once; a tunnel to a relay no longer configured, or
        no longer allowed, is closed."""
        old, self.settings = self.settings, settings
        self.decider.enabled = settings.allow and not bonding
        self.decider.force = settings.force and not bonding
        if settings.relay != old.relay or not self.decider.enabled:
            if self._connecting is not None:
                self._connecting.cancel()
                self._connecting = None
            if self.active:
                self.count("closed_reconfigured")
                self._drop()

    def send(self, data: bytes | bytearray | memoryview, remote: Addr) -> bool:
        """An outgoing datagram; returns whether it should also go out by UDP."""
        quick = self.decider.udp_only(remote, len(data))
        if quick is not None:
            return quick
        now = self._clock()
        d = self.decider.on_send(remote, len(data), now, self.active, self._connecting is not None)
        if d.tunnel:
            proto = self._protocol
            transport = proto.transport if proto is not None else None
            if transport is None or transport.get_write_buffer_size() >= WRITE_QUEUE_LIMIT:
                self.count("dropped_queue_full")
            else:
                transport.write(encode_datagram(remote, data))
                self.count("datagrams_out")
        elif d.connect and not self._closed:
            self._connecting = self._loop.create_task(self._connect())
        return d.udp

    def heard_udp(self, remote: Addr, length: int) -> bool:
        """A UDP datagram arrived; returns whether it may go to the node (not with force)."""
        decider = self.decider
        if decider.force:
            return False
        if decider.ignores_received(remote, length):
            return True
        if decider.on_udp_received(remote, length, self._clock()) and self.active:
            log.info("UDP from a global address heard again: closing the TCP fallback tunnel")
            self.count("closed_udp_heard")
            self._drop()
        return True

    async def _connect(self) -> None:
        host, port = self.settings.relay
        self.count("connect_attempts")
        try:
            _, proto = await asyncio.wait_for(
                self._loop.create_connection(lambda: _TunnelProtocol(self), host, port),
                CONNECT_TIMEOUT_S,
            )
        except (TimeoutError, OSError) as e:
            self.count("connect_failures")
            log.info("TCP fallback relay %s/%d unreachable: %s", host, port, e)
            return
        finally:
            self._connecting = None
        if self._closed:
            if proto.transport is not None:
                proto.transport.abort()
            return
        self._drop()
        self._protocol = proto
        log.info("TCP fallback tunnel to %s/%d open", host, port)

    def _lost(self, proto: _TunnelProtocol) -> None:
        proto.transport = None
        if self._protocol is proto:
            self._protocol = None
            log.info("TCP fallback tunnel closed")

    def _drop(self) -> None:
        proto = self._protocol
        self._protocol = None
        if proto is not None and proto.transport is not None:
            proto.transport.abort()
            proto.transport = None

    def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        self._drop()
