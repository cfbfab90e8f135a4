"""IPv4 header, fragmentation and reassembly; scapy as the oracle."""

from __future__ import annotations

import contextlib
import random
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP, IPOption_RR, IPOption_Security, defragment
from scapy.layers.inet import fragment as scapy_fragment

from ztnode.errors import DecodeError
from ztnode.netstack.ipv4 import (
    PROTO_UDP,
    IPv4Header,
    IPv4Reassembler,
    fragment,
    iter_options,
)

A = IPv4Address("10.147.17.1")
B = IPv4Address("10.147.17.2")

ipv4s = st.integers(0, 0xFFFFFFFF).map(IPv4Address)
headers = st.builds(
    IPv4Header,
    src=ipv4s,
    dst=ipv4s,
    protocol=st.integers(0, 255),
    ttl=st.integers(0, 255),
    tos=st.integers(0, 255),
    identification=st.integers(0, 0xFFFF),
    dont_fragment=st.booleans(),
    more_fragments=st.booleans(),
    fragment_offset=st.integers(0, 0x1FFF).map(lambda x: x * 8),
    options=st.sampled_from(
        [b"", b"\x01\x01\x01\x00", bytes(IPOption_RR(routers=["1.2.3.4"])) + b"\0"]
    ),
)


def test_decode_scapy_packet() -> None:
    pkt = IP(src=str(A), dst=str(B), ttl=17, tos=0xB8, id=4242, flags="DF") / UDP() / b"hi"
    raw = bytes(pkt)
    h, payload = IPv4Header.parse(raw + b"\0" * 6)  # trailing Ethernet padding ignored
    assert h == IPv4Header(A, B, PROTO_UDP, 17, 0xB8, 4242, dont_fragment=True)
    assert bytes(payload) == raw[20:]
    assert h.dscp == 0xB8 >> 2 and h.ecn == 0 and not h.is_fragment and h.header_length == 20


def test_encode_dissected_by_scapy() -> None:
    opts = bytes(IPOption_RR(routers=["9.9.9.9"]))
    opts += b"\0" * (-len(opts) % 4)
    h = IPv4Header(A, B, 6, 3, 0x10, 0xBEEF, False, True, 1480, opts)
    raw = h.encode(b"x" * 16)
    s = IP(raw)
    assert (s.src, s.dst, s.proto, s.ttl, s.tos, s.id) == (str(A), str(B), 6, 3, 0x10, 0xBEEF)
    assert s.flags == "MF" and s.frag == 185 and s.ihl == 5 + len(opts) // 4
    assert s.len == len(raw)
    chk = s.chksum
    del s.chksum
    assert IP(bytes(s)).chksum == chk  # scapy recomputes the same checksum


@settings(max_examples=200)
@given(headers, st.binary(max_size=64))
def test_round_trip(h: IPv4Header, payload: bytes) -> None:
    raw = h.encode(payload)
    hh, p = IPv4Header.parse(raw)
    assert hh == h and bytes(p) == payload
    assert IP(raw).chksum == int.from_bytes(raw[10:12], "big")


def test_rejects() -> None:
    good = IPv4Header(A, B, 17).encode(b"abcd")
    bad_ck = good[:10] + b"\0\0" + good[12:]
    cases = [
        good[:19],
        b"\x65" + good[1:],  # version 6
        b"\x44" + good[1:],  # IHL 4
        good[:2] + b"\x00\x10" + good[4:],  # total < IHL
        good[:2] + b"\x00\x30" + good[4:],  # total > data
        bad_ck,
        b"\x46" + good[1:] + b"\0\0\0\0",  # IHL 6 but options in the payload with bad cksum
    ]
    for c in cases:
        with pytest.raises(DecodeError):
            IPv4Header.parse(c)
    assert IPv4Header.decode(bad_ck, verify_checksum=False).protocol == 17
    evil = bytearray(IPv4Header(A, B, 17).encode())
    evil[6] |= 0x80
    evil[10:12] = b"\0\0"
    from ztnode.netstack.checksum import internet_checksum

    evil[10:12] = internet_checksum(evil).to_bytes(2, "big")
    with pytest.raises(DecodeError, match="reserved"):
        IPv4Header.parse(bytes(evil))
    for kw in ({"ttl": 256}, {"identification": -1}, {"fragment_offset": 3}, {"options": b"\1"}):
        with pytest.raises(ValueError):
            IPv4Header(A, B, 6, **kw)
    with pytest.raises(ValueError):
        IPv4Header(A, B, 6).encode(b"\0" * 65516)


def test_options() -> None:
    assert iter_options(b"\x01\x07\x07\x04\x00\x00\x00\x00\x00") == [
        (1, b"\x01"),
        (7, b"\x07\x07\x04\x00\x00\x00\x00"),
    ]
    assert iter_options(b"\x00\x07") == []
    for bad in (b"\x07", b"\x07\x01", b"\x07\x09\x00"):
        with pytest.raises(DecodeError):
            iter_options(bad)


@settings(max_examples=300)
@given(st.data())
def test_fuzz(d: st.DataObject) -> None:
    seed = IPv4Header(A, B, 17, options=b"\x01\x01\x01\x00", more_fragments=True).encode(b"pp")
    b = bytearray(seed[: d.draw(st.integers(0, len(seed)))])
    for _ in range(d.draw(st.integers(0, 4))):
        if b:
            b[d.draw(st.integers(0, len(b) - 1))] = d.draw(st.integers(0, 255))
    for verify in (True, False):
        with contextlib.suppress(DecodeError):
            IPv4Header.parse(bytes(b), verify_checksum=verify)


# --- fragmentation ----------------------------------------------------------------------


def test_fragment_matches_scapy_defragment() -> None:
    payload = bytes(range(256)) * 12
    h = IPv4Header(A, B, PROTO_UDP, identification=77)
    frags = fragment(h, payload, 576)
    assert len(frags) > 1
    assert all(len(f) <= 576 for f in frags)
    pkts = [IP(f) for f in frags]
    assert all(p.id == 77 for p in pkts)
    assert [p.flags == "MF" for p in pkts] == [True] * (len(pkts) - 1) + [False]
    whole = defragment(pkts)  # type: ignore[no-untyped-call]
    assert len(whole) == 1
    assert bytes(whole[0].payload) == payload


def test_fragment_option_copying() -> None:
    sec = bytes(IPOption_Security())  # copied flag set
    rr = bytes(IPOption_RR(routers=["1.1.1.1"]))  # not copied
    opts = sec + rr
    opts += b"\0" * (-len(opts) % 4)
    h = IPv4Header(A, B, 17, options=opts)
    frags = fragment(h, b"z" * 300, 128)
    first, second = IPv4Header.decode(frags[0]), IPv4Header.decode(frags[1])
    assert first.options == opts
    assert [t for t, _ in iter_options(second.options)] == [sec[0]]


def test_fragment_errors_and_refragment() -> None:
    with pytest.raises(ValueError, match="DF"):
        fragment(IPv4Header(A, B, 17, dont_fragment=True), b"x" * 100, 68)
    with pytest.raises(ValueError, match="MTU"):
        fragment(IPv4Header(A, B, 17), b"x" * 100, 27)
    assert fragment(IPv4Header(A, B, 17), b"x" * 10, 1500) == [
        IPv4Header(A, B, 17).encode(b"x" * 10)
    ]
    # A fragment fragmented again keeps its offset and its MF flag.
    mid = IPv4Header(A, B, 17, identification=5, more_fragments=True, fragment_offset=800)
    parts = [IPv4Header.parse(f) for f in fragment(mid, b"y" * 200, 100)]
    assert parts[0][0].fragment_offset == 800
    assert all(p[0].more_fragments for p in parts)


def test_scapy_fragments_reassembled() -> None:
    payload = bytes(random.Random(1).randbytes(3000))
    pkt = IP(src=str(A), dst=str(B), id=999, proto=17) / payload
    frags = [bytes(f) for f in scapy_fragment(pkt, fragsize=400)]  # type: ignore[no-untyped-call]
    random.Random(2).shuffle(frags)
    r = IPv4Reassembler()
    results = [r.push(*IPv4Header.parse(f), now=0) for f in frags]
    done = [x for x in results if x is not None]
    assert len(done) == 1 and results[-1] is not None
    h, data = done[0]
    assert data == payload and h.identification == 999 and not h.is_fragment
    assert len(r) == 0 and r.engine.completed == 1


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=4000), st.integers(68, 1500), st.randoms())
def test_fragment_reassemble_any_order(payload: bytes, mtu: int, rnd: random.Random) -> None:
    h = IPv4Header(A, B, 17, identification=1)
    frags = fragment(h, payload, mtu)
    frags += [rnd.choice(frags) for _ in range(len(frags) // 3)]  # duplicates
    rnd.shuffle(frags)
    r = IPv4Reassembler()
    out = [x for f in frags if (x := r.push(*IPv4Header.parse(f), now=0)) is not None]
    assert len(out) >= 1
    assert out[0] == (h, payload)


def test_reassembler_passthrough_and_bad() -> None:
    r = IPv4Reassembler()
    h = IPv4Header(A, B, 17)
    assert r.push(h, b"abc", 0) == (h, b"abc")
    with pytest.raises(DecodeError):
        r.push(IPv4Header(A, B, 17, more_fragments=True), b"abc", 0)  # not a multiple of 8
    with pytest.raises(DecodeError):
        r.push(IPv4Header(A, B, 17, fragment_offset=65528), b"x" * 16, 0)
    assert r.expire(0) == 0
