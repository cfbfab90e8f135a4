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
from collections import deque
from collections.abc import Callable, Iterable
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
)

from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.netstack import tcp as tcb
from ztnode.netstack.arpcache import NeighborCache
from ztnode.netstack.ethernet import ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6
from ztnode.netstack.handles import (
    AcceptReady,
    PingReply,
    StackEvent,
    TcpListener,
    TcpSocket,
    TcpSocketEvent,
    UdpReadable,
    UdpSocket,
)
from ztnode.netstack.icmp import (
    Icmp4Echo,
    Icmp6Echo,
)
from ztnode.netstack.igmp import GroupReporter
from ztnode.netstack.ipinput import IpInput
from ztnode.netstack.ipoutput import IpOutput, Route
from ztnode.netstack.ipproto import PROTO_ICMP, PROTO_TCP, PROTO_UDP
from ztnode.netstack.ipv4 import IPv4Reassembler
from ztnode.netstack.ipv6 import (
    NH_ICMPV6,
    IPv6Reassembler,
)
from ztnode.netstack.multicast import (
    multicast_mac,
    solicited_node_address,
    solicited_node_mac,
)
from ztnode.netstack.pmtu import PathMtu
from ztnode.netstack.porttable import PortTable
from ztnode.netstack.stackconfig import (
    ALL_NODES_MAC,
    LIMITED_BROADCAST,
    LOOPBACK_ROUNDS,
    IPAddr,
    StackConfig,
    parse_ip,
)
from ztnode.netstack.tcp_timewait import TimeWait
from ztnode.netstack.tcpmux import TcpMux
from ztnode.netstack.tso import Frame, TcpBurst, UdpOffload
from ztnode.netstack.udpmux import UdpMux
from ztnode.wire.mac import BROADCAST_MAC

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


def _earlier(best: int | None, deadline: int | None) -> int | None:
    """The earlier of two deadlines, either of which may be None (none)."""
    if deadline is not None and (best is None or deadline < best):
        return deadline
    return best


def _fixed_isn(value: int) -> Callable[[], int]:
    """The ISN source of a connection that takes over a TIME-WAIT 4-tuple: one set value."""
    return lambda: value


def _broadcasts(v4: list[IPv4Interface]) -> frozenset[bytes]:
    """What :meth:`IpInput.is_broadcast_v4` matches, as packed addresses: set membership of
    bytes instead of ``IPv4Address`` comparisons (interpreted, about 1 000 instructions each)
    on every connect and every datagram sent."""
    subnets = {a.network.broadcast_address.packed for a in v4 if a.network.prefixlen < 31}
    return frozenset({LIMITED_BROADCAST.packed, *subnets})


class IpStack:
    """See the module docstring. ``mac`` is our MAC on the network, ``network_id`` lets the
    stack map ZeroTier-derived IPv6 addresses (rfc4193, 6plane) to MACs without NDP.

    The stack owns the state its parts share (addresses, routes, sockets and ports, the output
    and event queues) and delegates the work: :class:`~ztnode.netstack.ipinput.IpInput` (frames
    in), :class:`~ztnode.netstack.ipoutput.IpOutput` (IP packets out),
    :class:`~ztnode.netstack.udpmux.UdpMux` and :class:`~ztnode.netstack.tcpmux.TcpMux`.
    """

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
        # RFC 6528's secret: keyed once here; each connection's hash starts from a copy (a
        # keyed BLAKE2b set up per connect costs several times the hashing itself).
        self._isn_hash = hashlib.blake2b(digest_size=4, key=random_bytes(32))
        self._ip_id = int.from_bytes(random_bytes(2), "big")
        self._v4: list[IPv4Interface] = []
        self._v6: list[IPv6Interface] = []
        self._mine: set[bytes] = set()  # packed addresses we answer for
        # IPv4 broadcast addresses (packed) of our subnets and the limited broadcast.
        self._broadcast_v4: frozenset[bytes] = _broadcasts([])
        self._routes: list[Route] = []
        #: Bumped when addresses, routes or a neighbor mapping change: a connection's
        #: remembered next-hop MAC (TcpSocket._mac) is good only for the same generation.
        self._generation = 0
        self._groups: dict[IPAddr, int] = {}  # joined multicast groups (refcounted)
        #: Source-specific joins: group -> source -> refcount.
        self._sources: dict[IPAddr, dict[IPAddr, int]] = {}
        #: Bumped whenever ``multicast_groups()`` may have changed, so hosts re-sync cheaply.
        self.groups_version = 0
        self._out: list[Frame] = []
        self._events: deque[StackEvent] = deque()
        #: Set by the host when the layer below cuts :class:`TcpBurst` segments and fills in
        #: :class:`UdpOffload` datagrams itself; off, every frame is one packet.
        self.segmentation_offload = False
        self.arp = NeighborCache(retries=self.config.arp_retries, retry_ms=self.config.arp_retry_ms)
        self.ndp = NeighborCache(retries=self.config.arp_retries, retry_ms=self.config.arp_retry_ms)
        self.reasm4 = IPv4Reassembler()
        self.reasm6 = IPv6Reassembler()
        self._tcp: dict[tuple[bytes, int, bytes, int], TcpSocket] = {}
        #: Connections in TIME-WAIT, as compact records (``config.max_time_wait`` at most),
        #: and their deadlines in order: ``(deadline, record)``, a record appended again when
        #: a retransmitted FIN restarts its wait (stale entries are skipped).
        self._time_wait: dict[tuple[bytes, int, bytes, int], TimeWait] = {}
        self._time_wait_order: deque[tuple[int, TimeWait]] = deque()
        self._listeners: PortTable[TcpListener] = PortTable()
        #: Half-open passive connections of all listeners (bounded by ``config.syn_backlog``).
        self._half_open = 0
        self._udp: PortTable[UdpSocket] = PortTable()
        #: Sockets bound with ``reuse`` (SO_REUSEADDR/SO_REUSEPORT) sharing one address and
        #: port, in bind order; ``_udp`` holds the newest, which gets unicast datagrams, and
        #: every one gets a copy of multicast and broadcast ones (as Linux does, so that the
        #: node's own mDNS responder and a program's mDNS socket both hear 5353).
        self._udp_shared: dict[tuple[bool, bytes, int], list[UdpSocket]] = {}
        self._ports: dict[int, dict[int, int]] = {PROTO_TCP: {}, PROTO_UDP: {}}
        #: TCP ports held by ``bind()`` before ``listen()``/``connect()`` (reference counts):
        #: never handed out as ephemeral ports, as a bound socket's port is not on Linux.
        self._reserved_tcp: dict[int, int] = {}
        self._dirty: set[TcpSocket] = set()
        self._timers: list[tuple[int, int, TcpSocket]] = []
        self._timer_seq = itertools.count()
        self.counters: dict[str, int] = {}
        #: TCP retransmissions (bytes, segments) of connections already gone; live ones are
        #: added by ``tcp_retransmits()``.
        self._retransmitted_closed = (0, 0)
        #: The adapter's object for this stack (the user-facing network), like sockets' ``user``.
        self.user: object = None
        self.reporter = GroupReporter(
            mac,
            lambda dst, ethertype, packet: self._out.append((dst, ethertype, packet)),
            lambda: self._v4[0].ip if self._v4 else None,
            lambda: bool(self._v6),
            random_bytes,
        )
        self._reported: tuple[int, int] = (-1, -1)
        self.pmtu = PathMtu()
        self.output = IpOutput(self)
        self.input = IpInput(self)
        self.udp = UdpMux(self)
        self.tcp = TcpMux(self)

    # ----------------------------------------------------------------- configuration

    @property
    def addresses(self) -> list[IPv4Interface | IPv6Interface]:
        return [*self._v4, *self._v6]

    def set_addresses(self, addresses: Iterable[IPv4Interface | IPv6Interface]) -> None:
        """Replace the assigned addresses (the network config's static IPs)."""
        self._v4 = [a for a in addresses if isinstance(a, IPv4Interface)]
        self._v6 = [a for a in addresses if isinstance(a, IPv6Interface)]
        self._mine = {a.ip.packed for a in self._v4} | {a.ip.packed for a in self._v6}
        self._broadcast_v4 = _broadcasts(self._v4)
        self.output.hops.clear()
        self._generation += 1
        self.groups_version += 1

    def set_routes(self, routes: Iterable[tuple[IPv4Network | IPv6Network, IPAddr | None]]) -> None:
        """Managed routes: a target network, on-link when ``via`` is None."""
        self._routes = [Route(n, v) for n, v in routes]
        self.output.hops.clear()
        self._generation += 1

    def set_mtu(self, mtu: int) -> None:
        """The network's MTU, applied live: connections whose segments no longer fit shrink
        them (and resend what was in flight)."""
        lowered = mtu < self.mtu
        if mtu != self.mtu:
            self._generation += 1  # what sockets remember of their way holds the MTU
        self.mtu = mtu
        if lowered:
            for s in list(self._tcp.values()):
                if s.conn.path_mtu(mtu):
                    self._dirty.add(s)

    def underlay_changed(self, macs: frozenset[int], now: int) -> None:
        """The member(s) at ``macs`` are now reached over another physical path: TCP
        connections through them resend what the old path lost right away."""
        out = self.output
        for s in list(self._tcp.values()):
            try:
                dst = ip_address(s.remote[0])
            except ValueError:
                continue
            hop = out.next_hop(dst)
            if hop is None:
                continue
            mac: int | None = None
            if isinstance(hop, IPv6Address):
                mac = out.mac_for_zerotier_ipv6(hop)
            if mac is None:
                cache = self.arp if isinstance(hop, IPv4Address) else self.ndp
                mac = cache.lookup(hop, now)
            if mac in macs and s.conn.underlay_changed(now):
                self._dirty.add(s)

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
        out |= {(multicast_mac(g), 0) for g in self._sources}
        return out

    def join_group(self, group: IPAddr, source: IPAddr | None = None) -> None:
        """IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP (reference-counted); with ``source``,
        IP_ADD_SOURCE_MEMBERSHIP / MCAST_JOIN_SOURCE_GROUP: only that sender's datagrams to
        the group are taken (unless the group is also joined from any source)."""
        if not group.is_multicast:
            raise LocalProtocolError(f"{group} is not a multicast address")
        if source is not None:
            if source.version != group.version or source.is_multicast:
                raise LocalProtocolError(f"{source} is not a unicast source for {group}")
            sources = self._sources.setdefault(group, {})
            sources[source] = sources.get(source, 0) + 1
        else:
            self._groups[group] = self._groups.get(group, 0) + 1
        self.groups_version += 1

    def leave_group(self, group: IPAddr, source: IPAddr | None = None) -> None:
        if source is not None:
            sources = self._sources.get(group, {})
            n = sources.get(source, 0)
            if n <= 1:
                sources.pop(source, None)
                if not sources:
                    self._sources.pop(group, None)
            else:
                sources[source] = n - 1
            self.groups_version += 1
            return
        n = self._groups.get(group, 0)
        if n <= 1:
            self._groups.pop(group, None)
        else:
            self._groups[group] = n - 1
        self.groups_version += 1

    def takes_multicast(self, group: IPAddr, source: IPAddr) -> bool:
        """Whether a datagram from ``source`` to ``group`` is for us: the group joined from
        any source, or from this one."""
        if group in self._groups:
            return True
        return source in self._sources.get(group, ())

    # ----------------------------------------------------------------- host interface

    def ip_groups(self) -> dict[IPAddr, frozenset[IPAddr] | None]:
        """What IGMP/MLD report: each group with the sources joined (None: any source),
        including the solicited-node group of each IPv6 address."""
        out: dict[IPAddr, frozenset[IPAddr] | None] = {
            g: frozenset(srcs) for g, srcs in self._sources.items()
        }
        for g in self._groups:
            out[g] = None
        for a in self._v6:
            out[solicited_node_address(a.ip)] = None
        return out

    def frames_to_send(self, now: int) -> list[Frame]:
        """Frames ``(dst_mac, ethertype, payload)`` to hand to the node, oldest first; with
        ``segmentation_offload`` on, a payload may be a :class:`TcpBurst` to cut or a
        :class:`UdpOffload` to checksum."""
        key = (self.groups_version, self._generation)
        if key != self._reported:  # groups or addresses changed: IGMP/MLD say so
            self._reported = key
            self.reporter.update(self.ip_groups(), now)
        elif not self._dirty and not self._out:  # nothing queued: the usual pump
            return []
        for _ in range(LOOPBACK_ROUNDS):
            if self._dirty:
                dirty = self._dirty
                self._dirty = set()
                for s in dirty:
                    self.tcp.service(s, now)
            out, self._out = self._out, []
            mac = self.mac
            for f in out:  # a plain loop: this runs on every pump
                if f[0] == mac:
                    break
            else:
                return out
            # Traffic to our own addresses turns around here, as on a loopback interface.
            remote = [f for f in out if f[0] != self.mac]
            for f in out:
                if f[0] == self.mac:
                    p = f[2]
                    for one in p.packets() if isinstance(p, (TcpBurst, UdpOffload)) else (p,):
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
        if self._time_wait_order:  # empty on most pumps: no call then
            best = _earlier(best, self.tcp.time_wait_deadline())
        # One by one, not a loop over a tuple of them: asked on every pump.
        best = _earlier(best, self.arp.next_deadline())
        best = _earlier(best, self.ndp.next_deadline())
        best = _earlier(best, self.reporter.next_deadline())
        best = _earlier(best, self.reasm4.engine.next_deadline())
        return _earlier(best, self.reasm6.engine.next_deadline())

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
            self.tcp.service(s, now)
        self.tcp.expire_time_wait(now)
        self.output.resolve_due(now)
        self.reporter.due(now)
        self.reasm4.expire(now)
        self.reasm6.expire(now)

    def receive_frame(
        self,
        src_mac: int,
        dst_mac: int,
        ethertype: int,
        payload: bytes,
        now: int,
        checked: bool = False,
    ) -> None:
        """One Ethernet frame from the network. Never raises for what the network sends.

        ``checked``: the node's transport verified this frame's IPv4 header and TCP or UDP
        checksums (a ``ZT_RX_PLAIN_CHECKED`` record), so the fast paths do not sum them again;
        everything else about the frame is checked as always."""
        try:
            if ethertype == ETHERTYPE_IPV4:
                self.input.rx_ipv4(src_mac, payload, now, checked)
            elif ethertype == ETHERTYPE_IPV6:
                self.input.rx_ipv6(src_mac, payload, now, checked)
            elif ethertype == ETHERTYPE_ARP:
                self.input.rx_arp(src_mac, payload, now)
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
            self.tcp.service(s, now)
        for tw in list(self._time_wait.values()):
            self.tcp.drop_time_wait(tw)
        for lst in list(self._listeners.values()):
            lst.close(now)
        for u in self.udp_sockets():
            u.close()

    # ----------------------------------------------------------------- socket API

    def tcp_connect(
        self, host: str, port: int, now: int, *, local_port: int = 0, ipv6: bool | None = None
    ) -> TcpSocket:
        """Start an active open; ``ConnectedEvent`` (or a reset/time-out) follows."""
        dst = self._parse_ip(host, ipv6)
        if not 0 < port <= 0xFFFF:
            raise OSError(errno.EINVAL, f"bad port {port}")
        src = self.output.source_for(dst)
        if src is None or (self.output.next_hop(dst) is None and not dst.is_multicast):
            raise OSError(errno.ENETUNREACH, f"no route to {dst} on this network")
        if dst.is_multicast or (isinstance(dst, IPv4Address) and self.input.is_broadcast_v4(dst)):
            raise OSError(errno.ENETUNREACH, f"{dst} is not a unicast address")
        isn: int | None = None
        if local_port == 0:
            local_port, isn = self._tcp_ephemeral(src, dst, port, now)
        else:
            self._claim_port(PROTO_TCP, local_port, exclusive=False)
        key = (src.packed, local_port, dst.packed, port)
        if key in self._tcp or key in self._time_wait:
            self._release_port(PROTO_TCP, local_port)
            raise OSError(errno.EADDRINUSE, "that 4-tuple is in use")
        source = self.tcp._isn_for(key, now) if isn is None else _fixed_isn(isn)
        conn = tcb.TcpConnection(self.tcp.config_for(dst), isn=source, private_config=True)
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
        port = self._claim_port(PROTO_TCP, port, exclusive=True, ipv6=ipv6)
        self._reserved_tcp[port] = self._reserved_tcp.get(port, 0) + 1
        return port

    def release_tcp_port(self, port: int) -> None:
        n = self._reserved_tcp.get(port, 0)
        if n <= 1:
            self._reserved_tcp.pop(port, None)
        else:
            self._reserved_tcp[port] = n - 1
        self._release_port(PROTO_TCP, port)

    def udp_bind(
        self, host: str | None, port: int, *, ipv6: bool = False, reuse: bool = False
    ) -> UdpSocket:
        """A UDP socket on ``host`` (None: every address) and ``port`` (0: an ephemeral one).
        With ``reuse``, it may share the port with other ``reuse`` sockets (SO_REUSEADDR /
        SO_REUSEPORT): all of them hear multicast and broadcast, the newest hears unicast; a
        socket bound without it still owns its port alone."""
        ip = self._bind_ip(host, ipv6)
        sharing = reuse and port != 0 and self._udp_port_shareable(port, ipv6)
        port = self._claim_port(PROTO_UDP, port, exclusive=not sharing, ipv6=ipv6)
        sock = UdpSocket(self, ipv6, ip, port, reuse=reuse)
        key = sock._key()
        if reuse:
            self._udp_shared.setdefault(key, []).append(sock)
        self._udp[key] = sock
        return sock

    def _udp_port_shareable(self, port: int, ipv6: bool) -> bool:
        """Whether every socket of this family holding ``port`` was bound with ``reuse``."""
        holders = [s for k, s in self._udp.items() if k[2] == port and k[0] == ipv6]
        return all(s.reuse for s in holders)

    def udp_sockets(self) -> list[UdpSocket]:
        """Every open UDP socket, shared ones included."""
        out = [s for s in self._udp.values() if not s.reuse]
        for group in self._udp_shared.values():
            out += group
        return out

    def ping(self, host: str, identifier: int, sequence: int, data: bytes, now: int) -> None:
        """Send one ICMP(v6) echo request; a :class:`PingReply` event brings the answer."""
        dst = self._parse_ip(host, None)
        if isinstance(dst, IPv4Address):
            msg = Icmp4Echo(identifier, sequence, data).encode()
            self.output.send_ip(dst, PROTO_ICMP, msg, now)
        else:
            src = self.output.source_for(dst)
            if src is None:
                raise OSError(errno.ENETUNREACH, f"no route to {dst}")
            assert isinstance(src, IPv6Address)
            msg = Icmp6Echo(identifier, sequence, data).encode(src, dst)
            self.output.send_ip(dst, NH_ICMPV6, msg, now, src=src)

    def route_exists(self, host: str) -> bool:
        """Whether a packet to ``host`` has a source address and a next hop here."""
        try:
            dst = self._parse_ip(host, None)
        except OSError:
            return False
        return self.output.source_for(dst) is not None and self.output.next_hop(dst) is not None

    def route_length(self, host: str) -> int:
        """How specific this stack's route to ``host`` is (its prefix length), -1 for none:
        a host with several networks sends on the one with the longest match."""
        try:
            dst = self._parse_ip(host, None)
        except OSError:
            return -1
        if self.output.source_for(dst) is None:
            return -1
        return self.output.route_match(dst)[1]

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

    # ----------------------------------------------------------------- ports and helpers

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    def _parse_ip(self, host: str, ipv6: bool | None) -> IPAddr:
        try:
            ip = parse_ip(host)
        except (ValueError, TypeError):
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
            low, high = self.config.ephemeral_ports
            for _ in range(64):
                cand = low + int.from_bytes(self._random_bytes(2), "big") % (high - low + 1)
                if cand not in used:
                    port = cand
                    break
            else:
                free = next((p for p in range(low, high + 1) if p not in used), None)
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
        if proto == PROTO_TCP:
            return self._listeners.holds(port, ipv6)
        return self._udp.holds(port, ipv6)

    def _release_port(self, proto: int, port: int) -> None:
        used = self._ports[proto]
        n = used.get(port, 0)
        if n <= 1:
            used.pop(port, None)
        else:
            used[port] = n - 1

    def _tcp_ephemeral(
        self, src: IPAddr, dst: IPAddr, dport: int, now: int
    ) -> tuple[int, int | None]:
        """A local port for a connect from ``src`` to ``dst``:``dport`` (referenced), and the
        ISN the connection must start from when it takes over a TIME-WAIT 4-tuple (else None).

        A port qualifies when no listener or ``bind()`` holds it and its 4-tuple is free, or
        waits in TIME-WAIT and may be taken over (``StackConfig.reuse_time_wait``: timestamps
        on, the wait a second old): as on Linux, the first port found that qualifies is taken,
        and the same port serves connections to other destinations meanwhile. Random tries
        first, then one pass over the range from a random start; EADDRNOTAVAIL when none."""
        low, high = self.config.ephemeral_ports
        span = high - low + 1
        sp, dp = src.packed, dst.packed
        tcp = self._tcp
        waiting = self._time_wait
        reserved = self._reserved_tcp
        reuse = self.config.reuse_time_wait
        listening = self._listeners
        start = int.from_bytes(self._random_bytes(2), "big")
        for i in range(span + 16):
            if i < 16:  # random tries: nearly always enough
                p = low + int.from_bytes(self._random_bytes(2), "big") % span
            else:
                p = low + (start + i) % span
            key = (sp, p, dp, dport)
            if key in tcp or p in reserved or listening.holds(p):
                continue
            tw = waiting.get(key)
            isn: int | None = None
            if tw is not None:
                if not (reuse and tw.ts_enabled and now - tw.began >= 1000):
                    continue
                isn = (tw.snd_nxt + 65537) & 0xFFFFFFFF  # past anything the old one sent
                self.tcp.drop_time_wait(tw)
                self._count("tcp_time_wait_reused")
            self._claim_port(PROTO_TCP, p, exclusive=False)
            return p, isn
        raise OSError(
            errno.EADDRNOTAVAIL, f"no local port free for a connection to {dst} port {dport}"
        )
