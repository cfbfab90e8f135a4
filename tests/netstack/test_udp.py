"""UDP codec: scapy as the checksum oracle over IPv4 and IPv6, round trips, fuzzing."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet, Raw

from ztnode.errors import DecodeError
from ztnode.netstack.udp import UdpHeader

A4, B4 = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
A6, B6 = IPv6Address("fd00::1"), IPv6Address("fd00::2")
ports = st.integers(0, 0xFFFF)


def wrap(
    src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address, proto: int, seg: bytes
) -> Packet:
    """Our segment inside a scapy-built IP header, dissected again by scapy."""
    if isinstance(src, IPv4Address):
        return IP(bytes(IP(src=str(src), dst=str(dst), proto=proto) / Raw(seg)))
    return IPv6(bytes(IPv6(src=str(src), dst=str(dst), nh=proto) / Raw(seg)))


@pytest.mark.parametrize("src,dst", [(A4, B4), (A6, B6)])
def test_vs_scapy(src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address) -> None:
    ip = IP if isinstance(src, IPv4Address) else IPv6
    raw = bytes(ip(src=str(src), dst=str(dst)) / UDP(sport=5353, dport=53) / b"query")
    seg = raw[20:] if ip is IP else raw[40:]
    h, payload = UdpHeader.parse(seg + b"pad", src, dst)  # bytes beyond length ignored
    assert h == UdpHeader(5353, 53) and bytes(payload) == b"query"
    ours = UdpHeader(1, 2).encode(b"hello", src, dst)
    pkt = wrap(src, dst, 17, ours)
    assert pkt[UDP].chksum == int.from_bytes(ours[6:8], "big")
    del pkt[UDP].chksum
    assert ip(bytes(pkt))[UDP].chksum == int.from_bytes(ours[6:8], "big")
    assert UdpHeader.decode(ours) == UdpHeader(1, 2)


def test_zero_checksum_rules() -> None:
    seg = bytearray(UdpHeader(7, 9).encode(b"x", A4, B4))
    seg[6:8] = b"\0\0"
    assert UdpHeader.parse(bytes(seg), A4, B4)[0] == UdpHeader(7, 9)
    with pytest.raises(DecodeError, match="IPv6"):
        UdpHeader.parse(bytes(seg), A6, B6)
    seg[6:8] = b"\0\1"
    with pytest.raises(DecodeError, match="checksum"):
        UdpHeader.parse(bytes(seg), A4, B4)
    assert UdpHeader.parse(bytes(seg), A4, B4, verify_checksum=False)[0].dst_port == 9


def test_computed_zero_is_sent_as_ffff() -> None:
    # Find a payload whose checksum computes to 0: it must go out as 0xffff (RFC 768).
    for i in range(0x10000):
        seg = UdpHeader(0, 0).encode(i.to_bytes(2, "big"), A4, B4)
        if seg[6:8] == b"\xff\xff":
            assert UdpHeader.parse(seg, A4, B4)[0] == UdpHeader(0, 0)
            break
    else:
        pytest.fail("no payload hit the zero checksum")


def test_rejects() -> None:
    good = UdpHeader(1, 2).encode(b"abc", A4, B4)
    for bad in (good[:7], good[:4] + b"\x00\x07" + good[6:], good[:4] + b"\x00\x20" + good[6:]):
        with pytest.raises(DecodeError):
            UdpHeader.parse(bad, A4, B4)
    with pytest.raises(DecodeError):
        UdpHeader.decode(b"1234")
    with pytest.raises(ValueError):
        UdpHeader(65536, 0)
    with pytest.raises(ValueError):
        UdpHeader(1, 1).encode(b"\0" * 65530, A6, B6)


@settings(max_examples=200)
@given(ports, ports, st.binary(max_size=100), st.booleans())
def test_round_trip(sp: int, dp: int, payload: bytes, v6: bool) -> None:
    src, dst = (A6, B6) if v6 else (A4, B4)
    h = UdpHeader(sp, dp)
    hh, p = UdpHeader.parse(h.encode(payload, src, dst), src, dst)
    assert hh == h and bytes(p) == payload


@settings(max_examples=300)
@given(st.data(), st.booleans())
def test_fuzz(d: st.DataObject, v6: bool) -> None:
    src, dst = (A6, B6) if v6 else (A4, B4)
    seed = UdpHeader(1000, 2000).encode(b"payload!", src, dst)
    b = bytearray(seed[: d.draw(st.integers(0, len(seed)))])
    for _ in range(d.draw(st.integers(0, 3))):
        if b:
            b[d.draw(st.integers(0, len(b) - 1))] = d.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        UdpHeader.parse(bytes(b), src, dst)
