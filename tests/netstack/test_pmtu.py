"""Path MTU discovery (RFC 1191, RFC 8201) and a network MTU lowered live: reports quoting a
segment in flight shrink the connection's segments (and what was in flight goes again at the
new size); forged reports are refused; UDP datagrams to a smaller path are fragmented to fit;
the floor and the expiry of learned MTUs."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment

from tests.netstack.test_stack import A_MAC, B_ADDR, ETH_IP4, ETH_IP6, Wire, _pair, rfc4193
from ztnode.netstack.icmp import Icmp4DestinationUnreachable, Icmp6PacketTooBig
from ztnode.netstack.ipv4 import IPv4Header
from ztnode.netstack.ipv6 import IPv6Header
from ztnode.netstack.pmtu import EXPIRE_MS, MIN_MTU_V6, PathMtu

ROUTER_MAC = 0x0200000000FE


def in_flight(w: Wire) -> list[bytes]:
    """The segments a emits now, held back from b (in flight)."""
    return [p for _, et, p in w.a.frames_to_send(w.now) if et == ETH_IP4]


def frag_needed(segment: bytes, mtu: int) -> bytes:
    """A router's ICMP "fragmentation needed" to a, quoting one of a's segments."""
    icmp = Icmp4DestinationUnreachable(4, segment[:28], next_hop_mtu=mtu).encode()
    return IPv4Header(IPv4Address("10.9.0.254"), IPv4Address("10.9.0.1"), 1).encode(icmp)


def test_a_report_about_a_segment_in_flight_shrinks_the_connection() -> None:
    w = Wire()
    c, s = _pair(w, "10.9.0.2", 80)
    mss_before = c.conn.snd.mss
    c.send(bytes(20_000))
    held = in_flight(w)
    big = [p for p in held if len(p) > 1400]
    assert big
    w.a.receive_frame(ROUTER_MAC, A_MAC, ETH_IP4, frag_needed(big[0], 1400), w.now)
    assert c.conn.snd.mss < mss_before and w.a.counters["pmtu_lowered"] == 1
    # What was in flight goes again, each datagram within the new MTU, and all arrives.
    w.run(5_000)
    sent_after = [p for p in w.sent("a", ETH_IP4)][-5:]
    assert all(len(p) <= 1400 for p in sent_after)
    got = b""
    while chunk := s.recv():
        got += chunk
    assert got == bytes(20_000)


def test_a_report_about_no_segment_of_ours_is_refused() -> None:
    w = Wire()
    c, _ = _pair(w, "10.9.0.2", 80)
    forged = bytes(IP(src="10.9.0.1", dst="10.9.0.2") / TCP(sport=c.local[1], dport=80, seq=12345))
    w.a.receive_frame(ROUTER_MAC, A_MAC, ETH_IP4, frag_needed(forged, 600), w.now)
    assert w.a.counters["pmtu_report_refused"] == 1
    assert w.a.pmtu.peek(IPv4Address("10.9.0.2"), w.a.mtu) == w.a.mtu


def test_udp_to_a_smaller_ipv6_path_is_fragmented_to_fit() -> None:
    w = Wire()
    dst = IPv6Address(rfc4193(B_ADDR))
    sock = w.a.udp_bind(None, 5000, ipv6=True)
    sock.sendto(bytes(100), str(dst), 9, w.now)
    w.run()
    quoted = next(p for p in w.sent("a", ETH_IP6) if p[6] == 17)
    src = IPv6Address(quoted[8:24])
    ptb = Icmp6PacketTooBig(1300, quoted).encode(IPv6Address("fd00::fe"), src)
    w.a.receive_frame(
        ROUTER_MAC, A_MAC, ETH_IP6, IPv6Header(IPv6Address("fd00::fe"), src, 58).encode(ptb), w.now
    )
    assert w.a.pmtu.peek(dst, w.a.mtu) == 1300
    sock.sendto(bytes(2000), str(dst), 9, w.now)
    pieces = [IPv6(p) for _, et, p in w.a.frames_to_send(w.now) if et == ETH_IP6]
    assert len(pieces) == 2 and all(len(bytes(p)) <= 1300 for p in pieces)
    assert all(IPv6ExtHdrFragment in p for p in pieces)


def test_the_network_mtu_lowered_live_shrinks_connections() -> None:
    w = Wire()
    c, _ = _pair(w, "10.9.0.2", 80)
    before = c.conn.snd.mss
    w.a.set_mtu(1500)
    assert c.conn.snd.mss < before and c.conn.snd.mss <= 1500 - 40


def test_learned_mtus_have_a_floor_and_expire() -> None:
    p = PathMtu()
    dst = IPv6Address("fd00::9")
    assert p.learn(dst, 600, 2800, 0) == MIN_MTU_V6  # below IPv6's minimum: raised to it
    assert p.learn(dst, 2000, 2800, 1) is None  # not lower than what we have
    assert p.mtu_for(dst, 2800, EXPIRE_MS) == 2800  # ten minutes on: tried at full size again
