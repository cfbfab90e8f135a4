"""IPv6 header, extension headers, fragmentation and reassembly; scapy as the oracle."""

from __future__ import annotations

import contextlib
import random
from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    defragment6,
    fragment6,
)

from ztnode.errors import DecodeError
from ztnode.netstack.ipv6 import (
    MAX_EXTENSION_HEADERS,
    NH_DESTINATION_OPTIONS,
    NH_FRAGMENT,
    NH_HOP_BY_HOP,
    NH_ROUTING,
    NH_UDP,
    FragmentHeader,
    IPv6Header,
    IPv6Reassembler,
    fragment,
    walk_extension_headers,
)

A = IPv6Address("fd80:56c2:e21c:0:199:93aa:bb01:2")
B = IPv6Address("fd80:56c2:e21c:0:199:93cc:dd02:3")
ipv6s = st.integers(0, (1 << 128) - 1).map(IPv6Address)
headers = st.builds(
    IPv6Header,
    src=ipv6s,
    dst=ipv6s,
    next_header=st.integers(0, 255),
    hop_limit=st.integers(0, 255),
    traffic_class=st.integers(0, 255),
    flow_label=st.integers(0, 0xFFFFF),
)


def test_vs_scapy() -> None:
    pkt = IPv6(src=str(A), dst=str(B), hlim=7, tc=0x2E, fl=0xABCDE) / UDP(sport=1, dport=2) / b"q"
    raw = bytes(pkt)
    h, payload = IPv6Header.parse(raw + b"pad")
    assert h == IPv6Header(A, B, NH_UDP, 7, 0x2E, 0xABCDE)
    assert bytes(payload) == raw[40:]
    s = IPv6(h.encode(b"abc"))
    assert (s.src, s.dst, s.nh, s.hlim, s.tc, s.fl, s.plen) == (
        str(A),
        str(B),
        17,
        7,
        0x2E,
        0xABCDE,
        3,
    )


@settings(max_examples=200)
@given(headers, st.binary(max_size=64))
def test_round_trip(h: IPv6Header, payload: bytes) -> None:
    hh, p = IPv6Header.parse(h.encode(payload))
    assert hh == h and bytes(p) == payload


def test_rejects() -> None:
    good = IPv6Header(A, B, 17).encode(b"abcd")
    for bad in (good[:39], b"\x40" + good[1:], good[:4] + b"\x00\x05" + good[6:]):
        with pytest.raises(DecodeError):
            IPv6Header.parse(bad)
    with pytest.raises(ValueError):
        IPv6Header(A, B, 256)
    with pytest.raises(ValueError):
        IPv6Header(A, B, 6, flow_label=1 << 20)
    with pytest.raises(ValueError):
        IPv6Header(A, B, 6).encode(b"\0" * 65536)


def test_extension_chain_vs_scapy() -> None:
    pkt = (
        IPv6(src=str(A), dst=str(B))
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting(addresses=["fd00::9"])
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrFragment(id=0x1234, m=0, offset=0)
        / UDP(sport=5, dport=6)
        / b"data"
    )
    h, payload = IPv6Header.parse(bytes(pkt))
    chain = walk_extension_headers(h.next_header, payload)
    assert [t for t, _ in chain.headers] == [
        NH_HOP_BY_HOP,
        NH_ROUTING,
        NH_DESTINATION_OPTIONS,
        NH_FRAGMENT,
    ]
    assert chain.upper_protocol == NH_UDP
    assert chain.fragment == FragmentHeader(NH_UDP, 0, False, 0x1234)
    assert chain.fragment is not None and chain.fragment.is_atomic
    assert bytes(payload[chain.upper_offset :]) == bytes(pkt)[-12:]  # UDP header + data
    assert chain.fragment_offset == chain.upper_offset


def test_extension_chain_errors() -> None:
    hbh = bytes(IPv6ExtHdrHopByHop(nh=0))  # a second hop-by-hop after the first
    with pytest.raises(DecodeError, match="hop-by-hop"):
        walk_extension_headers(NH_HOP_BY_HOP, hbh + hbh)
    with pytest.raises(DecodeError):
        walk_extension_headers(NH_ROUTING, b"\x11")
    with pytest.raises(DecodeError):
        walk_extension_headers(NH_ROUTING, b"\x11\x01" + b"\0" * 6)  # claims 16 bytes
    frag = FragmentHeader(NH_FRAGMENT, 0, True, 1).encode()
    with pytest.raises(DecodeError, match="two"):
        walk_extension_headers(NH_FRAGMENT, frag + frag)
    dst = bytes(IPv6ExtHdrDestOpt(nh=NH_DESTINATION_OPTIONS))
    with pytest.raises(DecodeError, match="more than"):
        walk_extension_headers(NH_DESTINATION_OPTIONS, dst * (MAX_EXTENSION_HEADERS + 2))
    # A non-first fragment stops the walk right after the fragment header.
    later = FragmentHeader(NH_ROUTING, 8, True, 1).encode() + b"\xff" * 8
    chain = walk_extension_headers(NH_FRAGMENT, later)
    assert chain.upper_protocol == NH_ROUTING and chain.upper_offset == 8


@settings(max_examples=300)
@given(st.integers(0, 255), st.binary(max_size=80))
def test_walk_fuzz(nh: int, data: bytes) -> None:
    try:
        c = walk_extension_headers(nh, data)
    except DecodeError:
        return
    assert 0 <= c.upper_offset <= len(data)


@settings(max_examples=300)
@given(st.data())
def test_parse_fuzz(d: st.DataObject) -> None:
    seed = IPv6Header(A, B, NH_FRAGMENT).encode(FragmentHeader(17, 8, True, 9).encode() + b"x" * 8)
    b = bytearray(seed[: d.draw(st.integers(0, len(seed)))])
    for _ in range(d.draw(st.integers(0, 4))):
        if b:
            b[d.draw(st.integers(0, len(b) - 1))] = d.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        h, p = IPv6Header.parse(bytes(b))
        walk_extension_headers(h.next_header, p)


@given(
    st.integers(0, 255),
    st.integers(0, 0x1FFF).map(lambda x: x * 8),
    st.booleans(),
    st.integers(0, 0xFFFFFFFF),
)
def test_fragment_header_round_trip_and_scapy(nh: int, off: int, m: bool, ident: int) -> None:
    f = FragmentHeader(nh, off, m, ident)
    raw = f.encode()
    assert FragmentHeader.decode(raw) == f
    s = IPv6ExtHdrFragment(raw)
    assert (s.nh, s.offset * 8, s.m, s.id) == (nh, off, int(m), ident)


def test_fragment_vs_scapy_defragment() -> None:
    payload = bytes(UDP(sport=1, dport=2) / random.Random(3).randbytes(3000))
    h = IPv6Header(A, B, NH_UDP)
    frags = fragment(h, payload, 1280, 0xCAFE)
    assert len(frags) == 3 and all(len(f) <= 1280 for f in frags)
    whole = defragment6([IPv6(f) for f in frags])  # type: ignore[no-untyped-call]
    assert bytes(whole.payload) == payload
    with pytest.raises(ValueError):
        fragment(h, payload, 1000, 1)
    assert fragment(h, b"small", 1280, 1) == [h.encode(b"small")]


def test_scapy_fragments_reassembled() -> None:
    pkt = IPv6(src=str(A), dst=str(B)) / IPv6ExtHdrFragment(id=77) / UDP() / (b"u" * 3000)
    frags = [bytes(f) for f in fragment6(pkt, 1280)]  # type: ignore[no-untyped-call]
    random.Random(4).shuffle(frags)
    r = IPv6Reassembler()
    out = []
    for f in frags:
        h, p = IPv6Header.parse(f)
        c = walk_extension_headers(h.next_header, p)
        assert c.fragment is not None
        res = r.push(h, c.fragment, p[c.fragment_offset :], now=0)
        if res is not None:
            out.append(res)
    assert len(out) == 1
    hh, nh, data = out[0]
    assert nh == NH_UDP and len(data) == 3008 and data[8:] == b"u" * 3000
    assert hh.src == A and len(r) == 0


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1461, max_size=6000), st.integers(1280, 1500), st.randoms())
def test_round_trip_any_order(payload: bytes, mtu: int, rnd: random.Random) -> None:
    h = IPv6Header(A, B, NH_UDP)
    frags = fragment(h, payload, mtu, 42)
    frags += [rnd.choice(frags)]
    rnd.shuffle(frags)
    r = IPv6Reassembler()
    got = []
    for f in frags:
        hh, p = IPv6Header.parse(f)
        c = walk_extension_headers(hh.next_header, p)
        assert c.fragment is not None
        res = r.push(hh, c.fragment, p[c.fragment_offset :], 0)
        if res is not None:
            got.append(res)
    assert got[0] == (IPv6Header(A, B, NH_FRAGMENT), NH_UDP, payload)


def test_atomic_fragment_and_overlap() -> None:
    r = IPv6Reassembler(timeout_ms=100)
    h = IPv6Header(A, B, NH_FRAGMENT)
    assert r.push(h, FragmentHeader(17, 0, False, 5), b"whole", 0) == (h, 17, b"whole")
    assert r.push(h, FragmentHeader(17, 0, True, 6), b"a" * 16, 0) is None
    assert r.push(h, FragmentHeader(17, 8, False, 6), b"b" * 16, 0) is None  # overlap
    assert r.push(h, FragmentHeader(17, 16, False, 6), b"c" * 8, 50) is None  # poisoned
    assert r.engine.overlaps == 1 and r.engine.dropped == 1
    assert r.expire(100) == 1 and len(r) == 0
