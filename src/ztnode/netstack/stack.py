"""One sans-I/O IP stack per joined network: Ethernet in and out, ARP/NDP, IPv4/IPv6, ICMP,
UDP and TCP demultiplexing, sockets as plain objects.

``IpStack`` has the five verbs of every protocol object in ztnode:

* ``receive_frame(src_mac, dst_mac, ethertype, payload, now)``: an Ethernet frame from the
  network (ZeroTier carries untagged Ethernet, so a frame is these four fields);
* ``frames_to_send(now)``: ``(dst_mac, ethertype, payload)`` tuples to hand to the node;
* ``get_timer()`` / ``handle_timer(now)``: the earliest deadline of every TCP connection, the
  neighbor caches and reassembly;
* ``next_event()``: :class:`StackEvent` records (TCP connection events, accept-ready, UDP
  readable, ping replies) for the socket layer.

Sockets (:class:`TcpSocket`, :class:`TcpListener`, :class:`UdpSocket`) are handles owned by the
stack; their methods only change state. Whatever they make the stack send leaves with the next
``frames_to_send(now)``, so an adapter calls that after every API call, as it does after every
input. Each handle has a ``user`` slot for the adapter's own object (its asyncio protocol).

Nothing here reads a clock or the OS random source: ``now`` (ms) comes with every input and
randomness from the ``random_bytes`` callable (ISN secret, ephemeral ports, IP ids).

Malformed or unwanted input is a counted drop in ``counters`` (by reason), never an exception.
"""

from __future__ import annotations

import errno
import hashlib
import heapq
import itertools
import logging
import struct
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
)
from typing import Final

from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.netstack import tcp as tcb
from ztnode.netstack.arp import ARP_REPLY, ARP_REQUEST, ArpPacket
from ztnode.netstack.arpcache import NeighborCache
from ztnode.netstack.checksum import ones_sum, pseudo_header_sum_v4, pseudo_header_sum_v6
from ztnode.netstack.ethernet import ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6
from ztnode.netstack.icmp import (
    ICMP4_CODE_PORT_UNREACHABLE,
    ICMP4_CODE_PROTOCOL_UNREACHABLE,
    ICMP6_CODE_PORT_UNREACHABLE,
    Icmp4DestinationUnreachable,
    Icmp4Echo,
    Icmp6DestinationUnreachable,
    Icmp6Echo,
    Icmp6PacketTooBig,
    NeighborAdvertisement,
    NeighborSolicitation,
    decode_icmp4,
    decode_icmp6,
    quote_ipv4,
    quote_ipv6,
)
from ztnode.netstack.ipproto import PROTO_ICMP, PROTO_TCP, PROTO_UDP
from ztnode.netstack.ipv4 import IPv4Header, IPv4Reassembler
from ztnode.netstack.ipv4 import fragment as fragment4
from ztnode.netstack.ipv6 import (
    NH_ICMPV6,
    NH_NONE,
    IPv6Header,
    IPv6Reassembler,
    walk_extension_headers,
)
from ztnode.netstack.ipv6 import fragment as fragment6
from ztnode.netstack.multicast import (
    ALL_NODES,
    multicast_mac,
    solicited_node_address,
    solicited_node_mac,
)
from ztnode.netstack.tcpwire import TcpSegmentHeader
from ztnode.netstack.udp import UdpHeader
from ztnode.wire.mac import BROADCAST_MAC, mac_from_address

log = logging.getLogger("ztnode.netstack")

__all__ = [
    "AcceptReady",
    "IpStack",
    "PingReply",
    "StackConfig",
    "StackEvent",
    "TcpListener",
    "TcpSocket",
    "TcpSocketEvent",
    "UdpReadable",
    "UdpSocket",
]

EPHEMERAL_LOW: Final = 49152
EPHEMERAL_HIGH: Final = 65535
#: RFC 4861 section 6.1.2 / 7.1.1: NDP messages must arrive with hop limit 255.
NDP_HOP_LIMIT: Final = 255
ALL_NODES_MAC: Final = 0x333300000001
_TCP_FIXED: Final = struct.Struct(">HHIIBBH")
_TCP_HEADER: Final = struct.Struct(">HHIIBBHxxxx")
_TS_VALUES: Final = struct.Struct(">II")
_TS_OPTION: Final = struct.Struct(">III")
_TS_FUSED: Final = struct.Struct(">HBBII")
_MSS_OPTION: Final = struct.Struct(">BBH")
_IP4_HEADER: Final = struct.Struct(">BBHHHBBH4s4s")
_IP6_HEADER: Final = struct.Struct(">IHBB16s16s")
#: How long a connection reuses its next hop's MAC before resolving it again.
_MAC_REMEMBER_MS: Final = 1000
#: Destinations whose next hop is remembered at most (then the memory starts over).
_HOP_CACHE_SIZE: Final = 4096
#: Bound on self-addressed exchanges turned around within one ``frames_to_send`` call.
_LOOPBACK_ROUNDS: Final = 64
_LIMITED_BROADCAST: Final = IPv4Address("255.255.255.255")
_ALL_HOSTS: Final = IPv4Address("224.0.0.1")

IPAddr = IPv4Address | IPv6Address
Endpoint = tuple[str, int]


@dataclass(slots=True)
class StackConfig:
    """Tunables of one stack (defaults follow Linux where RFCs leave a choice)."""

    #: Connection defaults. Buffers are larger than TcpConfig's: the receiver handles a burst
    #: of datagrams before it answers, so more than one such burst must fit in a window.
    tcp: tcb.TcpConfig = field(
        default_factory=lambda: tcb.TcpConfig(
            send_buffer=1 << 20, recv_buffer=1 << 20, ooo_limit=1 << 20
        )
    )
    ttl: int = 64
    #: Connections half-open or waiting in a listener's accept queue (Linux somaxconn).
    max_backlog: int = 4096
    #: Datagrams queued per UDP socket before new ones are dropped (counted).
    udp_queue_bytes: int = 256 * 1024
    #: ICMP errors we send per second at most (RFC 1812 4.3.2.8 asks for a limit).
    icmp_errors_per_s: int = 100
    arp_retries: int = 3
    arp_retry_ms: int = 1000
    #: With ``IpStack.segmentation_offload`` on: how many MSS-sized pieces one outgoing TCP
    #: segment may carry for the layer below to cut (see :class:`TcpBurst`).
    gso_segments: int = 16


@dataclass(frozen=True, slots=True)
class TcpBurst:
    """One outgoing TCP segment longer than a packet, for the layer below to cut into pieces
    of ``seg_size`` payload bytes (segmentation offload, Linux's GSO).

    ``header`` is the IP and TCP header of the first piece as it would be sent alone (its
    length, checksum and IPv4 ident fields are rewritten per piece); piece ``i`` starts at
    sequence number ``seq + i * seg_size``, has IPv4 ident ``ip_id + i`` and the flags of the
    header, except that only the last piece keeps PSH and FIN (``flags_last``).
    :meth:`packets` is the reference cut, used wherever the C one is not.
    """

    header: bytes
    ip_id: int
    payload: bytes
    seg_size: int
    flags_last: int

    def packets(self) -> list[bytes]:
        h = self.header
        v6 = h[0] >> 4 == 6
        ihl = 40 if v6 else 20
        thl = len(h) - ihl
        seq0 = int.from_bytes(h[ihl + 4 : ihl + 8], "big")
        src, dst = (h[8:24], h[24:40]) if v6 else (h[12:16], h[16:20])
        payload = self.payload
        size = self.seg_size
        out: list[bytes] = []
        starts = range(0, len(payload), size) or range(1)  # no payload: the header alone
        for i, off in enumerate(starts):
            chunk = payload[off : off + size]
            tcp_len = thl + len(chunk)
            buf = bytearray(h)
            buf += chunk
            struct.pack_into(">I", buf, ihl + 4, (seq0 + off) & 0xFFFFFFFF)
            last = i == len(starts) - 1
            buf[ihl + 13] = self.flags_last if last else self.flags_last & ~0x09
            buf[ihl + 16 : ihl + 18] = b"\0\0"
            ck = ~ones_sum(memoryview(buf)[ihl:], _pseudo_sum(src, dst, PROTO_TCP, tcp_len))
            struct.pack_into(">H", buf, ihl + 16, ck & 0xFFFF)
            if v6:
                struct.pack_into(">H", buf, 4, tcp_len)
            else:
                struct.pack_into(">HH", buf, 2, 20 + tcp_len, (self.ip_id + i) & 0xFFFF)
                buf[10:12] = b"\0\0"
                struct.pack_into(">H", buf, 10, ~ones_sum(memoryview(buf)[:20]) & 0xFFFF)
            out.append(bytes(buf))
        return out


Frame = tuple[int, int, "bytes | TcpBurst"]


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TcpSocketEvent:
    """Something happened on one TCP connection (see :mod:`ztnode.netstack.tcp` events)."""

    sock: TcpSocket
    event: tcb.TcpEvent


@dataclass(frozen=True, slots=True)
class AcceptReady:
    """A listener's accept queue went from empty to non-empty."""

    listener: TcpListener


@dataclass(frozen=True, slots=True)
class UdpReadable:
    """A UDP socket's queue went from empty to non-empty, or an ICMP error is pending."""

    sock: UdpSocket


@dataclass(frozen=True, slots=True)
class PingReply:
    """An ICMP or ICMPv6 echo reply addressed to us."""

    stack: IpStack
    source: str
    identifier: int
    sequence: int
    data: bytes


StackEvent = TcpSocketEvent | AcceptReady | UdpReadable | PingReply


# ---------------------------------------------------------------------------------------------
# Socket handles
# ---------------------------------------------------------------------------------------------


class TcpSocket:
    """One TCP connection owned by a stack. ``conn`` is the sans-I/O TCB."""

    __slots__ = (
        "_mac",
        "_timer_at",
        "conn",
        "ipv6",
        "key",
        "listener",
        "local",
        "remote",
        "stack",
        "user",
    )

    def __init__(
        self,
        stack: IpStack,
        conn: tcb.TcpConnection,
        local: tuple[IPAddr, int],
        remote: tuple[IPAddr, int],
        listener: TcpListener | None,
    ) -> None:
        self.stack = stack
        self.conn = conn
        self.ipv6 = isinstance(local[0], IPv6Address)
        self.local = local
        self.remote = remote
        self.key = (local[0].packed, local[1], remote[0].packed, remote[1])
        self.listener = listener
        self.user: object = None
        self._timer_at: int | None = None
        #: The next hop's MAC as last resolved: (mac, stack generation, valid until).
        self._mac: tuple[int, int, int] | None = None

    @property
    def local_endpoint(self) -> Endpoint:
        return str(self.local[0]), self.local[1]

    @property
    def remote_endpoint(self) -> Endpoint:
        return str(self.remote[0]), self.remote[1]

    @property
    def state(self) -> tcb.TcpState:
        return self.conn.state

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Queue data (backpressure: returns how much fit)."""
        n = self.conn.send(data)
        self.stack._dirty.add(self)
        return n

    def recv(self, max_bytes: int = 1 << 30) -> bytes:
        data = self.conn.recv(max_bytes)
        if data and self.conn.wants_output:
            self.stack._dirty.add(self)  # reading opened the window enough to announce it
        return data

    @property
    def needs_flush(self) -> bool:
        """Whether the stack holds output (this socket's or another's) for the next flush."""
        return bool(self.stack._dirty or self.stack._out)

    def shutdown(self, now: int) -> None:
        """Half close: our FIN follows the queued data."""
        self.conn.shutdown(now)
        self.stack._dirty.add(self)

    def close(self, now: int) -> None:
        self.conn.close(now)
        self.stack._dirty.add(self)

    def abort(self, now: int) -> None:
        self.conn.abort(now)
        self.stack._dirty.add(self)

    def set_nodelay(self, on: bool) -> None:
        """TCP_NODELAY; queued small segments may leave at the next flush."""
        self.conn.set_nodelay(on)
        self.stack._dirty.add(self)

    def set_keepalive(
        self,
        on: bool,
        idle_ms: int | None = None,
        interval_ms: int | None = None,
        count: int | None = None,
    ) -> None:
        self.conn.set_keepalive(on, idle_ms, interval_ms, count)
        self.stack._dirty.add(self)  # the keepalive timer is re-armed by the service pass

    def set_send_buffer(self, size: int) -> None:
        self.conn.set_buffer_sizes(send=size)
        self.stack._dirty.add(self)

    def __repr__(self) -> str:
        return f"<TcpSocket {self.local_endpoint} -> {self.remote_endpoint} {self.conn.state.name}>"


class TcpListener:
    """A listening TCP port; arriving connections wait in ``queue`` until ``accept()``."""

    __slots__ = (
        "backlog",
        "closed",
        "embryonic",
        "ipv6",
        "local_ip",
        "port",
        "queue",
        "stack",
        "user",
    )

    def __init__(
        self, stack: IpStack, ipv6: bool, local_ip: IPAddr | None, port: int, backlog: int
    ) -> None:
        self.stack = stack
        self.ipv6 = ipv6
        self.local_ip = local_ip
        self.port = port
        self.backlog = backlog
        self.queue: deque[TcpSocket] = deque()
        self.embryonic = 0
        self.closed = False
        self.user: object = None

    def accept(self) -> TcpSocket | None:
        """The oldest established connection not yet accepted, or None."""
        while self.queue:
            s = self.queue.popleft()
            if s.conn.state is not tcb.TcpState.CLOSED:
                s.listener = None
                return s
        return None

    def close(self, now: int) -> None:
        """Stop listening; connections not yet accepted are reset."""
        if self.closed:
            return
        self.closed = True
        self.stack._listeners.pop(self._key(), None)
        for s in self.queue:
            s.abort(now)
        self.queue.clear()
        for s in list(self.stack._tcp.values()):
            if s.listener is self:
                s.abort(now)
        self.stack._release_port(PROTO_TCP, self.port)

    def _key(self) -> tuple[bool, bytes, int]:
        return (self.ipv6, self.local_ip.packed if self.local_ip else b"", self.port)

    @property
    def local_endpoint(self) -> Endpoint:
        host = str(self.local_ip) if self.local_ip else ("::" if self.ipv6 else "0.0.0.0")
        return host, self.port


class UdpSocket:
    """A bound UDP port. Datagrams wait in ``queue`` (bounded in bytes) until ``recv()``."""

    __slots__ = (
        "closed",
        "error",
        "ipv6",
        "local_ip",
        "port",
        "queue",
        "queued_bytes",
        "remote",
        "stack",
        "user",
    )

    def __init__(self, stack: IpStack, ipv6: bool, local_ip: IPAddr | None, port: int) -> None:
        self.stack = stack
        self.ipv6 = ipv6
        self.local_ip = local_ip
        self.port = port
        self.queue: deque[tuple[bytes, Endpoint]] = deque()
        self.queued_bytes = 0
        self.remote: tuple[IPAddr, int] | None = None
        self.error = 0
        self.closed = False
        self.user: object = None

    @property
    def local_endpoint(self) -> Endpoint:
        host = str(self.local_ip) if self.local_ip else ("::" if self.ipv6 else "0.0.0.0")
        return host, self.port

    def connect(self, host: str, port: int) -> None:
        """Fix the default destination and accept datagrams from it alone."""
        ip = self.stack._parse_ip(host, self.ipv6)
        self.remote = (ip, port)

    def sendto(self, data: bytes, host: str, port: int, now: int) -> None:
        """Send one datagram; OSError (ENETUNREACH, EMSGSIZE...) when it cannot go."""
        if self.closed:
            raise OSError(errno.EBADF, "socket is closed")
        self.stack._udp_send(self, data, self.stack._parse_ip(host, self.ipv6), port, now)

    def send(self, data: bytes, now: int) -> None:
        if self.remote is None:
            raise OSError(errno.EDESTADDRREQ, "socket is not connected")
        self.stack._udp_send(self, data, self.remote[0], self.remote[1], now)

    def recv(self) -> tuple[bytes, Endpoint] | None:
        """The oldest datagram and its sender, or None."""
        if not self.queue:
            return None
        item = self.queue.popleft()
        self.queued_bytes -= len(item[0])
        return item

    def take_error(self) -> int:
        """A pending ICMP error as an errno (SO_ERROR semantics: cleared when read)."""
        e, self.error = self.error, 0
        return e

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stack._udp.pop(self._key(), None)
        self.stack._release_port(PROTO_UDP, self.port)
        self.queue.clear()

    def _key(self) -> tuple[bool, bytes, int]:
        return (self.ipv6, self.local_ip.packed if self.local_ip else b"", self.port)


# ---------------------------------------------------------------------------------------------
# The stack
# ---------------------------------------------------------------------------------------------


class _Route:
    __slots__ = ("network", "via")

    def __init__(self, network: IPv4Network | IPv6Network, via: IPAddr | None) -> None:
        self.network = network
        self.via = via


class IpStack:
    """See the module docstring. ``mac`` is our MAC on the network, ``network_id`` lets the
    stack map ZeroTier-derived IPv6 addresses (rfc4193, 6plane) to MACs without NDP."""

    def __init__(
        self,
        mac: int,
        *,
        random_bytes: Callable[[int], bytes],
        network_id: int = 0,
        mtu: int = 2800,
        config: StackConfig | None = None,
    ) -> None:
        self.mac = mac
        self.network_id = network_id
        self.config = config or StackConfig()
        self.mtu = mtu
        self._random_bytes = random_bytes
        self._isn_key = random_bytes(32)
        self._ip_id = int.from_bytes(random_bytes(2), "big")
        self._v4: list[IPv4Interface] = []
        self._v6: list[IPv6Interface] = []
        self._mine: set[bytes] = set()  # packed addresses we answer for
        self._routes: list[_Route] = []
        self._hops: dict[IPAddr, IPAddr | None] = {}  # next hop by destination (_next_hop)
        #: Bumped when addresses, routes or a neighbor mapping change: a connection's
        #: remembered next-hop MAC (TcpSocket._mac) is good only for the same generation.
        self._generation = 0
        self._groups: dict[IPAddr, int] = {}  # joined multicast groups (refcounted)
        #: Bumped whenever ``multicast_groups()`` may have changed, so hosts re-sync cheaply.
        self.groups_version = 0
        self._out: list[Frame] = []
        self._events: deque[StackEvent] = deque()
        #: Set by the host when the layer below cuts :class:`TcpBurst` segments itself; off,
        #: every frame is one packet.
        self.segmentation_offload = False
        self.arp = NeighborCache(retries=self.config.arp_retries, retry_ms=self.config.arp_retry_ms)
        self.ndp = NeighborCache(retries=self.config.arp_retries, retry_ms=self.config.arp_retry_ms)
        self.reasm4 = IPv4Reassembler()
        self.reasm6 = IPv6Reassembler()
        self._tcp: dict[tuple[bytes, int, bytes, int], TcpSocket] = {}
        self._listeners: dict[tuple[bool, bytes, int], TcpListener] = {}
        self._udp: dict[tuple[bool, bytes, int], UdpSocket] = {}
        self._ports: dict[int, dict[int, int]] = {PROTO_TCP: {}, PROTO_UDP: {}}
        self._dirty: set[TcpSocket] = set()
        self._timers: list[tuple[int, int, TcpSocket]] = []
        self._timer_seq = itertools.count()
        self._icmp_budget = self.config.icmp_errors_per_s
        self._icmp_budget_at = 0
        self.counters: dict[str, int] = {}
        #: TCP retransmissions (bytes, segments) of connections already gone; live ones are
        #: added by ``tcp_retransmits()``.
        self._retransmitted_closed = (0, 0)
        #: The adapter's object for this stack (the user-facing network), like sockets' ``user``.
        self.user: object = None

    # ----------------------------------------------------------------- configuration

    @property
    def addresses(self) -> list[IPv4Interface | IPv6Interface]:
        return [*self._v4, *self._v6]

    def set_addresses(self, addresses: Iterable[IPv4Interface | IPv6Interface]) -> None:
        """Replace the assigned addresses (the network config's static IPs)."""
        self._v4 = [a for a in addresses if isinstance(a, IPv4Interface)]
        self._v6 = [a for a in addresses if isinstance(a, IPv6Interface)]
        self._mine = {a.ip.packed for a in self._v4} | {a.ip.packed for a in self._v6}
        self._hops.clear()
        self._generation += 1
        self.groups_version += 1

    def set_routes(self, routes: Iterable[tuple[IPv4Network | IPv6Network, IPAddr | None]]) -> None:
        """Managed routes: a target network, on-link when ``via`` is None."""
        self._routes = [_Route(n, v) for n, v in routes]
        self._hops.clear()
        self._generation += 1

    def set_mtu(self, mtu: int) -> None:
        self.mtu = mtu

    def multicast_groups(self) -> set[tuple[int, int]]:
        """The ZeroTier multicast groups (MAC, ADI) this stack needs to receive.

        IPv4 address resolution in ZeroTier uses one group per address: the broadcast MAC with
        the IPv4 address as ADI (the node puts ARP requests there); IPv6 uses the
        solicited-node groups; joined IP multicast groups map to their Ethernet MACs.
        """
        out = {(BROADCAST_MAC, int(a.ip)) for a in self._v4}
        out |= {(solicited_node_mac(a.ip), 0) for a in self._v6}
        if self._v6:
            out.add((ALL_NODES_MAC, 0))
        out |= {(multicast_mac(g), 0) for g in self._groups}
        return out

    def join_group(self, group: IPAddr) -> None:
        """IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP (reference-counted)."""
        if not group.is_multicast:
            raise LocalProtocolError(f"{group} is not a multicast address")
        self._groups[group] = self._groups.get(group, 0) + 1
        self.groups_version += 1

    def leave_group(self, group: IPAddr) -> None:
        n = self._groups.get(group, 0)
        if n <= 1:
            self._groups.pop(group, None)
        else:
            self._groups[group] = n - 1
        self.groups_version += 1

    # ----------------------------------------------------------------- host interface

    def frames_to_send(self, now: int) -> list[Frame]:
        """Frames ``(dst_mac, ethertype, payload)`` to hand to the node, oldest first; with
        ``segmentation_offload`` on, a payload may be a :class:`TcpBurst` to cut."""
        for _ in range(_LOOPBACK_ROUNDS):
            if self._dirty:
                dirty = self._dirty
                self._dirty = set()
                for s in dirty:
                    self._service(s, now)
            out, self._out = self._out, []
            if not any(f[0] == self.mac for f in out):
                return out
            # Traffic to our own addresses turns around here, as on a loopback interface.
            remote = [f for f in out if f[0] != self.mac]
            for f in out:
                if f[0] == self.mac:
                    p = f[2]
                    for one in p.packets() if isinstance(p, TcpBurst) else (p,):
                        self.receive_frame(self.mac, self.mac, f[1], one, now)
            self._out[:0] = remote
            if not self._out and not self._dirty:
                return []
        out, self._out = self._out, []
        return [f for f in out if f[0] != self.mac]

    def next_event(self) -> StackEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> int | None:
        heap = self._timers
        while heap and heap[0][2]._timer_at != heap[0][0]:
            heapq.heappop(heap)
        best = heap[0][0] if heap else None
        for d in (
            self.arp.next_deadline(),
            self.ndp.next_deadline(),
            self.reasm4.engine.next_deadline(),
            self.reasm6.engine.next_deadline(),
        ):
            if d is not None and (best is None or d < best):
                best = d
        return best

    def handle_timer(self, now: int) -> None:
        heap = self._timers
        while heap and heap[0][0] <= now:
            at, _, s = heapq.heappop(heap)
            if s._timer_at != at:
                continue
            s._timer_at = None
            try:
                s.conn.handle_timer(now)
            except Exception:  # a TCB bug must not take the stack down
                log.exception("TCP timer failed")
                s.conn.abort(now)
            self._service(s, now)
        self._resolve_due(now)
        self.reasm4.expire(now)
        self.reasm6.expire(now)

    def receive_frame(
        self, src_mac: int, dst_mac: int, ethertype: int, payload: bytes, now: int
    ) -> None:
        """One Ethernet frame from the network. Never raises for what the network sends."""
        try:
            if ethertype == ETHERTYPE_IPV4:
                self._rx_ipv4(src_mac, payload, now)
            elif ethertype == ETHERTYPE_IPV6:
                self._rx_ipv6(src_mac, payload, now)
            elif ethertype == ETHERTYPE_ARP:
                self._rx_arp(src_mac, payload, now)
            else:
                self._count("ethertype")
        except DecodeError:
            self._count("malformed")
        except Exception:  # a bug, not bad input: log it, count it, keep running
            log.exception("internal error in the IP stack receive path")
            self._count("internal_error")

    def close(self, now: int) -> None:
        """Tear everything down (the network was left): connections are reset."""
        for s in list(self._tcp.values()):
            s.abort(now)
            self._service(s, now)
        for lst in list(self._listeners.values()):
            lst.close(now)
        for u in list(self._udp.values()):
            u.close()

    # ----------------------------------------------------------------- socket API

    def tcp_connect(
        self, host: str, port: int, now: int, *, local_port: int = 0, ipv6: bool | None = None
    ) -> TcpSocket:
        """Start an active open; ``ConnectedEvent`` (or a reset/time-out) follows."""
        dst = self._parse_ip(host, ipv6)
        if not 0 < port <= 0xFFFF:
            raise OSError(errno.EINVAL, f"bad port {port}")
        src = self._source_for(dst)
        if src is None or (self._next_hop(dst) is None and not dst.is_multicast):
            raise OSError(errno.ENETUNREACH, f"no route to {dst} on this network")
        if dst.is_multicast or (isinstance(dst, IPv4Address) and self._is_broadcast_v4(dst)):
            raise OSError(errno.ENETUNREACH, f"{dst} is not a unicast address")
        if local_port == 0:
            local_port = self._ephemeral(PROTO_TCP, src, dst, port)
        else:
            self._claim_port(PROTO_TCP, local_port, exclusive=False)
        key = (src.packed, local_port, dst.packed, port)
        if key in self._tcp:
            self._release_port(PROTO_TCP, local_port)
            raise OSError(errno.EADDRINUSE, "that 4-tuple is in use")
        conn = tcb.TcpConnection(self._tcp_config(dst), isn=self._isn_for(key, now))
        s = TcpSocket(self, conn, (src, local_port), (dst, port), None)
        self._tcp[key] = s
        conn.connect(now)
        self._dirty.add(s)
        return s

    def tcp_listen(
        self, host: str | None, port: int, backlog: int = 128, *, ipv6: bool = False
    ) -> TcpListener:
        """Listen on ``port`` (0 picks one); ``host`` None or a wildcard listens on every
        address of the family."""
        ip = self._bind_ip(host, ipv6)
        port = self._claim_port(PROTO_TCP, port, exclusive=True, ipv6=ipv6)
        lst = TcpListener(self, ipv6, ip, port, max(1, min(backlog, self.config.max_backlog)))
        self._listeners[lst._key()] = lst
        return lst

    def reserve_tcp_port(self, host: str | None, port: int, *, ipv6: bool = False) -> int:
        """``bind()`` before ``listen()``/``connect()``: hold a TCP port (0 picks one) so that
        ``getsockname()`` can report it; give it back with :meth:`release_tcp_port`."""
        self._bind_ip(host, ipv6)
        return self._claim_port(PROTO_TCP, port, exclusive=True, ipv6=ipv6)

    def release_tcp_port(self, port: int) -> None:
        self._release_port(PROTO_TCP, port)

    def udp_bind(self, host: str | None, port: int, *, ipv6: bool = False) -> UdpSocket:
        ip = self._bind_ip(host, ipv6)
        port = self._claim_port(PROTO_UDP, port, exclusive=True, ipv6=ipv6)
        sock = UdpSocket(self, ipv6, ip, port)
        self._udp[sock._key()] = sock
        return sock

    def ping(self, host: str, identifier: int, sequence: int, data: bytes, now: int) -> None:
        """Send one ICMP(v6) echo request; a :class:`PingReply` event brings the answer."""
        dst = self._parse_ip(host, None)
        if isinstance(dst, IPv4Address):
            msg = Icmp4Echo(identifier, sequence, data).encode()
            self._send_ip(dst, PROTO_ICMP, msg, now)
        else:
            src = self._source_for(dst)
            if src is None:
                raise OSError(errno.ENETUNREACH, f"no route to {dst}")
            assert isinstance(src, IPv6Address)
            msg = Icmp6Echo(identifier, sequence, data).encode(src, dst)
            self._send_ip(dst, NH_ICMPV6, msg, now, src=src)

    def route_exists(self, host: str) -> bool:
        """Whether a packet to ``host`` has a source address and a next hop here."""
        try:
            dst = self._parse_ip(host, None)
        except OSError:
            return False
        return self._source_for(dst) is not None and self._next_hop(dst) is not None

    def tcp_retransmits(self) -> tuple[int, int]:
        """(bytes, segments) of TCP data retransmitted on this stack, over its connections
        alive and gone (for metrics; counted only here, never on the data path)."""
        b, n = self._retransmitted_closed
        for s in self._tcp.values():
            b += s.conn.retransmitted_bytes
            n += s.conn.retransmitted_segments
        return b, n

    def is_local(self, host: str) -> bool:
        try:
            return ip_address(host).packed in self._mine
        except ValueError:
            return False

    # ----------------------------------------------------------------- internals: helpers

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    def _parse_ip(self, host: str, ipv6: bool | None) -> IPAddr:
        try:
            ip = ip_address(host.split("%", 1)[0])
        except ValueError:
            raise OSError(errno.EINVAL, f"{host!r} is not an IP address") from None
        if ipv6 is not None and isinstance(ip, IPv6Address) != ipv6:
            if ipv6 and isinstance(ip, IPv4Address):
                raise OSError(errno.EAFNOSUPPORT, f"{host} is IPv4 on an IPv6 socket")
            raise OSError(errno.EAFNOSUPPORT, f"{host} is IPv6 on an IPv4 socket")
        return ip

    def _bind_ip(self, host: str | None, ipv6: bool) -> IPAddr | None:
        if host in (None, "", "0.0.0.0", "::"):
            return None
        assert host is not None
        ip = self._parse_ip(host, ipv6)
        if ip.packed not in self._mine and not ip.is_multicast:
            raise OSError(errno.EADDRNOTAVAIL, f"{host} is not an address of this network")
        return ip

    def _claim_port(
        self, proto: int, port: int, *, exclusive: bool, ipv6: bool | None = None
    ) -> int:
        """Take a reference on a port (0: a free ephemeral one). ``exclusive`` binds fail when
        a listener or UDP socket of the same family already holds the port (IPv4 and IPv6
        have separate port spaces here, as with IPV6_V6ONLY)."""
        used = self._ports[proto]
        if port == 0:
            for _ in range(64):
                cand = EPHEMERAL_LOW + int.from_bytes(self._random_bytes(2), "big") % (
                    EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
                )
                if cand not in used:
                    port = cand
                    break
            else:
                free = next(
                    (p for p in range(EPHEMERAL_LOW, EPHEMERAL_HIGH + 1) if p not in used), None
                )
                if free is None:
                    raise OSError(errno.EADDRINUSE, "no free port")
                port = free
        elif not 0 < port <= 0xFFFF:
            raise OSError(errno.EINVAL, f"bad port {port}")
        elif exclusive and self._port_bound(proto, port, ipv6):
            raise OSError(errno.EADDRINUSE, f"port {port} is in use")
        used[port] = used.get(port, 0) + 1
        return port

    def _port_bound(self, proto: int, port: int, ipv6: bool | None = None) -> bool:
        table = self._listeners if proto == PROTO_TCP else self._udp
        return any(k[2] == port and (ipv6 is None or k[0] == ipv6) for k in table)

    def _release_port(self, proto: int, port: int) -> None:
        used = self._ports[proto]
        n = used.get(port, 0)
        if n <= 1:
            used.pop(port, None)
        else:
            used[port] = n - 1

    def _ephemeral(self, proto: int, src: IPAddr, dst: IPAddr, dport: int) -> int:
        for _ in range(256):
            p = self._claim_port(proto, 0, exclusive=False)
            if self._ports[proto][p] == 1 and not self._port_bound(proto, p):
                return p
            self._release_port(proto, p)
        raise OSError(errno.EADDRNOTAVAIL, "no ephemeral port free")

    def _isn_for(self, key: tuple[bytes, int, bytes, int], now: int) -> Callable[[], int]:
        """RFC 6528: a keyed hash of the 4-tuple plus a 4-microsecond clock."""

        def isn() -> int:
            h = hashlib.blake2b(digest_size=4, key=self._isn_key)
            h.update(key[0] + key[1].to_bytes(2, "big") + key[2] + key[3].to_bytes(2, "big"))
            return (int.from_bytes(h.digest(), "big") + now * 250) & 0xFFFFFFFF

        return isn

    def _tcp_config(self, remote: IPAddr) -> tcb.TcpConfig:
        base = self.config.tcp
        cfg = tcb.TcpConfig(**{f: getattr(base, f) for f in base.__dataclass_fields__})
        cfg.mtu = self.mtu
        cfg.ipv6 = isinstance(remote, IPv6Address)
        cfg.gso_segments = self.config.gso_segments if self.segmentation_offload else 1
        return cfg

    def _source_for(self, dst: IPAddr) -> IPAddr | None:
        """The address to send from: one on the destination's subnet, else the first of the
        family (RFC 6724's rules reduce to this on a single-interface host)."""
        if isinstance(dst, IPv4Address):
            for a4 in self._v4:
                if dst in a4.network:
                    return a4.ip
            return self._v4[0].ip if self._v4 else None
        for a6 in self._v6:
            if dst in a6.network:
                return a6.ip
        return self._v6[0].ip if self._v6 else None

    def _next_hop(self, dst: IPAddr) -> IPAddr | None:
        """Longest-prefix match over our subnets (on-link) and the managed routes, remembered
        per destination until the addresses or routes change (every segment asks)."""
        cache = self._hops
        if dst in cache:
            return cache[dst]
        if len(cache) >= _HOP_CACHE_SIZE:
            cache.clear()
        hop = cache[dst] = self._route_lookup(dst)
        return hop

    def _route_lookup(self, dst: IPAddr) -> IPAddr | None:
        best: IPAddr | None = None
        best_len = -1
        ifaces: list[IPv4Interface] | list[IPv6Interface] = (
            self._v4 if isinstance(dst, IPv4Address) else self._v6
        )
        for a in ifaces:
            if dst in a.network and a.network.prefixlen > best_len:
                best, best_len = dst, a.network.prefixlen
        for r in self._routes:
            net = r.network
            if net.version == dst.version and dst in net and net.prefixlen > best_len:
                best_len = net.prefixlen
                best = dst if r.via is None else r.via
        if best is None and isinstance(dst, IPv6Address) and dst.is_link_local:
            return dst
        return best

    def _mac_for_zerotier_ipv6(self, ip: IPv6Address) -> int | None:
        """rfc4193 and 6plane addresses embed the member's ZeroTier address, so its MAC is
        known without asking (ZeroTier's own NDP emulation relies on the same fact)."""
        nwid = self.network_id
        if not nwid:
            return None
        b = ip.packed
        if b[0] == 0xFD and b[1:9] == nwid.to_bytes(8, "big") and b[9:11] == b"\x99\x93":
            return mac_from_address(int.from_bytes(b[11:16], "big"), nwid)
        if b[0] == 0xFC and b[1:5] == ((nwid >> 32) ^ (nwid & 0xFFFFFFFF)).to_bytes(4, "big"):
            return mac_from_address(int.from_bytes(b[5:10], "big"), nwid)
        return None

    # ----------------------------------------------------------------- output path

    def _send_ip(
        self,
        dst: IPAddr,
        proto: int,
        payload: bytes,
        now: int,
        *,
        src: IPAddr | None = None,
        hop_limit: int | None = None,
    ) -> None:
        """Route, frame and (if needed) fragment one datagram; OSError if it cannot go."""
        if src is None:
            src = self._source_for(dst)
            if src is None:
                raise OSError(
                    errno.ENETUNREACH,
                    f"no {('IPv4', 'IPv6')[dst.version == 6]} address on this network",
                )
        ttl = hop_limit if hop_limit is not None else self.config.ttl
        if isinstance(dst, IPv4Address):
            assert isinstance(src, IPv4Address)
            self._ip_id = (self._ip_id + 1) & 0xFFFF
            hdr = IPv4Header(src, dst, proto, ttl=ttl, identification=self._ip_id)
            if 20 + len(payload) <= self.mtu:
                packets = [hdr.encode(payload)]
            else:
                try:
                    packets = fragment4(hdr, payload, self.mtu)
                except ValueError as e:
                    raise OSError(errno.EMSGSIZE, str(e)) from None
            ethertype = ETHERTYPE_IPV4
        else:
            assert isinstance(src, IPv6Address)
            h6 = IPv6Header(src, dst, proto, hop_limit=ttl)
            if 40 + len(payload) <= self.mtu:
                packets = [h6.encode(payload)]
            else:
                ident = int.from_bytes(self._random_bytes(4), "big")
                try:
                    packets = fragment6(h6, payload, self.mtu, ident)
                except ValueError as e:
                    raise OSError(errno.EMSGSIZE, str(e)) from None
            ethertype = ETHERTYPE_IPV6
        mac = self._resolve(dst, src, ethertype, packets, now)
        if mac is not None:
            out = self._out
            for p in packets:
                out.append((mac, ethertype, p))

    def _resolve(
        self,
        dst: IPAddr,
        src: IPAddr,
        ethertype: int,
        packets: list[bytes] | Callable[[], list[bytes]],
        now: int,
    ) -> int | None:
        """The MAC to send to, or None after queueing ``packets`` behind a solicitation
        (made only then when given as a callable)."""
        if dst.is_multicast:
            return multicast_mac(dst)
        if isinstance(dst, IPv4Address) and self._is_broadcast_v4(dst):
            return BROADCAST_MAC
        hop = self._next_hop(dst)
        if hop is None:
            raise OSError(errno.ENETUNREACH, f"no route to {dst} on this network")
        if hop.packed in self._mine:
            return self.mac  # turned around in frames_to_send
        if isinstance(hop, IPv6Address):
            zmac = self._mac_for_zerotier_ipv6(hop)
            if zmac is not None:
                return zmac
        cache = self.arp if isinstance(hop, IPv4Address) else self.ndp
        mac = cache.lookup(hop, now)
        if mac is not None:
            return mac
        solicit = False
        for p in packets() if callable(packets) else packets:
            solicit = cache.enqueue(hop, ethertype, p, now) or solicit
        if solicit:
            self._solicit(hop, src, now)
        return None

    def _solicit(self, hop: IPAddr, src: IPAddr | None, now: int) -> None:
        if isinstance(hop, IPv4Address):
            s4 = src if isinstance(src, IPv4Address) else self._source_for(hop)
            if s4 is None:
                return
            assert isinstance(s4, IPv4Address)
            arp = ArpPacket.request(self.mac, s4, hop).encode()
            self._out.append((BROADCAST_MAC, ETHERTYPE_ARP, arp))
            return
        s6 = src if isinstance(src, IPv6Address) else self._source_for(hop)
        if s6 is None:
            return
        assert isinstance(s6, IPv6Address)
        group = solicited_node_address(hop)
        msg = NeighborSolicitation(hop, source_lladdr=self.mac).encode(s6, group)
        pkt = IPv6Header(s6, group, NH_ICMPV6, hop_limit=NDP_HOP_LIMIT).encode(msg)
        self._out.append((solicited_node_mac(hop), ETHERTYPE_IPV6, pkt))

    def _resolve_due(self, now: int) -> None:
        for cache in (self.arp, self.ndp):
            again, failed = cache.due(now)
            for ip in again:
                self._solicit(ip, None, now)
            if failed:
                self._count("neighbor_unresolved")

    def _learn(self, ip: IPAddr, mac: int, now: int) -> None:
        self._generation += 1
        cache = self.arp if isinstance(ip, IPv4Address) else self.ndp
        for ethertype, pkt in cache.learn(ip, mac, now):
            self._out.append((mac, ethertype, pkt))

    def _icmp_error_allowed(self, now: int) -> bool:
        if now - self._icmp_budget_at >= 1000:
            self._icmp_budget_at = now
            self._icmp_budget = self.config.icmp_errors_per_s
        if self._icmp_budget <= 0:
            self._count("icmp_error_rate_limited")
            return False
        self._icmp_budget -= 1
        return True

    # ----------------------------------------------------------------- ARP

    def _rx_arp(self, src_mac: int, payload: bytes, now: int) -> None:
        pkt = ArpPacket.decode(payload)
        if pkt.sender_mac != src_mac:
            # ZeroTier authenticates a frame's source MAC (it is derived from the sender's
            # address), so an ARP claiming another MAC is spoofed or corrupt: never learn it.
            self._count("arp_sender_mismatch")
            return
        mine = pkt.target_ip.packed in self._mine
        if pkt.sender_ip.packed in self._mine:
            self._count("arp_from_our_address")
            return
        # RFC 826: update a known sender; add it when the packet is for us.
        if (mine or self.arp.knows(pkt.sender_ip)) and int(pkt.sender_ip) != 0:
            self._learn(pkt.sender_ip, pkt.sender_mac, now)
        if pkt.op == ARP_REQUEST and mine and not pkt.is_gratuitous:
            self._out.append((pkt.sender_mac, ETHERTYPE_ARP, pkt.reply(self.mac).encode()))
        elif pkt.op not in (ARP_REQUEST, ARP_REPLY):
            self._count("arp_op")

    # ----------------------------------------------------------------- IPv4

    def _is_broadcast_v4(self, dst: IPv4Address) -> bool:
        return dst == _LIMITED_BROADCAST or any(
            dst == a.network.broadcast_address and a.network.prefixlen < 31 for a in self._v4
        )

    def _accepts_v4(self, dst: IPv4Address) -> bool:
        if dst.packed in self._mine:
            return True
        if dst.is_multicast:
            return dst in self._groups or dst == _ALL_HOSTS
        return self._is_broadcast_v4(dst)

    def _rx_ipv4(self, src_mac: int, payload: bytes, now: int) -> None:
        # Fast path: an option-less, unfragmented TCP datagram for one of our addresses, the
        # shape of nearly every packet of a bulk transfer. Everything else takes the full codec.
        n = len(payload)
        if (
            n >= 40
            and payload[0] == 0x45
            and payload[9] == PROTO_TCP
            and not payload[6] & 0x3F  # MF clear, offset zero (DF may be set)
            and not payload[7]
        ):
            total = (payload[2] << 8) | payload[3]
            dst = payload[16:20]
            if 40 <= total <= n and dst in self._mine and ones_sum(payload[:20]) == 0xFFFF:
                src = payload[12:16]
                if self._rx_tcp_fast(src, dst, memoryview(payload)[20:total], now):
                    return
        hdr, body = IPv4Header.parse(payload)
        if not self._accepts_v4(hdr.dst):
            self._count("not_for_us")
            return
        if hdr.is_fragment:
            whole = self.reasm4.push(hdr, body, now)
            if whole is None:
                return
            hdr, data = whole
            body = memoryview(data)
        proto = hdr.protocol
        if proto == PROTO_TCP:
            self._rx_tcp(hdr.src, hdr.dst, body, now)
        elif proto == PROTO_UDP:
            self._rx_udp(hdr.src, hdr.dst, body, payload, now)
        elif proto == PROTO_ICMP:
            self._rx_icmp4(hdr, body, now)
        else:
            self._count("unknown_protocol")
            if hdr.dst.packed in self._mine and self._icmp_error_allowed(now):
                msg = Icmp4DestinationUnreachable(
                    ICMP4_CODE_PROTOCOL_UNREACHABLE, quote_ipv4(payload)
                ).encode()
                self._send_ip_quiet(hdr.src, PROTO_ICMP, msg, now, src=hdr.dst)

    def _send_ip_quiet(
        self, dst: IPAddr, proto: int, payload: bytes, now: int, *, src: IPAddr | None = None
    ) -> None:
        """For replies made inside the receive path: a failure is a count, not an exception."""
        try:
            self._send_ip(dst, proto, payload, now, src=src)
        except OSError:
            self._count("reply_unroutable")

    def _rx_icmp4(self, hdr: IPv4Header, body: memoryview, now: int) -> None:
        msg = decode_icmp4(body)
        if isinstance(msg, Icmp4Echo):
            if not msg.reply:
                if hdr.dst.packed not in self._mine:
                    return  # no answers to broadcast pings (RFC 1122 3.2.2.6 allows silence)
                self._send_ip_quiet(
                    hdr.src, PROTO_ICMP, msg.make_reply().encode(), now, src=hdr.dst
                )
            else:
                self._events.append(
                    PingReply(self, str(hdr.src), msg.identifier, msg.sequence, msg.data)
                )
        elif isinstance(msg, Icmp4DestinationUnreachable):
            self._icmp_unreachable(msg.original, 4, msg.code, now)
        else:
            self._count("icmp4_ignored")

    def _icmp_unreachable(self, quoted: bytes, version: int, code: int, now: int) -> None:
        """Port unreachable quoting one of our UDP datagrams: ECONNREFUSED for a connected
        socket (as Linux reports it), ignored for others; TCP ignores soft errors."""
        try:
            if version == 4:
                qh, qbody = IPv4Header.parse(quoted, verify_checksum=False)
                proto = qh.protocol
                qsrc: IPAddr = qh.src
                qdst: IPAddr = qh.dst
                port_code = ICMP4_CODE_PORT_UNREACHABLE
            else:
                if len(quoted) < 48:
                    return
                q6 = IPv6Header.decode(quoted[:40])
                qbody = memoryview(quoted)[40:]
                proto = q6.next_header
                qsrc, qdst = q6.src, q6.dst
                port_code = ICMP6_CODE_PORT_UNREACHABLE
        except DecodeError:
            self._count("icmp_bad_quote")
            return
        if proto != PROTO_UDP or code != port_code or len(qbody) < 8:
            return
        sport, dport = struct.unpack_from(">HH", qbody, 0)
        sock = self._udp_lookup(qsrc, sport)
        if sock is not None and sock.remote is not None and sock.remote == (qdst, dport):
            sock.error = errno.ECONNREFUSED
            self._events.append(UdpReadable(sock))

    # ----------------------------------------------------------------- IPv6

    def _accepts_v6(self, dst: IPv6Address) -> bool:
        if dst.packed in self._mine:
            return True
        if dst.is_multicast:
            if dst == ALL_NODES or dst in self._groups:
                return True
            return any(dst == solicited_node_address(a.ip) for a in self._v6)
        return False

    def _rx_ipv6(self, src_mac: int, payload: bytes, now: int) -> None:
        n = len(payload)
        if n >= 60 and payload[0] >> 4 == 6 and payload[6] == PROTO_TCP:
            plen = (payload[4] << 8) | payload[5]
            dst = payload[24:40]
            body = memoryview(payload)[40 : 40 + plen]
            if (
                20 <= plen <= n - 40
                and dst in self._mine
                and self._rx_tcp_fast(payload[8:24], dst, body, now)
            ):
                return
        hdr, body = IPv6Header.parse(payload)
        if not self._accepts_v6(hdr.dst):
            self._count("not_for_us")
            return
        nh = hdr.next_header
        if nh not in (PROTO_TCP, PROTO_UDP, NH_ICMPV6):
            chain = walk_extension_headers(nh, body)
            if chain.fragment is not None:
                whole = self.reasm6.push(hdr, chain.fragment, body[chain.fragment_offset :], now)
                if whole is None:
                    return
                hdr, nh, data = whole
                body = memoryview(data)
                if nh not in (PROTO_TCP, PROTO_UDP, NH_ICMPV6):
                    chain = walk_extension_headers(nh, body)
                    nh, body = chain.upper_protocol, body[chain.upper_offset :]
            else:
                nh, body = chain.upper_protocol, body[chain.upper_offset :]
        if nh == PROTO_TCP:
            self._rx_tcp(hdr.src, hdr.dst, body, now)
        elif nh == PROTO_UDP:
            self._rx_udp(hdr.src, hdr.dst, body, payload, now)
        elif nh == NH_ICMPV6:
            self._rx_icmp6(src_mac, hdr, body, now)
        elif nh == NH_NONE:
            pass
        else:
            self._count("unknown_protocol")

    def _rx_icmp6(self, src_mac: int, hdr: IPv6Header, body: memoryview, now: int) -> None:
        msg = decode_icmp6(body, hdr.src, hdr.dst)
        if isinstance(msg, Icmp6Echo):
            if not msg.reply:
                if hdr.dst.packed not in self._mine:
                    return
                reply = msg.make_reply().encode(hdr.dst, hdr.src)
                self._send_ip_quiet(hdr.src, NH_ICMPV6, reply, now, src=hdr.dst)
            else:
                self._events.append(
                    PingReply(self, str(hdr.src), msg.identifier, msg.sequence, msg.data)
                )
        elif isinstance(msg, NeighborSolicitation):
            self._rx_ns(src_mac, hdr, msg, now)
        elif isinstance(msg, NeighborAdvertisement):
            if hdr.hop_limit != NDP_HOP_LIMIT:
                self._count("ndp_hop_limit")
                return
            if msg.target_lladdr is not None and msg.target_lladdr != src_mac:
                self._count("ndp_lladdr_mismatch")
                return
            if msg.target_lladdr is not None and (
                msg.solicited or self.ndp.knows(msg.target) or msg.override
            ):
                self._learn(msg.target, msg.target_lladdr, now)
        elif isinstance(msg, Icmp6DestinationUnreachable):
            self._icmp_unreachable(msg.original, 6, msg.code, now)
        elif isinstance(msg, Icmp6PacketTooBig):
            self._count("packet_too_big")
        else:
            self._count("icmp6_ignored")

    def _rx_ns(self, src_mac: int, hdr: IPv6Header, msg: NeighborSolicitation, now: int) -> None:
        """RFC 4861 7.2.3-7.2.4: answer for our addresses, learn the asker's MAC."""
        if hdr.hop_limit != NDP_HOP_LIMIT:
            self._count("ndp_hop_limit")
            return
        if msg.target.packed not in self._mine:
            return
        dad = hdr.src == IPv6Address("::")
        if msg.source_lladdr is not None and msg.source_lladdr != src_mac:
            self._count("ndp_lladdr_mismatch")  # see _rx_arp: the frame's source is authentic
            return
        if not dad and msg.source_lladdr is not None:
            self._learn(hdr.src, msg.source_lladdr, now)
        dst = ALL_NODES if dad else hdr.src
        na = NeighborAdvertisement(
            msg.target, target_lladdr=self.mac, solicited=not dad, override=True
        ).encode(msg.target, dst)
        pkt = IPv6Header(msg.target, dst, NH_ICMPV6, hop_limit=NDP_HOP_LIMIT).encode(na)
        if dad:
            self._out.append((ALL_NODES_MAC, ETHERTYPE_IPV6, pkt))
            return
        mac = msg.source_lladdr
        if mac is None:
            mac = self.ndp.lookup(hdr.src, now) or self._mac_for_zerotier_ipv6(hdr.src)
        if mac is None:
            self._count("ns_without_lladdr")
            return
        self._out.append((mac, ETHERTYPE_IPV6, pkt))

    # ----------------------------------------------------------------- UDP

    def _udp_lookup(self, ip: IPAddr, port: int) -> UdpSocket | None:
        v6 = isinstance(ip, IPv6Address)
        s = self._udp.get((v6, ip.packed, port))
        if s is None:
            s = self._udp.get((v6, b"", port))
        return s

    def _rx_udp(self, src: IPAddr, dst: IPAddr, body: memoryview, whole: bytes, now: int) -> None:
        hdr, data = UdpHeader.parse(body, src, dst)
        sock = self._udp_lookup(dst, hdr.dst_port)
        if sock is None and dst.is_multicast:
            sock = self._udp.get((isinstance(dst, IPv6Address), b"", hdr.dst_port))
        if sock is None:
            self._count("udp_no_socket")
            if dst.packed in self._mine and self._icmp_error_allowed(now):
                self._port_unreachable(src, dst, whole, now)
            return
        if sock.remote is not None and sock.remote != (src, hdr.src_port):
            self._count("udp_not_connected_peer")
            return
        if sock.queued_bytes + len(data) > self.config.udp_queue_bytes:
            self._count("udp_queue_full")
            return
        was_empty = not sock.queue
        sock.queue.append((bytes(data), (str(src), hdr.src_port)))
        sock.queued_bytes += len(data)
        if was_empty:
            self._events.append(UdpReadable(sock))

    def _port_unreachable(self, src: IPAddr, dst: IPAddr, whole: bytes, now: int) -> None:
        if isinstance(src, IPv4Address):
            m4 = Icmp4DestinationUnreachable(ICMP4_CODE_PORT_UNREACHABLE, quote_ipv4(whole))
            self._send_ip_quiet(src, PROTO_ICMP, m4.encode(), now, src=dst)
        else:
            assert isinstance(dst, IPv6Address)
            m6 = Icmp6DestinationUnreachable(ICMP6_CODE_PORT_UNREACHABLE, quote_ipv6(whole))
            self._send_ip_quiet(src, NH_ICMPV6, m6.encode(dst, src), now, src=dst)

    def _udp_send(self, sock: UdpSocket, data: bytes, dst: IPAddr, port: int, now: int) -> None:
        if not 0 < port <= 0xFFFF:
            raise OSError(errno.EINVAL, f"bad port {port}")
        if len(data) > 0xFFFF - 8 - (40 if dst.version == 6 else 20):
            raise OSError(errno.EMSGSIZE, "datagram too large")
        src = (
            sock.local_ip
            if sock.local_ip is not None and not sock.local_ip.is_multicast
            else (self._source_for(dst))
        )
        if src is None:
            raise OSError(errno.ENETUNREACH, f"no route to {dst} on this network")
        dgram = UdpHeader(sock.port, port).encode(data, src, dst)
        self._send_ip(dst, PROTO_UDP, dgram, now, src=src)

    # ----------------------------------------------------------------- TCP

    def _rx_tcp_fast(self, src: bytes, dst: bytes, body: memoryview, now: int) -> bool:
        """An established connection's segment, parsed without the codec objects. False
        sends the packet down the full path (no connection, unusual options)."""
        n = len(body)
        sport, dport, seq, ack, off, fl, win = _TCP_FIXED.unpack_from(body, 0)
        s = self._tcp.get((dst, dport, src, sport))
        if s is None:
            return False
        hlen = (off >> 4) << 2
        ts: tuple[int, int] | None = None
        if hlen == 32 and body[20] == 1 and body[21] == 1 and body[22] == 8 and body[23] == 10:
            ts = _TS_VALUES.unpack_from(body, 24)
        elif hlen != 20:
            return False
        if hlen > n:
            self._count("malformed")
            return True
        psum = _pseudo_sum(src, dst, PROTO_TCP, n)
        if ones_sum(body, psum) != 0xFFFF:
            self._count("tcp_checksum")
            return True
        seg = tcb.Segment(
            seq, ack, fl & 0x3F, win, body[hlen:].tobytes(), None, None, False, (), ts
        )
        s.conn.receive_segment(seg, now)
        # Serviced at the next frames_to_send (once per received burst), not per segment: one
        # ACK then covers the whole burst (stretch ACKs; the sender counts bytes, RFC 3465)
        # and the application is woken once.
        self._dirty.add(s)
        return True

    def _rx_tcp(self, src: IPAddr, dst: IPAddr, body: memoryview, now: int) -> None:
        if dst.packed not in self._mine:
            self._count("tcp_not_unicast")
            return
        h, data = TcpSegmentHeader.parse(body, src, dst)
        seg = tcb.Segment(
            h.seq,
            h.ack,
            h.flags & 0x3F,
            h.window,
            bytes(data),
            h.mss,
            h.window_scale,
            h.sack_permitted,
            h.sack_blocks,
            h.timestamps,
        )
        key = (dst.packed, h.dst_port, src.packed, h.src_port)
        s = self._tcp.get(key)
        if s is None:
            if seg.flags & 0x3F & ~0x08 == 0x02:  # a bare SYN (PSH tolerated)
                lst = self._listeners.get((dst.version == 6, dst.packed, h.dst_port))
                if lst is None:
                    lst = self._listeners.get((dst.version == 6, b"", h.dst_port))
                if lst is not None:
                    self._passive_open(lst, key, (dst, h.dst_port), (src, h.src_port), seg, now)
                    return
            self._count("tcp_no_connection")
            rst = tcb.reset_for(seg)
            if rst is not None:
                self._emit_segment(dst, h.dst_port, src, h.src_port, rst, now)
            return
        s.conn.receive_segment(seg, now)
        self._service(s, now)

    def _passive_open(
        self,
        lst: TcpListener,
        key: tuple[bytes, int, bytes, int],
        local: tuple[IPAddr, int],
        remote: tuple[IPAddr, int],
        seg: tcb.Segment,
        now: int,
    ) -> None:
        if lst.embryonic + len(lst.queue) >= lst.backlog:
            self._count("tcp_backlog_full")  # like Linux: drop the SYN, the client retries
            return
        conn = tcb.TcpConnection(self._tcp_config(remote[0]), isn=self._isn_for(key, now))
        conn.listen()
        s = TcpSocket(self, conn, local, remote, lst)
        self._ports[PROTO_TCP][local[1]] = self._ports[PROTO_TCP].get(local[1], 0) + 1
        self._tcp[key] = s
        lst.embryonic += 1
        conn.receive_segment(seg, now)
        self._service(s, now)

    def _service(self, s: TcpSocket, now: int) -> None:
        """After anything touched a connection: send its segments, surface its events,
        re-arm its timer, and forget it once closed."""
        conn = s.conn
        try:
            segs = conn.segments_to_send(now)
        except Exception:
            log.exception("TCP output failed")
            conn.abort(now)
            segs = []
        for seg in segs:
            self._emit_tcp(s, seg, now)
        events = self._events
        closed = False
        while (e := conn.next_event()) is not None:
            if isinstance(e, tcb.ClosedEvent):
                closed = True
            lst = s.listener
            if lst is not None and s.user is None:
                if isinstance(e, tcb.ConnectedEvent):
                    lst.embryonic -= 1
                    if lst.closed:
                        conn.abort(now)
                        continue
                    lst.queue.append(s)
                    if len(lst.queue) == 1:
                        events.append(AcceptReady(lst))
                    continue
                if isinstance(e, tcb.ClosedEvent) and s not in lst.queue:
                    lst.embryonic -= 1
                if not isinstance(e, tcb.ClosedEvent):
                    continue  # nobody holds this connection yet: accept() checks its state
            events.append(TcpSocketEvent(s, e))
        if closed:
            if self._tcp.get(s.key) is s:
                del self._tcp[s.key]
                self._release_port(PROTO_TCP, s.local[1])
                b, n = self._retransmitted_closed
                self._retransmitted_closed = (
                    b + conn.retransmitted_bytes,
                    n + conn.retransmitted_segments,
                )
            s._timer_at = None
            return
        t = conn.get_timer()
        if t != s._timer_at:
            s._timer_at = t
            if t is not None:
                heapq.heappush(self._timers, (t, next(self._timer_seq), s))

    def _emit_tcp(self, s: TcpSocket, seg: tcb.Segment, now: int) -> None:
        """One segment of a connection, built straight into its frame buffer (the codec
        objects cost more than the rest of the send path for a small segment)."""
        opts = b""
        if seg.mss is not None or seg.wscale is not None or seg.sack_permitted or seg.sack_blocks:
            opts = _tcp_options(seg)
            if len(opts) > 40:
                self._emit_segment(s.local[0], s.local[1], s.remote[0], s.remote[1], seg, now)
                return
        payload = seg.payload
        thl = 20 + len(opts) if opts else (32 if seg.ts is not None else 20)
        v6 = s.ipv6
        ihl = 40 if v6 else 20
        n = len(payload)
        mss = s.conn.snd_mss
        # Several MSS of new data (never a SYN or RST): the layer below cuts it (offload).
        if (
            n > mss
            and self.segmentation_offload
            and ihl + thl + mss <= self.mtu
            and not seg.flags & 0x06
        ):
            self._emit_burst(s, seg, opts, thl, mss, now)
            return
        if ihl + thl + n > self.mtu:
            self._emit_segment(s.local[0], s.local[1], s.remote[0], s.remote[1], seg, now)
            return
        buf = bytearray(ihl + thl + n)
        _TCP_HEADER.pack_into(
            buf, ihl, s.local[1], s.remote[1], seg.seq, seg.ack, thl << 2, seg.flags, seg.window
        )
        if opts:
            buf[ihl + 20 : ihl + thl] = opts
        elif seg.ts is not None:
            _TS_OPTION.pack_into(buf, ihl + 20, 0x0101080A, seg.ts[0], seg.ts[1])
        buf[ihl + thl :] = payload
        lpk, rpk = s.key[0], s.key[2]
        tcp_len = thl + n
        ck = ~ones_sum(memoryview(buf)[ihl:], _pseudo_sum(lpk, rpk, PROTO_TCP, tcp_len)) & 0xFFFF
        buf[ihl + 16] = ck >> 8
        buf[ihl + 17] = ck & 0xFF
        if v6:
            _IP6_HEADER.pack_into(buf, 0, 0x60000000, tcp_len, PROTO_TCP, self.config.ttl, lpk, rpk)
            ethertype = ETHERTYPE_IPV6
        else:
            self._ip_id = ident = (self._ip_id + 1) & 0xFFFF
            _IP4_HEADER.pack_into(
                buf,
                0,
                0x45,
                0,
                20 + tcp_len,
                ident,
                0x4000,
                self.config.ttl,
                PROTO_TCP,
                0,
                lpk,
                rpk,
            )
            ck = ~ones_sum(memoryview(buf)[:20]) & 0xFFFF
            buf[10] = ck >> 8
            buf[11] = ck & 0xFF
            ethertype = ETHERTYPE_IPV4
        packet = bytes(buf)
        known = s._mac
        if known is not None and known[1] == self._generation and now < known[2]:
            self._out.append((known[0], ethertype, packet))
            return
        try:
            mac = self._resolve(s.remote[0], s.local[0], ethertype, [packet], now)
        except OSError:
            self._count("tcp_unroutable")
            return
        if mac is not None:
            self._out.append((mac, ethertype, packet))
            # Remembered for a second at most, so an expired neighbor entry is asked for again
            # within that time, as the resolution above would.
            s._mac = (mac, self._generation, now + _MAC_REMEMBER_MS)

    def _emit_burst(
        self, s: TcpSocket, seg: tcb.Segment, opts: bytes, thl: int, mss: int, now: int
    ) -> None:
        """A segment of several MSS for the layer below to cut into ``mss``-byte pieces and
        build (segmentation offload): its headers once (:class:`TcpBurst`)."""
        v6 = s.ipv6
        ihl = 40 if v6 else 20
        hdr = bytearray(ihl + thl)
        _TCP_HEADER.pack_into(
            hdr, ihl, s.local[1], s.remote[1], seg.seq, seg.ack, thl << 2, seg.flags, seg.window
        )
        if opts:
            hdr[ihl + 20 :] = opts
        elif seg.ts is not None:
            _TS_OPTION.pack_into(hdr, ihl + 20, 0x0101080A, seg.ts[0], seg.ts[1])
        lpk, rpk = s.key[0], s.key[2]
        pieces = -(-len(seg.payload) // mss)
        if v6:
            _IP6_HEADER.pack_into(hdr, 0, 0x60000000, 0, PROTO_TCP, self.config.ttl, lpk, rpk)
            ethertype = ETHERTYPE_IPV6
            ident = 0
        else:
            ident = (self._ip_id + 1) & 0xFFFF
            self._ip_id = (self._ip_id + pieces) & 0xFFFF
            _IP4_HEADER.pack_into(
                hdr, 0, 0x45, 0, 0, ident, 0x4000, self.config.ttl, PROTO_TCP, 0, lpk, rpk
            )
            ethertype = ETHERTYPE_IPV4
        burst = TcpBurst(bytes(hdr), ident, bytes(seg.payload), mss, seg.flags)
        known = s._mac
        if known is not None and known[1] == self._generation and now < known[2]:
            self._out.append((known[0], ethertype, burst))
            return
        try:
            mac = self._resolve(s.remote[0], s.local[0], ethertype, burst.packets, now)
        except OSError:
            self._count("tcp_unroutable")
            return
        if mac is not None:
            self._out.append((mac, ethertype, burst))
            s._mac = (mac, self._generation, now + _MAC_REMEMBER_MS)

    def _emit_segment(
        self, lip: IPAddr, lport: int, rip: IPAddr, rport: int, seg: tcb.Segment, now: int
    ) -> None:
        h = TcpSegmentHeader(
            lport,
            rport,
            seg.seq,
            seg.ack,
            int(seg.flags),
            seg.window,
            0,
            seg.mss,
            seg.wscale,
            seg.sack_permitted,
            seg.sack_blocks,
            seg.ts,
        )
        wire = h.encode(seg.payload, lip, rip)
        try:
            self._send_ip(rip, PROTO_TCP, wire, now, src=lip)
        except OSError:
            self._count("tcp_unroutable")


def _tcp_options(seg: tcb.Segment) -> bytes:
    """The option bytes of a segment, laid out as ``tcpwire.TcpSegmentHeader.options_bytes``
    lays them out (MSS; SACK-permitted fused with timestamps; window scale; SACK blocks), padded
    to a multiple of four."""
    parts: list[bytes] = []
    if seg.mss is not None:
        parts.append(_MSS_OPTION.pack(2, 4, seg.mss))
    if seg.ts is not None:
        parts.append(
            _TS_FUSED.pack(0x0402 if seg.sack_permitted else 0x0101, 8, 10, seg.ts[0], seg.ts[1])
        )
    elif seg.sack_permitted:
        parts.append(b"\x01\x01\x04\x02")
    if seg.wscale is not None:
        parts.append(bytes((1, 3, 3, seg.wscale)))
    if seg.sack_blocks:
        parts.append(bytes((1, 1, 5, 2 + 8 * len(seg.sack_blocks))))
        parts.extend(_TS_VALUES.pack(a, b) for a, b in seg.sack_blocks)
    return b"".join(parts)


def _pseudo_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    if len(src) == 4:
        return pseudo_header_sum_v4(src, dst, proto, length)
    return pseudo_header_sum_v6(src, dst, proto, length)
