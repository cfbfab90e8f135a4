"""The IPv4/UDP fast paths against their references: datagrams built by hand equal what the
header classes encode, and a datagram received by ``rx_ipv4`` (which takes the fast path when it
can) leaves a stack exactly as the codec path (``IPv4Header.parse`` then ``UdpMux.receive``)
leaves a twin: the same deliveries, senders, counters, events and ICMP errors, for valid
datagrams and for every kind of damage."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_interface
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.errors import DecodeError
from ztnode.netstack.ipoutput import ipv4_datagram
from ztnode.netstack.ipproto import PROTO_UDP
from ztnode.netstack.ipv4 import IPv4Header
from ztnode.netstack.ipv6 import IPv6Header
from ztnode.netstack.stack import IpStack
from ztnode.netstack.tso import UdpOffload
from ztnode.netstack.udp import UdpHeader
from ztnode.netstack.udpmux import udp_datagram

from .test_stack import A_ADDR, A_MAC, B_ADDR, B_MAC, Wire, make, rfc4193

_addr4 = st.binary(min_size=4, max_size=4)
_addr6 = st.binary(min_size=16, max_size=16)
_port = st.integers(0, 0xFFFF)


@settings(max_examples=300, deadline=None)
@given(_addr4, _addr4, st.integers(0, 255), st.integers(0, 255), _port, st.binary(max_size=300))
def test_ipv4_datagram_is_what_the_header_encodes(
    src: bytes, dst: bytes, proto: int, ttl: int, ident: int, payload: bytes
) -> None:
    ref = IPv4Header(IPv4Address(src), IPv4Address(dst), proto, ttl=ttl, identification=ident)
    assert ipv4_datagram(src, dst, proto, ttl, ident, payload) == ref.encode(payload)


@settings(max_examples=300, deadline=None)
@given(st.booleans(), _addr6, _addr6, _port, _port, st.binary(max_size=300))
def test_udp_datagram_is_what_the_header_encodes(
    v6: bool, src: bytes, dst: bytes, sport: int, dport: int, payload: bytes
) -> None:
    s: IPv4Address | IPv6Address
    d: IPv4Address | IPv6Address
    if v6:
        s, d = IPv6Address(src), IPv6Address(dst)
    else:
        src, dst = src[:4], dst[:4]
        s, d = IPv4Address(src), IPv4Address(dst)
    ref = UdpHeader(sport, dport).encode(payload, s, d)
    assert udp_datagram(sport, dport, payload, src, dst, v6) == ref


SENDER = "10.9.0.1"
ME = "10.9.0.2"
SENDER6 = rfc4193(A_ADDR)
ME6 = rfc4193(B_ADDR)
#: IPv6 sources the fast path names by the C library, and the ones that embed an IPv4 address,
#: which it leaves to the address class (the two write those differently).
SENDERS6 = [SENDER6, "fe80::1", "::ffff:10.9.0.1", "::10.9.0.1", "2001:db8::ffff:0:1"]


def _stack_with_sockets(
    connected: bool, v6: bool = False, sender: str = ""
) -> tuple[IpStack, list[Any]]:
    s = make(B_MAC, ME, B_ADDR, 2)
    me = ME6 if v6 else ME
    socks = [
        s.udp_bind(None, 5000, ipv6=v6),
        s.udp_bind(me, 5001, ipv6=v6),
        s.udp_bind(None, 5002, reuse=True, ipv6=v6),
    ]
    if connected:
        c = s.udp_bind(None, 5003, ipv6=v6)
        c.connect(sender or (SENDER6 if v6 else SENDER), 7000)
        socks.append(c)
    return s, socks


def _state(s: IpStack, socks: list[Any]) -> tuple[Any, ...]:
    queues = [list(u.queue) for u in socks]
    events = []
    while (e := s.next_event()) is not None:
        events.append((type(e).__name__, socks.index(e.sock) if hasattr(e, "sock") else None))
    return queues, dict(s.counters), events, s.frames_to_send(5000)


def _reference_receive(s: IpStack, payload: bytes, now: int, v6: bool = False) -> None:
    """What rx_ipv4 and rx_ipv6 did for a UDP datagram before they had a fast path."""
    try:
        if v6:
            h6, body = IPv6Header.parse(payload)
            if not s.input.accepts_v6(h6.dst):
                s._count("not_for_us")
                return
            assert h6.next_header == PROTO_UDP
            s.udp.receive(h6.src, h6.dst, body, payload, now)
            return
        hdr, body = IPv4Header.parse(payload)
        if not s.input.accepts_v4(hdr.dst):
            s._count("not_for_us")
            return
        assert not hdr.is_fragment and hdr.protocol == PROTO_UDP
        s.udp.receive(hdr.src, hdr.dst, body, payload, now)
    except DecodeError:
        s._count("malformed")


def _damaged_udp(udp: bytearray, damage: str) -> bytearray:
    if damage == "checksum":
        udp[6] ^= 0x01
    elif damage == "zero checksum":
        udp[6:8] = b"\0\0"
    elif damage == "long length":
        struct.pack_into(">H", udp, 4, len(udp) + 1)
    elif damage == "short length":
        struct.pack_into(">H", udp, 4, 7)
    elif damage == "truncated":
        udp = udp[:5]
    return udp


def _datagram6(sport: int, dport: int, data: bytes, src: str, damage: str) -> bytes:
    s6, d6 = IPv6Address(src), IPv6Address(ME6)
    udp = _damaged_udp(
        bytearray(udp_datagram(sport, dport, data, s6.packed, d6.packed, True)), damage
    )
    ip = bytearray(IPv6Header(s6, d6, PROTO_UDP).encode(bytes(udp)))
    if damage == "padded frame":
        ip += b"\0" * 7
    elif damage == "long payload length":
        struct.pack_into(">H", ip, 4, len(udp) + 1)
    return bytes(ip)


def _datagram(sport: int, dport: int, data: bytes, damage: str = "") -> bytes:
    sp, dp = IPv4Address(SENDER).packed, IPv4Address(ME).packed
    udp = _damaged_udp(bytearray(udp_datagram(sport, dport, data, sp, dp, False)), damage)
    ip = bytearray(ipv4_datagram(sp, dp, PROTO_UDP, 64, 1, bytes(udp)))
    if damage == "reserved flag":
        ip[6] |= 0x80
        struct.pack_into(">H", ip, 10, 0)
        struct.pack_into(">H", ip, 10, ~_sum(ip[:20]) & 0xFFFF)
    elif damage == "ip checksum":
        ip[10] ^= 0x01
    elif damage == "padded frame":
        ip += b"\0" * 7  # Ethernet padding past the IP total length
    return bytes(ip)


def _sum(b: bytes | bytearray) -> int:
    s = sum(struct.unpack(f">{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


_UDP_DAMAGE = ["", "checksum", "zero checksum", "long length", "short length", "truncated"]
#: What can go wrong, per family: the UDP header's, then the IP layer's.
DAMAGE = {
    4: [*_UDP_DAMAGE, "reserved flag", "ip checksum", "padded frame"],
    6: [*_UDP_DAMAGE, "padded frame", "long payload length"],
}


@pytest.mark.parametrize("family", [4, 6])
@settings(max_examples=200, deadline=None)
@given(
    st.data(),
    st.sampled_from([5000, 5001, 5002, 5003, 5999]),
    st.sampled_from([7000, 7001]),
    st.binary(max_size=64),
    st.booleans(),
)
def test_a_received_datagram_leaves_the_stack_as_the_codec_path_does(
    family: int, data: st.DataObject, dport: int, sport: int, payload: bytes, connected: bool
) -> None:
    damage = data.draw(st.sampled_from(DAMAGE[family]))
    v6 = family == 6
    sender = data.draw(st.sampled_from(SENDERS6)) if v6 else SENDER
    fast, fast_socks = _stack_with_sockets(connected, v6, sender)
    ref, ref_socks = _stack_with_sockets(connected, v6, sender)
    if v6:
        frame = _datagram6(sport, dport, payload, sender, damage)
    else:
        frame = _datagram(sport, dport, payload, damage)
    fast.receive_frame(A_MAC, B_MAC, 0x86DD if v6 else 0x0800, frame, 1000)
    _reference_receive(ref, frame, 1000, v6=v6)
    assert _state(fast, fast_socks) == _state(ref, ref_socks)


@pytest.mark.parametrize("sender", SENDERS6)
def test_the_ipv6_fast_path_names_the_sender_as_the_address_class_does(sender: str) -> None:
    s, socks = _stack_with_sockets(False, True)
    s.receive_frame(A_MAC, B_MAC, 0x86DD, _datagram6(7000, 5000, b"hi", sender, ""), 1000)
    assert socks[0].recv() == (b"hi", (str(IPv6Address(sender)), 7000))
    assert not s.counters


def test_the_fast_path_is_taken_and_names_the_sender() -> None:
    s, socks = _stack_with_sockets(False)
    s.receive_frame(A_MAC, B_MAC, 0x0800, _datagram(7000, 5000, b"hello"), 1000)
    assert socks[0].recv() == (b"hello", (SENDER, 7000))
    assert not s.counters


def test_the_reserved_flag_is_refused_on_the_tcp_fast_path_too() -> None:
    """The header's reserved bit makes the codec refuse a datagram; the fast paths (TCP's
    included) must not take such a datagram in its place."""
    s = make(B_MAC, ME, 0x6677889900, 2)
    sp, dp = IPv4Address(SENDER).packed, IPv4Address(ME).packed
    seg = bytes(20)
    ip = bytearray(ipv4_datagram(sp, dp, 6, 64, 1, seg))
    ip[6] |= 0x80
    struct.pack_into(">H", ip, 10, 0)
    struct.pack_into(">H", ip, 10, ~_sum(ip[:20]) & 0xFFFF)
    s.receive_frame(A_MAC, B_MAC, 0x0800, bytes(ip), 1000)
    assert s.counters == {"malformed": 1}


def test_sending_builds_the_same_datagram_as_the_header_classes() -> None:
    w = Wire()
    u = w.a.udp_bind(None, 7000)
    w.b.udp_bind(None, 5000)
    u.sendto(b"x" * 40, ME, 5000, w.now)
    w.run()
    sent = [p for name, _, et, p in w.log if name == "a" and et == 0x0800]
    s4, d4 = IPv4Address(SENDER), IPv4Address(ME)
    udp = UdpHeader(7000, 5000).encode(b"x" * 40, s4, d4)
    ident = int.from_bytes(sent[0][4:6], "big") if sent else 0
    hdr = IPv4Header(s4, d4, PROTO_UDP, ttl=w.a.config.ttl, identification=ident)
    assert sent == [hdr.encode(udp)]


def test_fields_out_of_range_are_still_refused_by_the_header_class() -> None:
    """The hand-built datagram is for fields in range; others reach the header class, which
    refuses them as it always did (and a datagram too large for the MTU is fragmented)."""
    w = Wire()
    with pytest.raises(ValueError, match="bytes"):
        w.a.output.send_ip(IPv4Address(ME), PROTO_UDP, b"x", w.now, hop_limit=300)
    w.a.output.send_ip(IPv4Address(ME), PROTO_UDP, bytes(4000), w.now)
    w.run()
    sent = [p for name, _, et, p in w.log if name == "a" and et == 0x0800]
    assert len(sent) > 1 and all(IPv4Header.parse(p)[0].is_fragment for p in sent)


def _sent(w: Wire, et: int) -> list[bytes]:
    return [p for name, _, e, p in w.log if name == "a" and e == et]


@pytest.mark.parametrize("offload", [False, True], ids=["built", "checksum-offload"])
@pytest.mark.parametrize("v6", [False, True])
def test_a_remembered_way_sends_what_the_full_path_sends(v6: bool, offload: bool) -> None:
    """A socket sending again to the same host builds the datagram from its remembered way;
    a twin whose memory is wiped before every send takes the full path each time: the two
    emit the same frames (addresses, IP ids, checksums, hop limit), whatever the sizes, up to
    one that must be fragmented. With checksum offload the remembered way queues
    :class:`UdpOffload` datagrams, whose reference build (the wire here) is the same bytes."""
    twins = [Wire(), Wire()]
    twins[0].a.segmentation_offload = offload
    me, et = (ME6, 0x86DD) if v6 else (ME, 0x0800)
    sizes = [0, 1, 40, 1000, 2800 - (48 if v6 else 28), 2800, 5, 70]
    for forget, w in zip((False, True), twins, strict=True):
        u = w.a.udp_bind(None, 7000, ipv6=v6)
        w.b.udp_bind(None, 5000, ipv6=v6)
        for i, n in enumerate(sizes):
            if forget:
                u.route = None
            u.sendto(bytes([i]) * n, me, 5000, w.now)
            w.run()
        if not forget:
            assert u.route is not None  # the memory was there to use
    fast, full = (_sent(w, et) for w in twins)
    assert fast == full and len(fast) > len(sizes)  # the 2800-byte one went as fragments
    # Offload took every datagram of the remembered way: all but the fragmented one and those
    # sent before the way was known (IPv4: the first, and the second, sent while ARP was
    # answering the first; IPv6 on ZeroTier needs no neighbor discovery); without it, none.
    way_known = len(sizes) - (2 if v6 else 3)
    sent_offloaded = [p for side, p in twins[0].offloaded if side == "a"]
    assert all(isinstance(p, UdpOffload) for p in sent_offloaded)
    assert len(sent_offloaded) == (way_known if offload else 0)
    got = [d for d, _ in twins[0].b.udp_sockets()[0].queue]
    assert got == [bytes([i]) * n for i, n in enumerate(sizes)]


def test_a_remembered_way_is_asked_again_when_anything_it_holds_may_have_changed() -> None:
    w = Wire()
    u = w.a.udp_bind(None, 7000)
    w.b.udp_bind(None, 5000)
    u.sendto(b"a", ME, 5000, w.now)
    w.run()
    assert u.route is None  # it waited for ARP: nothing to remember yet
    u.sendto(b"a", ME, 5000, w.now)
    first = u.route
    assert first is not None and first[3] == IPv4Address(SENDER).packed
    # New addresses: the source follows them.
    w.a.set_addresses([ip_interface("10.9.0.7/24"), ip_interface(f"{rfc4193(A_ADDR)}/88")])
    u.sendto(b"b", ME, 5000, w.now)
    assert u.route is not None and u.route[3] == IPv4Address("10.9.0.7").packed
    # A lower MTU: the datagram that no longer fits is fragmented.
    w.a.set_mtu(1280)
    u.sendto(bytes(2000), ME, 5000, w.now)
    w.run()
    assert IPv4Header.parse(_sent(w, 0x0800)[-1])[0].is_fragment
    # Past a second, the neighbor cache is asked again (here its entry has expired: the
    # datagram waits for a new ARP answer, as the full path would make it).
    w.a.arp._entries.clear()
    w.now += 1001
    arps = len(_sent(w, 0x0806))
    u.sendto(b"c", ME, 5000, w.now)
    w.run()
    assert len(_sent(w, 0x0806)) == arps + 1
    assert [d for d, _ in w.b.udp_sockets()[0].queue][-1] == b"c"


def test_the_offload_template_follows_a_new_source_address() -> None:
    """The header template kept on the socket is made once per way (checked in the compiled
    build too, where the way's tuple is not one object from send to send): new addresses
    make a new way, and the next datagram leaves from the new source."""
    w = Wire()
    w.a.segmentation_offload = True
    u = w.a.udp_bind(None, 7000)
    w.b.udp_bind(None, 5000)
    for data in (b"a", b"b", b"c"):  # the first waits for ARP, the second finds the way
        u.sendto(data, ME, 5000, w.now)
        w.run()
    assert u.head is not None and isinstance(w.offloaded[-1][1], UdpOffload)
    kept = u.head
    for _ in range(3):  # the same way: the template is made once, not per datagram
        u.sendto(b"again", ME, 5000, w.now)
        w.run()
        assert u.head is kept
    w.a.set_addresses([ip_interface("10.9.0.7/24"), ip_interface(f"{rfc4193(A_ADDR)}/88")])
    for data in (b"d", b"e"):  # the full path finds the new way, then offload takes it
        u.sendto(data, ME, 5000, w.now)
        w.run()
    last = _sent(w, 0x0800)[-1]
    assert last[12:16] == IPv4Address("10.9.0.7").packed and last.endswith(b"e")
    assert isinstance(w.offloaded[-1][1], UdpOffload)
