"""The stack's output path: source address and next hop (routes, with a bounded per-destination
cache), Ethernet framing with neighbor resolution (ARP/NDP, with packets queued while a
neighbor is resolved), IPv4/IPv6 headers and fragmentation, and the rate limit on ICMP errors."""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import TYPE_CHECKING

from ztnode.errors import DecodeError
from ztnode.netstack.arp import ArpPacket
from ztnode.netstack.checksum import internet_checksum
from ztnode.netstack.ethernet import ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6
from ztnode.netstack.handles import (
    UdpReadable,
)
from ztnode.netstack.icmp import (
    ICMP4_CODE_PORT_UNREACHABLE,
    ICMP6_CODE_PORT_UNREACHABLE,
    NeighborSolicitation,
)
from ztnode.netstack.ipproto import PROTO_TCP, PROTO_UDP
from ztnode.netstack.ipv4 import IPv4Header
from ztnode.netstack.ipv4 import fragment as fragment4
from ztnode.netstack.ipv6 import (
    NH_ICMPV6,
    IPv6Header,
)
from ztnode.netstack.ipv6 import fragment as fragment6
from ztnode.netstack.multicast import (
    multicast_mac,
    solicited_node_address,
    solicited_node_mac,
)
from ztnode.netstack.stackconfig import (
    HOP_CACHE_SIZE,
    IP4_HEADER,
    NDP_HOP_LIMIT,
    IPAddr,
)
from ztnode.netstack.tcp_states import TcpState
from ztnode.wire.mac import BROADCAST_MAC, mac_from_address

if TYPE_CHECKING:
    from ztnode.netstack.stack import IpStack


class Route:
    __slots__ = ("network", "via")

    def __init__(self, network: IPv4Network | IPv6Network, via: IPAddr | None) -> None:
        self.network = network
        self.via = via


class IpOutput:
    """See the module docstring."""

    def __init__(self, rt: IpStack) -> None:
        self.rt = rt
        self.hops: dict[IPAddr, IPAddr | None] = {}  # next hop by destination (next_hop)
        self._icmp_budget = rt.config.icmp_errors_per_s
        self._icmp_budget_at = 0

    def source_for(self, dst: IPAddr) -> IPAddr | None:
        """The address to send from: one on the destination's subnet, else the first of the
        family (RFC 6724's rules reduce to this on a single-interface host)."""
        if isinstance(dst, IPv4Address):
            for a4 in self.rt._v4:
                if dst in a4.network:
                    return a4.ip
            return self.rt._v4[0].ip if self.rt._v4 else None
        for a6 in self.rt._v6:
            if dst in a6.network:
                return a6.ip
        return self.rt._v6[0].ip if self.rt._v6 else None

    def next_hop(self, dst: IPAddr) -> IPAddr | None:
        """Longest-prefix match over our subnets (on-link) and the managed routes, remembered
        per destination until the addresses or routes change (every segment asks)."""
        cache = self.hops
        if dst in cache:
            return cache[dst]
        if len(cache) >= HOP_CACHE_SIZE:
            cache.clear()
        hop = cache[dst] = self._route_lookup(dst)
        return hop

    def _route_lookup(self, dst: IPAddr) -> IPAddr | None:
        return self.route_match(dst)[0]

    def route_match(self, dst: IPAddr) -> tuple[IPAddr | None, int]:
        """The next hop and the prefix length that matched (-1: no route); link-local IPv6
        matches with length 0."""
        best: IPAddr | None = None
        best_len = -1
        ifaces: list[IPv4Interface] | list[IPv6Interface] = (
            self.rt._v4 if isinstance(dst, IPv4Address) else self.rt._v6
        )
        for a in ifaces:
            if dst in a.network and a.network.prefixlen > best_len:
                best, best_len = dst, a.network.prefixlen
        for r in self.rt._routes:
            net = r.network
            if net.version == dst.version and dst in net and net.prefixlen > best_len:
                best_len = net.prefixlen
                best = dst if r.via is None else r.via
        if best is None and isinstance(dst, IPv6Address) and dst.is_link_local:
            return dst, 0
        return best, best_len

    def mac_for_zerotier_ipv6(self, ip: IPv6Address) -> int | None:
        """rfc4193 and 6plane addresses embed the member's ZeroTier address, so its MAC is
        known without asking (ZeroTier's own NDP emulation relies on the same fact)."""
        nwid = self.rt.network_id
        if not nwid:
            return None
        b = ip.packed
        if b[0] == 0xFD and b[1:9] == nwid.to_bytes(8, "big") and b[9:11] == b"\x99\x93":
            return mac_from_address(int.from_bytes(b[11:16], "big"), nwid)
        if b[0] == 0xFC and b[1:5] == ((nwid >> 32) ^ (nwid & 0xFFFFFFFF)).to_bytes(4, "big"):
            return mac_from_address(int.from_bytes(b[5:10], "big"), nwid)
        return None

    def send_ip(
        self,
        dst: IPAddr,
        proto: int,
        payload: bytes,
        now: int,
        *,
        src: IPAddr | None = None,
        hop_limit: int | None = None,
    ) -> int | None:
        """Route, frame and (if needed) fragment one datagram; OSError if it cannot go. The
        next hop's MAC it went to, or None when it waits for a neighbor resolution."""
        if src is None:
            src = self.source_for(dst)
            if src is None:
                raise OSError(
                    errno.ENETUNREACH,
                    f"no {('IPv4', 'IPv6')[dst.version == 6]} address on this network",
                )
        ttl = hop_limit if hop_limit is not None else self.rt.config.ttl
        mtu = self.rt.pmtu.mtu_for(dst, self.rt.mtu, now)
        if isinstance(dst, IPv4Address):
            assert isinstance(src, IPv4Address)
            self.rt._ip_id = ident4 = (self.rt._ip_id + 1) & 0xFFFF
            if 20 + len(payload) <= mtu and 0 <= ttl <= 255 and 0 <= proto <= 255:
                # The common datagram, built by hand; the header class is its reference.
                packets = [ipv4_datagram(src.packed, dst.packed, proto, ttl, ident4, payload)]
            else:  # too large for one datagram; or fields the header class refuses (ValueError)
                hdr = IPv4Header(src, dst, proto, ttl=ttl, identification=ident4)
                try:
                    packets = fragment4(hdr, payload, mtu)
                except ValueError as e:
                    raise OSError(errno.EMSGSIZE, str(e)) from None
            ethertype = ETHERTYPE_IPV4
        else:
            assert isinstance(src, IPv6Address)
            h6 = IPv6Header(src, dst, proto, hop_limit=ttl)
            if 40 + len(payload) <= mtu:
                packets = [h6.encode(payload)]
            else:
                ident = int.from_bytes(self.rt._random_bytes(4), "big")
                try:
                    packets = fragment6(h6, payload, mtu, ident)
                except ValueError as e:
                    raise OSError(errno.EMSGSIZE, str(e)) from None
            ethertype = ETHERTYPE_IPV6
        mac = self.resolve(dst, src, ethertype, packets, now)
        if mac is not None:
            out = self.rt._out
            for p in packets:
                out.append((mac, ethertype, p))
        return mac

    def send_ip_quiet(
        self, dst: IPAddr, proto: int, payload: bytes, now: int, *, src: IPAddr | None = None
    ) -> None:
        """For replies made inside the receive path: a failure is a count, not an exception."""
        try:
            self.send_ip(dst, proto, payload, now, src=src)
        except OSError:
            self.rt._count("reply_unroutable")

    def resolve(
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
        if isinstance(dst, IPv4Address) and self.rt.input.is_broadcast_v4(dst):
            return BROADCAST_MAC
        hop = self.next_hop(dst)
        if hop is None:
            raise OSError(errno.ENETUNREACH, f"no route to {dst} on this network")
        if hop.packed in self.rt._mine:
            return self.rt.mac  # turned around in frames_to_send
        if isinstance(hop, IPv6Address):
            zmac = self.mac_for_zerotier_ipv6(hop)
            if zmac is not None:
                return zmac
        cache = self.rt.arp if isinstance(hop, IPv4Address) else self.rt.ndp
        mac = cache.lookup(hop, now)
        if mac is not None:
            return mac
        solicit = False
        dropped = cache.dropped
        for p in packets() if callable(packets) else packets:
            solicit = cache.enqueue(hop, ethertype, p, now) or solicit
        if cache.dropped != dropped:
            counters = self.rt.counters
            counters["neighbor_queue_full"] = (
                counters.get("neighbor_queue_full", 0) + cache.dropped - dropped
            )
        if solicit:
            self.solicit(hop, src, now)
        return None

    def solicit(self, hop: IPAddr, src: IPAddr | None, now: int) -> None:
        if isinstance(hop, IPv4Address):
            s4 = src if isinstance(src, IPv4Address) else self.source_for(hop)
            if s4 is None:
                return
            assert isinstance(s4, IPv4Address)
            arp = ArpPacket.request(self.rt.mac, s4, hop).encode()
            self.rt._out.append((BROADCAST_MAC, ETHERTYPE_ARP, arp))
            return
        s6 = src if isinstance(src, IPv6Address) else self.source_for(hop)
        if s6 is None:
            return
        assert isinstance(s6, IPv6Address)
        group = solicited_node_address(hop)
        msg = NeighborSolicitation(hop, source_lladdr=self.rt.mac).encode(s6, group)
        pkt = IPv6Header(s6, group, NH_ICMPV6, hop_limit=NDP_HOP_LIMIT).encode(msg)
        self.rt._out.append((solicited_node_mac(hop), ETHERTYPE_IPV6, pkt))

    def resolve_due(self, now: int) -> None:
        for cache in (self.rt.arp, self.rt.ndp):
            again, failed = cache.due(now)
            for ip in again:
                self.solicit(ip, None, now)
            if failed:
                self.rt._count("neighbor_unresolved")
                for ip in failed:
                    self.neighbor_failed(ip, now)

    def neighbor_failed(self, hop: IPAddr, now: int) -> None:
        """Nobody answered for ``hop``: connects through it fail with EHOSTUNREACH, and a
        connected UDP socket sending through it learns EHOSTUNREACH on its next call."""
        rt = self.rt
        for s in list(rt._tcp.values()):
            if s.conn.state is TcpState.SYN_SENT and self.next_hop(s.remote[0]) == hop:
                s.conn.neighbor_failed(now)
                rt.tcp.service(s, now)
        for u in rt.udp_sockets():
            if u.remote is not None and self.next_hop(u.remote[0]) == hop:
                u.error = errno.EHOSTUNREACH
                rt._events.append(UdpReadable(u))

    def learn(self, ip: IPAddr, mac: int, now: int) -> None:
        self.rt._generation += 1
        cache = self.rt.arp if isinstance(ip, IPv4Address) else self.rt.ndp
        for ethertype, pkt in cache.learn(ip, mac, now):
            self.rt._out.append((mac, ethertype, pkt))

    def icmp_error_allowed(self, now: int) -> bool:
        if now - self._icmp_budget_at >= 1000:
            self._icmp_budget_at = now
            self._icmp_budget = self.rt.config.icmp_errors_per_s
        if self._icmp_budget <= 0:
            self.rt._count("icmp_error_rate_limited")
            return False
        self._icmp_budget -= 1
        return True

    def path_mtu_reported(self, quoted: bytes, version: int, mtu: int, now: int) -> None:
        """An ICMP "fragmentation needed" or "packet too big" quoting one of our datagrams:
        the destination's path MTU falls, and TCP connections to it shrink their segments. A
        report quoting a TCP segment counts only if that segment could be ours in flight (a
        connection of ours, its sequence number between SND.UNA and SND.MAX), as Linux checks,
        so an off-path forger cannot shrink our connections."""
        qsrc: IPAddr
        qdst: IPAddr
        # The quote is the start of a datagram too big to pass: its header says a length the
        # quote does not have, so it is read field by field rather than parsed whole.
        ihl = (quoted[0] & 0x0F) * 4 if quoted else 0
        if version == 4:
            if len(quoted) < 28 or quoted[0] >> 4 != 4 or ihl < 20 or len(quoted) < ihl + 8:
                self.rt._count("icmp_bad_quote")
                return
            proto = quoted[9]
            qsrc, qdst = IPv4Address(quoted[12:16]), IPv4Address(quoted[16:20])
            qbody = memoryview(quoted)[ihl:]
        else:
            if len(quoted) < 48 or quoted[0] >> 4 != 6:
                self.rt._count("icmp_bad_quote")
                return
            proto = quoted[6]
            qsrc, qdst = IPv6Address(quoted[8:24]), IPv6Address(quoted[24:40])
            qbody = memoryview(quoted)[40:]
        if mtu <= 0:
            return  # an old router that gives no MTU: nothing reliable to learn
        if proto == PROTO_TCP:
            if len(qbody) < 8:
                return
            sport, dport, seq = struct.unpack_from(">HHI", qbody, 0)
            s = self.rt._tcp.get((qsrc.packed, sport, qdst.packed, dport))
            if s is None or not s.conn.snd.in_flight(seq):
                self.rt._count("pmtu_report_refused")
                return
        lowered = self.rt.pmtu.learn(qdst, mtu, self.rt.mtu, now)
        if lowered is None:
            return
        self.rt._count("pmtu_lowered")
        self.rt._generation += 1
        for sock in list(self.rt._tcp.values()):
            if sock.remote[0] == qdst and sock.conn.path_mtu(lowered):
                self.rt._dirty.add(sock)

    def icmp_unreachable(self, quoted: bytes, version: int, code: int, now: int) -> None:
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
            self.rt._count("icmp_bad_quote")
            return
        if proto != PROTO_UDP or code != port_code or len(qbody) < 8:
            return
        sport, dport = struct.unpack_from(">HH", qbody, 0)
        sock = self.rt.udp.lookup(qsrc, sport)
        if sock is not None and sock.remote is not None and sock.remote == (qdst, dport):
            sock.error = errno.ECONNREFUSED
            self.rt._events.append(UdpReadable(sock))


def ipv4_datagram(
    src: bytes, dst: bytes, proto: int, ttl: int, ident: int, payload: bytes
) -> bytes:
    """An option-less, unfragmented IPv4 datagram between packed addresses (TOS 0, DF clear),
    its header checksummed: what ``IPv4Header(...).encode(payload)`` makes of the same fields
    (its reference, tested so), without the header and address objects. The caller keeps it
    within the MTU and the fields within their bytes."""
    hdr = bytearray(IP4_HEADER.pack(0x45, 0, 20 + len(payload), ident, 0, ttl, proto, 0, src, dst))
    ck = internet_checksum(hdr)
    hdr[10] = ck >> 8
    hdr[11] = ck & 0xFF
    hdr += payload
    return bytes(hdr)
