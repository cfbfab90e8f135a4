"""The per-network IP stack on its own: two stacks wired back to back, no ZeroTier underneath.

Frames a stack emits are checked with scapy as an independent decoder; behaviours (ARP and NDP
resolution with queued packets, echo, port unreachable, ephemeral ports, backlog, loopback to
our own address, multicast groups) are driven through the stack's public verbs; and random or
mutated frames must only ever become counted drops.
"""

from __future__ import annotations

import errno
import random
from ipaddress import IPv4Address, IPv6Address, ip_interface, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP

from tests.helpers.tcp_peer import time_wait
from ztnode.netstack.arpcache import PACKET_OVERHEAD
from ztnode.netstack.ipproto import PROTO_TCP
from ztnode.netstack.multicast import solicited_node_address
from ztnode.netstack.stack import (
    AcceptReady,
    IpStack,
    PingReply,
    StackEvent,
    TcpSocket,
    UdpReadable,
)
from ztnode.netstack.tcp import Segment, TcpState
from ztnode.netstack.tso import TcpBurst, UdpOffload
from ztnode.wire.mac import BROADCAST_MAC, mac_from_address

NWID = 0x8056C2E21C000001
A_ADDR, B_ADDR = 0x1122334455, 0x6677889900
A_MAC, B_MAC = mac_from_address(A_ADDR, NWID), mac_from_address(B_ADDR, NWID)
ETH_IP4, ETH_ARP, ETH_IP6 = 0x0800, 0x0806, 0x86DD


def rfc4193(addr: int) -> str:
    b = bytes([0xFD]) + NWID.to_bytes(8, "big") + b"\x99\x93" + addr.to_bytes(5, "big")
    return str(IPv6Address(b))


def make(mac: int, v4: str, addr: int, seed: int) -> IpStack:
    s = IpStack(mac, random_bytes=random.Random(seed).randbytes, network_id=NWID)
    s.set_addresses([ip_interface(f"{v4}/24"), ip_interface(f"{rfc4193(addr)}/88")])
    return s


class Wire:
    """Two stacks and a clock; frames cross when ``run`` is called."""

    def __init__(self) -> None:
        self.a = make(A_MAC, "10.9.0.1", A_ADDR, 1)
        self.b = make(B_MAC, "10.9.0.2", B_ADDR, 2)
        self.now = 1000
        self.log: list[tuple[str, int, int, bytes]] = []
        self.events: dict[str, list[StackEvent]] = {"a": [], "b": []}
        self.drop_next = 0
        #: Each offloaded payload the stacks handed over (a TcpBurst or UdpOffload), by side.
        self.offloaded: list[tuple[str, object]] = []

    def run(self, ms: int = 0, rounds: int = 200) -> None:
        end = self.now + ms
        for _ in range(rounds):
            moved = False
            for name, src, dst, smac in (
                ("a", self.a, self.b, A_MAC),
                ("b", self.b, self.a, B_MAC),
            ):
                for dmac, et, frame in src.frames_to_send(self.now):
                    # A stack with segmentation offload hands over bursts: the pieces travel.
                    offloaded = isinstance(frame, (TcpBurst, UdpOffload))
                    if offloaded:
                        self.offloaded.append((name, frame))
                    pieces = frame.packets() if offloaded else (frame,)
                    for payload in pieces:
                        self.log.append((name, dmac, et, payload))
                        moved = True
                        if self.drop_next:
                            self.drop_next -= 1
                            continue
                        if dmac == dst.mac or dmac >> 40 & 1:
                            dst.receive_frame(smac, dmac, et, payload, self.now)
            for name, s in (("a", self.a), ("b", self.b)):
                while (e := s.next_event()) is not None:
                    self.events[name].append(e)
            if moved:
                continue
            timers = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
            nxt = min(timers) if timers else None
            if nxt is None or nxt > end:
                self.now = max(self.now, end)
                return
            self.now = max(self.now, nxt)
            self.a.handle_timer(self.now)
            self.b.handle_timer(self.now)

    def sent(self, name: str, ethertype: int) -> list[bytes]:
        return [p for n, _m, et, p in self.log if n == name and et == ethertype]


def test_arp_resolution_queues_then_delivers_and_answers_with_scapy_valid_frames() -> None:
    w = Wire()
    w.a.ping("10.9.0.2", 5, 1, b"abc", w.now)
    w.run()
    req = ARP(w.sent("a", ETH_ARP)[0])
    assert req.op == 1 and req.pdst == "10.9.0.2" and req.psrc == "10.9.0.1"
    assert req.hwsrc == ":".join(f"{(A_MAC >> s) & 0xFF:02x}" for s in range(40, -8, -8))
    rep = ARP(w.sent("b", ETH_ARP)[0])
    assert rep.op == 2 and rep.psrc == "10.9.0.2" and rep.pdst == "10.9.0.1"
    echo = IP(w.sent("a", ETH_IP4)[0])
    assert echo[ICMP].type == 8 and echo[ICMP].id == 5 and bytes(echo[ICMP].payload) == b"abc"
    assert echo.chksum == IP(bytes(echo)).chksum  # scapy agrees with our checksum
    assert any(isinstance(e, PingReply) and e.data == b"abc" for e in w.events["a"])
    # The reply was answered from B's cache: B learned A from the request (RFC 826 merge).
    assert len(w.sent("b", ETH_ARP)) == 1


def test_arp_gives_up_after_retries_and_counts() -> None:
    w = Wire()
    w.a.ping("10.9.0.77", 1, 1, b"", w.now)
    w.run(10_000)
    assert len(w.sent("a", ETH_ARP)) == 3
    assert w.a.counters["neighbor_unresolved"] == 1


def test_ipv6_uses_embedded_mac_and_answers_neighbor_solicitations() -> None:
    w = Wire()
    w.a.ping(rfc4193(B_ADDR), 9, 2, b"six", w.now)
    w.run()
    pkt = IPv6(w.sent("a", ETH_IP6)[0])
    assert pkt.dst == rfc4193(B_ADDR)  # no NS needed: the MAC is derived from the address
    assert any(isinstance(e, PingReply) and e.sequence == 2 for e in w.events["a"])
    # A foreign host (no embedded MAC) solicits B; B answers with a valid NA.
    src = IPv6Address("fe80::1")
    group = str(solicited_node_address(IPv6Address(rfc4193(B_ADDR))))
    ns = IPv6(src=str(src), dst=group, hlim=255) / ICMPv6ND_NS(tgt=rfc4193(B_ADDR))
    w.b.receive_frame(0x020000000001, 0x3333FF000000, ETH_IP6, bytes(ns), w.now)
    assert w.b.counters.get("ns_without_lladdr") == 1  # no lladdr option and no way to know
    from scapy.layers.inet6 import ICMPv6NDOptSrcLLAddr

    ns2 = ns / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
    w.b.receive_frame(0x020000000001, 0x3333FF000000, ETH_IP6, bytes(IPv6(bytes(ns2))), w.now)
    (mac, et, na_bytes) = w.b.frames_to_send(w.now)[-1]
    na = IPv6(na_bytes)
    assert mac == 0x020000000001 and et == ETH_IP6 and na.hlim == 255
    assert na[ICMPv6ND_NA].tgt == rfc4193(B_ADDR) and na[ICMPv6ND_NA].S == 1
    # NDP with a wrong hop limit is refused (RFC 4861 7.1.1).
    bad = IPv6(src=str(src), dst=group, hlim=64) / ICMPv6ND_NS(tgt=rfc4193(B_ADDR))
    w.b.receive_frame(0x020000000001, 0x3333FF000000, ETH_IP6, bytes(bad), w.now)
    assert w.b.counters["ndp_hop_limit"] == 1


def test_udp_port_unreachable_rate_limited_and_econnrefused() -> None:
    w = Wire()
    u = w.a.udp_bind(None, 0)
    assert 49152 <= u.port <= 65535
    u.connect("10.9.0.2", 9)
    u.send(b"x", w.now)
    w.run()
    err = IP(w.sent("b", ETH_IP4)[-1])
    assert err[ICMP].type == 3 and err[ICMP].code == 3
    assert u.take_error() == errno.ECONNREFUSED and u.take_error() == 0
    assert any(isinstance(e, UdpReadable) for e in w.events["a"])
    # Past the per-second budget, ICMP errors stop (and are counted).
    before = len(w.sent("b", ETH_IP4))
    for _ in range(150):
        u.send(b"x", w.now)
    w.run()
    assert len(w.sent("b", ETH_IP4)) - before == w.b.config.icmp_errors_per_s - 1
    assert w.b.counters["icmp_error_rate_limited"] == 150 - (w.b.config.icmp_errors_per_s - 1)


def test_udp_checksum_and_large_datagram_fragments_checked_by_scapy() -> None:
    w = Wire()
    rx = w.b.udp_bind("10.9.0.2", 4000)
    tx = w.a.udp_bind(None, 0)
    data = bytes(range(256)) * 30
    tx.sendto(data, "10.9.0.2", 4000, w.now)
    w.run()
    frags = [IP(p) for p in w.sent("a", ETH_IP4)]
    assert len(frags) == 3 and all(f.len <= 2800 for f in frags)
    assert frags[0].flags.MF and not frags[-1].flags.MF
    assert rx.recv() == (data, ("10.9.0.1", tx.port))
    # A datagram with a bad UDP checksum is dropped, never delivered.
    pkt = IP(src="10.9.0.1", dst="10.9.0.2") / UDP(sport=1, dport=4000, chksum=0x1234) / b"hi"
    w.b.receive_frame(A_MAC, B_MAC, ETH_IP4, bytes(pkt), w.now)
    assert rx.recv() is None and w.b.counters["malformed"] == 1


def _pair(w: Wire, host: str, port: int) -> tuple[TcpSocket, TcpSocket]:
    lst = w.b.tcp_listen(None, port, ipv6=":" in host)
    c = w.a.tcp_connect(host, port, w.now)
    w.run()
    s = lst.accept()
    assert s is not None and c.state is TcpState.ESTABLISHED
    assert any(isinstance(e, AcceptReady) for e in w.events["b"])
    return c, s


@pytest.mark.parametrize("v6", [False, True])
def test_tcp_segments_valid_for_scapy_and_data_flows(v6: bool) -> None:
    w = Wire()
    host = rfc4193(B_ADDR) if v6 else "10.9.0.2"
    c, s = _pair(w, host, 80)
    c.send(b"GET / HTTP/1.0\r\n\r\n")
    w.run()
    assert s.recv() == b"GET / HTTP/1.0\r\n\r\n"
    et = ETH_IP6 if v6 else ETH_IP4
    packets = [IPv6(raw) if v6 else IP(raw) for raw in w.sent("a", et)]
    tcp = [p for p in packets if TCP in p]  # not the MLD reports of the new addresses
    for p in tcp:
        seg = p[TCP]
        good = bytes(IPv6(bytes(p)) if v6 else IP(bytes(p)))
        assert seg.chksum == (IPv6(good) if v6 else IP(good))[TCP].chksum
    syn = tcp[0][TCP]
    opts = dict((k, v) for k, v in syn.options if k in ("MSS", "WScale", "SAckOK", "Timestamp"))
    assert opts["MSS"] == 2800 - (60 if v6 else 40) and "SAckOK" in opts and "WScale" in opts


@pytest.mark.parametrize("v6", [False, True])
def test_offload_segments_are_the_plain_paths_byte_for_byte(v6: bool) -> None:
    """With segmentation offload a connection's segments start from a header template kept
    per connection: the same conversation (handshake, small writes both ways, bare ACKs, the
    close) puts the same bytes on the wire with offload on and off."""
    logs = []
    for offload in (False, True):
        w = Wire()
        w.a.segmentation_offload = w.b.segmentation_offload = offload
        c, s = _pair(w, rfc4193(B_ADDR) if v6 else "10.9.0.2", 80)
        for size in (1, 100, 1000, 1, 7):
            c.send(bytes([size % 251]) * size)
            w.run()
            s.send(s.recv())
            w.run(ms=300)  # delayed ACKs too
            assert c.recv() == bytes([size % 251]) * size
        c.set_nodelay(True)  # two segments in flight, the first lost: recovery on both paths
        w.drop_next = 1
        c.send(b"a" * 500)
        w.run(rounds=1)
        c.send(b"b" * 500)
        w.run(ms=3000)
        assert s.recv() == b"a" * 500 + b"b" * 500
        c.close(w.now)
        s.close(w.now)
        w.run(ms=1000)
        logs.append([(n, m, et, bytes(p)) for n, m, et, p in w.log])
    plain, offloaded = logs
    assert len(plain) > 20
    assert offloaded == plain


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "full-path"])
def test_tcp_to_closed_port_is_reset_and_listener_backlog_bounds(fast: bool) -> None:
    w = Wire()
    w.b.config.fast_handshake = fast  # off, the SYNs take the codec path
    c = w.a.tcp_connect("10.9.0.2", 81, w.now)
    w.run()
    assert c.state is TcpState.CLOSED
    assert any(getattr(e, "sock", None) is c for e in w.events["a"])
    lst = w.b.tcp_listen("10.9.0.2", 82, backlog=2)
    socks = [w.a.tcp_connect("10.9.0.2", 82, w.now) for _ in range(4)]
    w.run(100)
    # The four SYNs arrive together and are all answered (the backlog bounds the accept
    # queue, not the handshakes); two complete into the queue, and the last ACK of the other
    # two is dropped while it is full, as Linux drops it: those stay half-open on B.
    assert len(lst.queue) == 2 and lst.embryonic == 2
    assert w.b.counters["tcp_listen_overflow"] == 2
    assert all(s.state is TcpState.ESTABLISHED for s in socks)  # A cannot tell
    # A further SYN finds the accept queue full: dropped, the client retries.
    late = w.a.tcp_connect("10.9.0.2", 82, w.now)
    w.run(100)
    assert late.state is TcpState.SYN_SENT and w.b.counters["tcp_backlog_full"] >= 1
    with pytest.raises(OSError) as e:
        w.b.tcp_listen(None, 82)
    assert e.value.errno == errno.EADDRINUSE
    # Accepting makes room: the half-open ones complete when their SYN-ACK goes again (1 s),
    # which fills the queue again before the late SYN's retry (1.1 s), dropped once more.
    first = [lst.accept(), lst.accept()]
    w.run(1500)
    assert len(lst.queue) == 2 and lst.embryonic == 0
    assert late.state is TcpState.SYN_SENT and w.b.counters["tcp_backlog_full"] >= 2
    more = [lst.accept(), lst.accept()]
    w.run(3000)  # the late SYN's next try (3.1 s) finds room
    accepted = [*first, *more, lst.accept()]
    assert all(p is not None for p in accepted) and w.b._half_open == 0
    assert late.state is TcpState.ESTABLISHED
    for c in (*socks, late):
        c.send(b"hi")
    w.run(100)
    assert [p.recv() for p in accepted if p is not None] == [b"hi"] * 5
    unaccepted = w.a.tcp_connect("10.9.0.2", 82, w.now)
    w.run(100)
    assert unaccepted.state is TcpState.ESTABLISHED and len(lst.queue) == 1
    lst.close(w.now)
    w.run()
    # Connections never accepted are reset when the listener closes.
    assert unaccepted.state is TcpState.CLOSED


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "full-path"])
def test_half_open_connections_are_bounded_stack_wide(fast: bool) -> None:
    w = Wire()
    w.b.config.fast_handshake = fast
    w.b.config.syn_backlog = 3
    l1 = w.b.tcp_listen("10.9.0.2", 83, backlog=1)
    l2 = w.b.tcp_listen("10.9.0.2", 84, backlog=1)
    for i, port in enumerate((83, 83, 84, 84, 83)):
        syn = IP(src="10.9.0.1", dst="10.9.0.2") / TCP(sport=40000 + i, dport=port, flags="S")
        w.b.receive_frame(A_MAC, B_MAC, ETH_IP4, bytes(syn), w.now)
    # The bound is the stack's, whatever each listener's backlog: three half-open, two SYNs
    # dropped and counted.
    assert (l1.embryonic, l2.embryonic, w.b._half_open) == (2, 1, 3)
    assert w.b.counters["tcp_syn_backlog_full"] == 2
    # Their SYN-ACKs reach A, which knows no such connections and resets them: the count
    # follows them out.
    w.run(100)
    assert (l1.embryonic, l2.embryonic, w.b._half_open) == (0, 0, 0)
    assert not l1.queue and not l2.queue


def test_a_completing_ack_on_the_codec_path_meets_a_full_queue_too() -> None:
    """The accept queue's check on the codec path: an ACK with options the fast path leaves
    to it (four NOPs) that would complete a handshake while the queue is full is dropped and
    counted; with room, the same ACK completes it."""
    w = Wire()
    w.b.config.fast_handshake = False
    lst = w.b.tcp_listen("10.9.0.2", 86, backlog=1)
    w.b.arp.learn(IPv4Address("10.9.0.1"), A_MAC, w.now)  # B answers without asking

    def from_a(flags: str, seq: int, ack: int = 0) -> None:
        seg = IP(src="10.9.0.1", dst="10.9.0.2") / TCP(
            sport=41000, dport=86, flags=flags, seq=seq, ack=ack, options=[("NOP", None)] * 4
        )
        w.b.receive_frame(A_MAC, B_MAC, ETH_IP4, bytes(seg), w.now)

    from_a("S", 5000)  # half-open while the queue is empty; its SYN-ACK kept from A
    (synack,) = [IP(p)[TCP] for _m, et, p in w.b.frames_to_send(w.now) if et == ETH_IP4]
    assert synack.flags == "SA" and lst.embryonic == 1
    first = w.a.tcp_connect("10.9.0.2", 86, w.now)  # fills the queue
    w.run(100)
    assert first.state is TcpState.ESTABLISHED and len(lst.queue) == 1
    from_a("A", 5001, synack.seq + 1)
    assert w.b.counters["tcp_listen_overflow"] == 1 and lst.embryonic == 1
    assert lst.accept() is not None
    from_a("A", 5001, synack.seq + 1)
    assert len(lst.queue) == 1 and lst.embryonic == 0 and w.b._half_open == 0


def test_packets_wait_for_a_resolution_within_a_byte_bound_oldest_dropped_first() -> None:
    w = Wire()
    lst = w.b.tcp_listen("10.9.0.2", 85, backlog=1000)
    # A thousand connects to a host not resolved yet: every SYN waits for the ARP answer
    # (Linux's unres_qlen_bytes), none is left to its retry a second later.
    socks = [w.a.tcp_connect("10.9.0.2", 85, w.now) for _ in range(1000)]
    w.run(100)
    assert all(s.state is TcpState.ESTABLISHED for s in socks)
    assert len(lst.queue) == 1000 and "neighbor_queue_full" not in w.a.counters
    # The bound is in bytes, a packet costing its length and some overhead: past it the
    # oldest waiting packets go first, counted.
    cache = w.a.arp
    cache.max_queued_bytes = 3 * (100 + PACKET_OVERHEAD)
    for i in range(5):
        cache.enqueue(IPv4Address("10.9.0.99"), ETH_IP4, bytes([i]) * 100, w.now)
    assert [p for _et, p in cache.learn(IPv4Address("10.9.0.99"), B_MAC, w.now)] == [
        bytes([i]) * 100 for i in (2, 3, 4)
    ]
    assert cache.dropped == 2
    for _ in range(5):  # 100-byte packets again (20 + 8 + 72), through the stack's counter
        w.a.ping("10.9.0.98", 1, 1, b"x" * 72, w.now)
    assert w.a.counters["neighbor_queue_full"] == 2


def test_our_own_address_loops_back_and_routes_are_honoured() -> None:
    w = Wire()
    lst = w.a.tcp_listen(None, 91)
    me = w.a.tcp_connect("10.9.0.1", 91, w.now)
    w.run()
    peer = lst.accept()
    assert me.state is TcpState.ESTABLISHED and peer is not None
    me.send(b"self")
    w.run()
    assert peer.recv() == b"self"
    assert not any(et == ETH_IP4 and IP(p).dst == "10.9.0.1" for _n, _m, et, p in w.log)
    with pytest.raises(OSError) as e:
        w.a.tcp_connect("192.0.2.1", 80, w.now)
    assert e.value.errno == errno.ENETUNREACH
    w.a.set_routes([(ip_network("192.0.2.0/24"), IPv4Address("10.9.0.2"))])
    w.a.ping("192.0.2.1", 1, 1, b"", w.now)
    w.run()
    arp = ARP(w.sent("a", ETH_ARP)[-1])
    assert arp.pdst == "10.9.0.2"  # resolved the gateway, not the destination


def test_multicast_groups_follow_addresses_and_joins() -> None:
    s = make(A_MAC, "10.9.0.1", A_ADDR, 3)
    v = s.groups_version
    groups = s.multicast_groups()
    assert (BROADCAST_MAC, int(IPv4Address("10.9.0.1"))) in groups
    assert (0x333300000001, 0) in groups
    s.join_group(IPv4Address("224.0.0.251"))
    assert (0x01005E0000FB, 0) in s.multicast_groups() and s.groups_version > v
    u = s.udp_bind(None, 5353)
    mdns = IP(src="10.9.0.9", dst="224.0.0.251") / UDP(sport=5353, dport=5353) / b"q"
    s.receive_frame(0x020000000009, 0x01005E0000FB, ETH_IP4, bytes(mdns), 1)
    assert u.recv() == (b"q", ("10.9.0.9", 5353))
    s.leave_group(IPv4Address("224.0.0.251"))
    s.receive_frame(0x020000000009, 0x01005E0000FB, ETH_IP4, bytes(mdns), 1)
    assert u.recv() is None and s.counters["not_for_us"] == 1


def test_shared_udp_port_copies_multicast_to_all_and_unicast_to_the_newest() -> None:
    """SO_REUSEADDR semantics: the node's mDNS responder and a program's socket share 5353."""
    s = make(A_MAC, "10.9.0.1", A_ADDR, 3)
    s.join_group(IPv4Address("224.0.0.251"))
    first = s.udp_bind(None, 5353, reuse=True)
    with pytest.raises(OSError) as err:
        s.udp_bind(None, 5353)  # a socket without reuse cannot join the sharers
    assert err.value.errno == errno.EADDRINUSE
    second = s.udp_bind(None, 5353, reuse=True)
    mdns = IP(src="10.9.0.9", dst="224.0.0.251") / UDP(sport=5353, dport=5353) / b"m"
    s.receive_frame(0x020000000009, 0x01005E0000FB, ETH_IP4, bytes(mdns), 1)
    assert first.recv() == (b"m", ("10.9.0.9", 5353)) == second.recv()
    uni = IP(src="10.9.0.9", dst="10.9.0.1") / UDP(sport=5353, dport=5353) / b"u"
    s.receive_frame(0x020000000009, A_MAC, ETH_IP4, bytes(uni), 1)
    assert second.recv() == (b"u", ("10.9.0.9", 5353)) and first.recv() is None
    second.close()
    s.receive_frame(0x020000000009, A_MAC, ETH_IP4, bytes(uni), 1)
    assert first.recv() == (b"u", ("10.9.0.9", 5353))  # the survivor takes unicast over
    first.close()
    alone = s.udp_bind(None, 5353)  # the port is free again, for anyone
    with pytest.raises(OSError):
        s.udp_bind(None, 5353, reuse=True)  # ... and owned alone by a socket without reuse
    alone.close()
    assert s.udp_sockets() == []


FRAME = st.tuples(st.sampled_from([ETH_IP4, ETH_IP6, ETH_ARP, 0x88CC]), st.binary(max_size=200))


@settings(max_examples=400, deadline=None)
@given(st.lists(FRAME, max_size=8), st.randoms(use_true_random=False))
def test_random_and_mutated_frames_are_counted_drops(
    frames: list[tuple[int, bytes]], rnd: random.Random
) -> None:
    w = Wire()
    _pair(w, "10.9.0.2", 100)
    templates = [p for _n, _m, _et, p in w.log]
    for et, junk in frames:
        w.b.receive_frame(A_MAC, B_MAC, et, junk, w.now)
        base = bytearray(rnd.choice(templates))
        for _ in range(rnd.randint(1, 4)):
            base[rnd.randrange(len(base))] = rnd.randrange(256)
        w.b.receive_frame(A_MAC, B_MAC, rnd.choice([ETH_IP4, ETH_IP6, ETH_ARP]), bytes(base), w.now)
    w.run(50)
    assert w.b.counters.get("internal_error", 0) == 0
    # The stack still works: a fresh connection carries data.
    c2, s2 = _pair(w, "10.9.0.2", 101)
    c2.send(b"still alive")
    w.run(2000)
    assert s2.recv() == b"still alive"


OPTION_SEGMENTS = st.builds(
    lambda mss, ws, sp, ts, sb: (mss, ws, sp, ts, sb),
    st.none() | st.integers(0, 0xFFFF),
    st.none() | st.integers(0, 14),
    st.booleans(),
    st.none() | st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), max_size=3),
)


@given(OPTION_SEGMENTS)
def test_fast_path_tcp_options_match_the_codec(o: tuple) -> None:  # type: ignore[type-arg]
    """The stack builds segments without the codec objects; both now share one encoder
    (``tcpwire.encode_options``, checked against scapy and Linux's layout by the codec's tests),
    so what this proves is that a TCB segment's fields reach it as the header's do: a swapped
    or dropped field (MSS for window scale, timestamps, SACK blocks) fails here."""
    from ztnode.netstack import tcp as tcb
    from ztnode.netstack.tcpwire import TcpSegmentHeader
    from ztnode.netstack.tso import tcp_options as _tcp_options

    mss, ws, sp, ts, sb = o
    header = TcpSegmentHeader(1, 2, 3, 4, 0x12, 100, 0, mss, ws, sp, tuple(sb), ts)
    try:
        want = header.options_bytes()
    except ValueError:  # more than 40 bytes: the stack falls back to the codec, which refuses
        return
    assert _tcp_options(tcb.Segment(3, 4, 0x12, 100, b"", mss, ws, sp, tuple(sb), ts)) == want


def test_a_connection_follows_its_peer_to_a_new_mac() -> None:
    """A connection reuses its next hop's MAC (for speed), but never past a change: a new ARP
    mapping for the peer's address moves the very next segment to the new MAC."""
    w = Wire()
    lst = w.b.tcp_listen(None, 80)
    c = w.a.tcp_connect("10.9.0.2", 80, w.now)
    w.run()
    s = lst.accept()
    assert s is not None and c.state is TcpState.ESTABLISHED
    c.set_nodelay(True)
    c.send(b"before")
    w.run()
    assert {m for n, m, et, _ in w.log if n == "a" and et == ETH_IP4} == {B_MAC}
    moved = B_MAC ^ 0x0000000000FF
    arp = ARP(
        op=2,
        hwsrc=":".join(f"{(moved >> s) & 0xFF:02x}" for s in range(40, -8, -8)),
        psrc="10.9.0.2",
        hwdst="00:00:00:00:00:00",
        pdst="10.9.0.1",
    )
    w.a.receive_frame(moved, A_MAC, ETH_ARP, bytes(arp), w.now)
    w.log.clear()
    c.send(b"after")
    for dmac, et, _ in w.a.frames_to_send(w.now):
        if et == ETH_IP4:
            assert dmac == moved
            break
    else:
        raise AssertionError("no segment was sent")


def _tcp_frame(c: TcpSocket, seg: Segment) -> bytes:
    """A segment from ``c``'s end, as its peer receives it (checksums by scapy)."""
    flags = "".join(
        f for bit, f in ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x10, "A")) if seg.flags & bit
    )
    pkt = IP(src=str(c.local[0]), dst=str(c.remote[0])) / TCP(
        sport=c.local[1],
        dport=c.remote[1],
        seq=seg.seq,
        ack=seg.ack,
        flags=flags,
        window=seg.window,
    )
    return bytes(pkt)


def _server_closes_first(w: Wire, port: int) -> tuple[TcpSocket, TcpSocket]:
    """A connection the server (b) closed first: b's end is left in TIME-WAIT, a's closed."""
    c, s = _pair(w, "10.9.0.2", port)
    s.close(w.now)
    w.run(10)
    assert c.recv() == b"" and c.conn.at_eof
    c.close(w.now)
    w.run(10)
    # b's wait goes on in a compact record; the connection object itself is done.
    assert s.key in w.b._time_wait and s.state is TcpState.CLOSED and c.state is TcpState.CLOSED
    return c, s


def test_a_newer_syn_reopens_a_4_tuple_in_time_wait_at_once() -> None:
    """RFC 6191: a client reusing a port whose old connection is in TIME-WAIT at the server
    connects at once (not after a SYN retransmission a second later)."""
    w = Wire()
    c, s = _server_closes_first(w, 90)
    again = w.a.tcp_connect("10.9.0.2", 90, w.now, local_port=c.local[1])
    w.run(50)  # far less than the 1 s initial RTO a refused SYN would wait
    assert again.state is TcpState.ESTABLISHED
    assert w.b.counters["tcp_time_wait_reopened"] == 1
    assert s.key not in w.b._time_wait  # the old incarnation is gone
    fresh = w.b._listeners[(False, b"", 90)].accept()
    assert fresh is not None and fresh is not s and fresh.remote == again.local
    again.send(b"ping")
    w.run(10)
    assert fresh.recv() == b"ping"


def test_an_old_syn_does_not_end_time_wait() -> None:
    """A SYN that is not provably newer (an older timestamp, or without timestamps a
    sequence number at or below RCV.NXT) leaves TIME-WAIT alone (challenge ACK path), in
    the full connection and in the stack's compact record alike."""
    w = Wire()
    _, s = _server_closes_first(w, 91)
    tw = w.b._time_wait[s.key]
    assert tw.ts_enabled
    rcv = tw.rcv_nxt
    old_ts = Segment(seq=rcv + 10, ack=0, flags=0x02, window=1000, ts=(tw.ts_recent - 1, 0))
    new_ts = Segment(seq=rcv - 10, ack=0, flags=0x02, window=1000, ts=(tw.ts_recent + 1, 0))
    assert not tw.reopened_by(old_ts)
    assert tw.reopened_by(new_ts)  # the timestamp decides when both sides use them
    conn, _ = time_wait()  # a full connection in TIME-WAIT, without timestamps
    rcv = (conn.irs + conn.rcv_nxt) & 0xFFFFFFFF
    assert not conn.reopened_by(Segment(seq=rcv, ack=0, flags=0x02, window=1000))
    assert conn.reopened_by(Segment(seq=rcv + 1, ack=0, flags=0x02, window=1000))
    assert not conn.reopened_by(Segment(seq=rcv + 1, ack=5, flags=0x12, window=1000))
    tw.ts_enabled = False
    tw.rcv_nxt = rcv
    assert not tw.reopened_by(Segment(seq=rcv, ack=0, flags=0x02, window=1000))
    assert tw.reopened_by(Segment(seq=rcv + 1, ack=0, flags=0x02, window=1000))


def test_time_wait_records_answer_fins_expire_and_are_bounded() -> None:
    """The record ACKs a retransmitted FIN, ends after 2*MSL (freeing the port), and past
    ``max_time_wait`` a closing connection skips TIME-WAIT (counted)."""
    w = Wire()
    c, s = _server_closes_first(w, 92)
    tw = w.b._time_wait[s.key]
    rcv = tw.rcv_nxt
    fin = Segment(seq=(rcv - 1) & 0xFFFFFFFF, ack=tw.snd_nxt, flags=0x11, window=1000)
    before = len(w.sent("b", ETH_IP4))
    w.b.receive_frame(A_MAC, B_MAC, ETH_IP4, _tcp_frame(c, fin), w.now)
    w.run()
    acks = [IP(p)[TCP] for p in w.sent("b", ETH_IP4)[before:] if TCP in IP(p)]
    assert acks and acks[-1].flags == "A" and acks[-1].ack == rcv
    assert w.b._ports[PROTO_TCP].get(92)  # the listener's port, still referenced
    w.run(2 * 30_000 + 1_000)
    assert s.key not in w.b._time_wait and not w.b._time_wait_order
    # A record holds its port's reference, not the port: a closed listener's port can be
    # listened on again while its connections still wait (Linux's SO_REUSEADDR servers).
    _, s1 = _server_closes_first(w, 94)
    w.b._listeners[(False, b"", 94)].close(w.now)
    assert s1.key in w.b._time_wait
    w.b.tcp_listen(None, 94)
    w.b.config.max_time_wait = 0
    c2, s2 = _pair(w, "10.9.0.2", 93)
    s2.close(w.now)
    w.run(10)
    c2.close(w.now)
    w.run(10)
    assert s2.state is TcpState.CLOSED and c2.state is TcpState.CLOSED
    assert w.b.counters["tcp_time_wait_overflow"] == 1 and s2.key not in w.b._time_wait


@pytest.mark.parametrize("v6", [False, True])
def test_the_handshake_fast_path_changes_nothing_but_speed(v6: bool) -> None:
    """SYNs to listeners and segments with any options parsed on the fast path (the codec's
    option parser, no header objects) leave exactly the frames the full path does: the same
    scenario twice, byte for byte (connect, data both ways with SACK-able loss, a refused
    connect, a close)."""

    def scenario(fast: bool) -> list[tuple[str, int, int, bytes]]:
        w = Wire()
        w.a.config.fast_handshake = w.b.config.fast_handshake = fast
        host = rfc4193(B_ADDR) if v6 else "10.9.0.2"
        c, s = _pair(w, host, 80)
        c.send(b"x" * 20000)
        w.drop_next = 2  # a loss in flight: SACK blocks on the way back
        w.run(2000)
        s.send(b"y" * 5000)
        w.run(2000)
        assert s.recv(1 << 20) == b"x" * 20000 and c.recv(1 << 20) == b"y" * 5000
        refused = w.a.tcp_connect(host, 81, w.now)
        w.run(100)
        assert refused.state is TcpState.CLOSED
        c.close(w.now)
        s.close(w.now)
        w.run(100)
        return w.log

    assert scenario(False) == scenario(True)


def _client_closes_first(w: Wire, c: TcpSocket, s: TcpSocket) -> None:
    c.close(w.now)
    w.run(10)
    s.close(w.now)
    w.run(10)
    assert c.key in w.a._time_wait and c.state is TcpState.CLOSED


def test_outgoing_ports_are_per_4_tuple_and_time_wait_is_taken_over_after_a_second() -> None:
    """Linux's port choice for a connect: a local port serves connections to different
    destinations at once, a ``bind()`` keeps its port out of the draw, and when every port is
    spoken for by live connections, a 4-tuple of our own in TIME-WAIT is taken over once a
    second has passed since its wait began (timestamps on; ``tcp_tw_reuse=1``), its ISN past
    the old window."""
    w = Wire()
    w.a.config.ephemeral_ports = (40000, 40002)
    held = w.a.reserve_tcp_port(None, 40002)  # a bound socket's port is never drawn
    lst80 = w.b.tcp_listen(None, 80)
    w.b.tcp_listen(None, 81)
    to80 = [w.a.tcp_connect("10.9.0.2", 80, w.now) for _ in range(2)]
    w.run()
    with pytest.raises(OSError) as full:
        w.a.tcp_connect("10.9.0.2", 80, w.now)
    assert full.value.errno == errno.EADDRNOTAVAIL and "10.9.0.2 port 80" in str(full.value)
    to81 = [w.a.tcp_connect("10.9.0.2", 81, w.now) for _ in range(2)]
    w.run()
    assert all(c.state is TcpState.ESTABLISHED for c in to80 + to81)
    assert {c.local[1] for c in to80} == {c.local[1] for c in to81} == {40000, 40001}
    accepted = [lst80.accept() for _ in to80]
    servers = {s.remote[1]: s for s in accepted if s is not None}
    for c in to80:
        _client_closes_first(w, c, servers[c.local[1]])
    with pytest.raises(OSError, match="no local port free"):
        w.a.tcp_connect("10.9.0.2", 80, w.now)  # the waits began less than a second ago
    w.run(1000)
    old = {c.local[1]: w.a._time_wait[c.key] for c in to80}
    again = w.a.tcp_connect("10.9.0.2", 80, w.now)
    tw = old[again.local[1]]
    assert again.key not in w.a._time_wait and w.a.counters["tcp_time_wait_reused"] == 1
    assert again.conn.snd.iss == (tw.snd_nxt + 65537) & 0xFFFFFFFF
    w.run()
    fresh = lst80.accept()
    assert again.state is TcpState.ESTABLISHED and fresh is not None
    again.send(b"ping")
    fresh.send(b"pong")
    w.run(10)
    assert fresh.recv() == b"ping" and again.recv() == b"pong"
    # Without timestamps, or with the switch off, nothing is taken over.
    other = next(t for t in old.values() if t.key in w.a._time_wait)
    other.ts_enabled = False
    w.run(1000)
    with pytest.raises(OSError, match="no local port free"):
        w.a.tcp_connect("10.9.0.2", 80, w.now)
    other.ts_enabled = True
    w.a.config.reuse_time_wait = False
    with pytest.raises(OSError, match="no local port free"):
        w.a.tcp_connect("10.9.0.2", 80, w.now)
    w.a.config.reuse_time_wait = True
    assert w.a.tcp_connect("10.9.0.2", 80, w.now).local[1] == other.key[1]
    w.a.release_tcp_port(held)
    assert w.a.tcp_connect("10.9.0.2", 80, w.now).local[1] == 40002  # free again


def test_a_listening_port_is_never_drawn_for_a_connect() -> None:
    """A port some listener of ours holds (any address, either family) stays out of the draw,
    in the random tries and in the scan alike."""
    w = Wire()
    w.a.config.ephemeral_ports = (40000, 40001)
    w.a.tcp_listen(None, 40000)
    w.b.tcp_listen(None, 80)
    first = w.a.tcp_connect("10.9.0.2", 80, w.now)
    assert first.local[1] == 40001
    with pytest.raises(OSError, match="no local port free"):
        w.a.tcp_connect("10.9.0.2", 80, w.now)


def test_a_deadline_moved_later_keeps_its_earlier_timer_which_then_fires_idle() -> None:
    """A connection's entry in the stack's timer heap is replaced only by an earlier deadline:
    deadlines that move later on every segment (the retransmission timer, a delayed ACK the
    answer cancels) keep the entry they had, not one entry per segment. Such an entry fires
    early and finds nothing due; once the exchange is over, each side sends what it really
    owes (the client's delayed ACK) and nothing else, and is left with no timer at all."""
    w = Wire()
    c, s = _pair(w, "10.9.0.2", 81)
    for i in range(20):  # twenty request/answer exchanges, virtual time standing still
        c.send(b"ping %d" % i)
        w.run()
        s.send(s.recv())
        w.run()
        assert c.recv() == b"ping %d" % i
    for sock, heap in ((c, w.a._timers), (s, w.b._timers)):
        # The handshake's retransmission timer, the established connection's shorter one, a
        # delayed ACK: at most three entries filed, the earliest the live one.
        entries = sorted(e for e in heap if e[2] is sock)
        assert len(entries) <= 3 and entries[0][0] == sock._timer_at

    def tcp_sent(side: str) -> int:
        return len([p for p in w.sent(side, ETH_IP4) if p[9] == 6])

    a_sent, b_sent = tcp_sent("a"), tcp_sent("b")
    w.run(600_000)
    assert (c._timer_at, s._timer_at) == (None, None)
    assert c.conn.get_timer() is None and s.conn.get_timer() is None
    assert tcp_sent("a") == a_sent + 1  # the client's delayed ACK of the last answer
    assert tcp_sent("b") == b_sent  # the server's entries fired early and sent nothing
    assert c.state is s.state is TcpState.ESTABLISHED
