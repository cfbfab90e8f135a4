"""TCP header codec: scapy as the oracle for fields, options and checksums; round trips."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet, Raw

from ztnode.errors import DecodeError
from ztnode.netstack.tcpwire import (
    ACK,
    CWR,
    ECE,
    FIN,
    NS,
    PSH,
    RST,
    SYN,
    URG,
    TcpSegmentHeader,
    flags_to_str,
)

A4, B4 = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
A6, B6 = IPv6Address("fd00::1"), IPv6Address("fd00::2")
u32 = st.integers(0, 0xFFFFFFFF)
u16 = st.integers(0, 0xFFFF)


def wrap(
    src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address, proto: int, seg: bytes
) -> Packet:
    """Our segment inside a scapy-built IP header, dissected again by scapy."""
    if isinstance(src, IPv4Address):
        return IP(bytes(IP(src=str(src), dst=str(dst), proto=proto) / Raw(seg)))
    return IPv6(bytes(IPv6(src=str(src), dst=str(dst), nh=proto) / Raw(seg)))


def scapy_seg(src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address, tcp: TCP) -> bytes:
    ip = IP if isinstance(src, IPv4Address) else IPv6
    raw = bytes(ip(src=str(src), dst=str(dst)) / tcp)
    return raw[20:] if ip is IP else raw[40:]


@pytest.mark.parametrize("src,dst", [(A4, B4), (A6, B6)])
def test_decode_linux_like_syn(
    src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address
) -> None:
    tcp = TCP(
        sport=40000,
        dport=80,
        seq=0xDEADBEEF,
        flags="SEC",
        window=64240,
        options=[
            ("MSS", 1460),
            ("SAckOK", b""),
            ("Timestamp", (12345, 0)),
            ("NOP", None),
            ("WScale", 7),
        ],
    )
    seg = scapy_seg(src, dst, tcp)
    h, payload = TcpSegmentHeader.parse(seg, src, dst)
    assert h == TcpSegmentHeader(
        40000,
        80,
        0xDEADBEEF,
        0,
        SYN | ECE | CWR,
        64240,
        mss=1460,
        window_scale=7,
        sack_permitted=True,
        timestamps=(12345, 0),
    )
    assert bytes(payload) == b""
    assert h.syn and not h.has_ack and not h.fin and not h.rst
    assert flags_to_str(h.flags) == "SEC"
    # Our encoding of the same header uses the same 20 option bytes (NOP placement differs).
    ours = h.encode(b"", src, dst)
    assert len(ours) == 40
    s = TCP(ours)
    assert dict(s.options)["MSS"] == 1460 and dict(s.options)["WScale"] == 7
    assert dict(s.options)["Timestamp"] == (12345, 0)


@pytest.mark.parametrize("src,dst", [(A4, B4), (A6, B6)])
def test_checksum_vs_scapy(src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address) -> None:
    h = TcpSegmentHeader(1, 2, 3, 4, ACK | PSH | URG | NS, 5, urgent=3, sack_blocks=((10, 20),))
    ours = h.encode(b"odd-length", src, dst)
    ip = IP if isinstance(src, IPv4Address) else IPv6
    pkt = wrap(src, dst, 6, ours)
    chk = pkt[TCP].chksum
    assert chk == int.from_bytes(ours[16:18], "big")
    del pkt[TCP].chksum
    assert ip(bytes(pkt))[TCP].chksum == chk
    assert pkt[TCP].flags == "NUAP" or int(pkt[TCP].flags) == (ACK | PSH | URG | NS)
    assert dict(pkt[TCP].options)["SAck"] == (10, 20)
    hh, p = TcpSegmentHeader.parse(ours, src, dst)
    assert hh == h and bytes(p) == b"odd-length"
    bad = bytearray(ours)
    bad[-1] ^= 1
    with pytest.raises(DecodeError, match="checksum"):
        TcpSegmentHeader.parse(bytes(bad), src, dst)
    assert TcpSegmentHeader.parse(bytes(bad), src, dst, verify_checksum=False)[0] == h


def test_options_parsing_details() -> None:
    base = bytes(TCP(sport=1, dport=2, dataofs=0))[:20]

    def with_opts(opts: bytes) -> bytes:
        opts += b"\0" * (-len(opts) % 4)
        b = bytearray(base + opts)
        b[12] = ((20 + len(opts)) // 4) << 4
        return bytes(b)

    # Unknown option (kind 30, MPTCP) skipped by length; EOL stops parsing.
    h = TcpSegmentHeader.decode(with_opts(b"\x1e\x04\xaa\xbb\x02\x04\x05\xb4\x00\x03\x03\x07"))
    assert h.mss == 1460 and h.window_scale is None
    # A known option with the wrong length is ignored, like Linux.
    assert TcpSegmentHeader.decode(with_opts(b"\x02\x03\x05\x01")).mss is None
    assert TcpSegmentHeader.decode(with_opts(b"\x05\x06\x00\x00\x00\x00")).sack_blocks == ()
    for bad in (b"\x02", b"\x1e\x01", b"\x1e\x00", b"\x1e\x09\x00\x00"):
        with pytest.raises(DecodeError):
            TcpSegmentHeader.decode(with_opts(bad))
    with pytest.raises(DecodeError):
        TcpSegmentHeader.decode(base[:19])
    short = bytearray(base)
    short[12] = 4 << 4
    with pytest.raises(DecodeError):
        TcpSegmentHeader.decode(bytes(short))
    short[12] = 6 << 4
    with pytest.raises(DecodeError):
        TcpSegmentHeader.decode(bytes(short))


def test_encode_limits_and_validation() -> None:
    ok = TcpSegmentHeader(1, 2, 3, 4, ACK, 5, timestamps=(1, 2), sack_blocks=((1, 2),) * 3)
    assert ok.header_length == 60
    with pytest.raises(ValueError, match="40"):
        TcpSegmentHeader(1, 2, 3, 4, ACK, 5, timestamps=(1, 2), sack_blocks=((1, 2),) * 4).encode()
    for kw in (
        {"seq": 1 << 32},
        {"flags": 0x200},
        {"window": -1},
        {"sack_blocks": ((1, 2),) * 5},
        {"sack_blocks": ((1, 1 << 32),)},
        {"timestamps": (1 << 32, 0)},
        {"mss": 1 << 16},
        {"window_scale": 256},
    ):
        args = {"src_port": 1, "dst_port": 2, "seq": 0, "ack": 0, "flags": 0, "window": 0}
        args.update(kw)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            TcpSegmentHeader(**args)  # type: ignore[arg-type]
    assert flags_to_str(0) == "."
    assert flags_to_str(FIN | SYN | RST | PSH | ACK | URG) == "FSRPAU"
    assert "[S]" in str(TcpSegmentHeader(1, 2, 0, 0, SYN, 0))


headers = st.builds(
    TcpSegmentHeader,
    src_port=u16,
    dst_port=u16,
    seq=u32,
    ack=u32,
    flags=st.integers(0, 0x1FF),
    window=u16,
    urgent=u16,
    mss=st.none() | u16,
    window_scale=st.none() | st.integers(0, 255),
    sack_permitted=st.booleans(),
    sack_blocks=st.lists(st.tuples(u32, u32), max_size=2).map(tuple),
    timestamps=st.none() | st.tuples(u32, u32),
)


@settings(max_examples=300)
@given(headers, st.binary(max_size=50), st.booleans())
def test_round_trip_and_scapy(h: TcpSegmentHeader, payload: bytes, v6: bool) -> None:
    src, dst = (A6, B6) if v6 else (A4, B4)
    raw = h.encode(payload, src, dst)
    hh, p = TcpSegmentHeader.parse(raw, src, dst)
    assert hh == h and bytes(p) == payload
    s = TCP(raw)
    assert (s.sport, s.dport, s.seq, s.ack, s.window, s.urgptr, int(s.flags)) == (
        h.src_port,
        h.dst_port,
        h.seq,
        h.ack,
        h.window,
        h.urgent,
        h.flags,
    )
    opts = dict(s.options)
    assert opts.get("MSS") == h.mss
    assert opts.get("WScale") == h.window_scale
    assert ("SAckOK" in opts) == h.sack_permitted
    assert opts.get("Timestamp") == h.timestamps
    assert s.dataofs * 4 == h.header_length


@settings(max_examples=300)
@given(st.data())
def test_fuzz(d: st.DataObject) -> None:
    seed = TcpSegmentHeader(
        1, 2, 3, 4, SYN, 5, mss=1400, window_scale=3, sack_permitted=True, timestamps=(9, 9)
    ).encode(b"data", A4, B4)
    b = bytearray(seed[: d.draw(st.integers(0, len(seed)))])
    for _ in range(d.draw(st.integers(0, 4))):
        if b:
            b[d.draw(st.integers(0, len(b) - 1))] = d.draw(st.integers(0, 255))
    for verify in (True, False):
        with contextlib.suppress(DecodeError):
            TcpSegmentHeader.parse(bytes(b), A4, B4, verify_checksum=verify)


@settings(max_examples=200)
@given(st.binary(max_size=80))
def test_fuzz_random(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        TcpSegmentHeader.decode(data)
