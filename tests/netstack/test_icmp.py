"""ICMPv4, ICMPv6 and NDP codecs against scapy; round trips and fuzzing."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP, IPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6PacketTooBig,
    ICMPv6TimeExceeded,
    IPv6,
)
from scapy.packet import Packet, Raw
from scapy.utils import checksum as scapy_checksum

from ztnode.errors import DecodeError
from ztnode.netstack.icmp import (
    ICMP4_CODE_FRAGMENTATION_NEEDED,
    ICMP4_CODE_PORT_UNREACHABLE,
    ICMP6_CODE_PORT_UNREACHABLE,
    ICMP6_MAX_QUOTE,
    NDP_OPT_PREFIX_INFO,
    Icmp4DestinationUnreachable,
    Icmp4Echo,
    Icmp4Other,
    Icmp4TimeExceeded,
    Icmp6DestinationUnreachable,
    Icmp6Echo,
    Icmp6Other,
    Icmp6PacketTooBig,
    Icmp6TimeExceeded,
    NeighborAdvertisement,
    NeighborSolicitation,
    RouterAdvertisement,
    RouterSolicitation,
    decode_icmp4,
    decode_icmp6,
    quote_ipv4,
    quote_ipv6,
)
from ztnode.netstack.multicast import solicited_node_address

A4, B4 = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
A6 = IPv6Address("fe80::1")
B6 = IPv6Address("fd00::2")
MAC = 0x02AABBCCDDEE


def six(pkt: Packet, src: IPv6Address = A6, dst: IPv6Address = B6) -> bytes:
    """The ICMPv6 bytes of ``pkt`` built by scapy inside an IPv6 header (so checksummed)."""
    return bytes(IPv6(src=str(src), dst=str(dst)) / pkt)[40:]


def dissect6(msg: bytes, src: IPv6Address = A6, dst: IPv6Address = B6) -> Packet:
    return IPv6(bytes(IPv6(src=str(src), dst=str(dst), nh=58) / Raw(msg)))


def scapy_ok6(msg: bytes, src: IPv6Address = A6, dst: IPv6Address = B6) -> None:
    """scapy recomputes the same checksum as ours."""
    p = dissect6(msg, src, dst)
    layer = p[IPv6].payload
    chk = layer.cksum
    del layer.cksum
    assert IPv6(bytes(p))[IPv6].payload.cksum == chk == int.from_bytes(msg[2:4], "big")


# --- ICMPv4 -----------------------------------------------------------------------------


def test_icmp4_echo_vs_scapy() -> None:
    raw = bytes(ICMP(type=8, id=0x1234, seq=7) / b"ping!")
    m = decode_icmp4(raw)
    assert m == Icmp4Echo(0x1234, 7, b"ping!")
    assert isinstance(m, Icmp4Echo)
    rep = m.make_reply().encode()
    s = ICMP(rep)
    assert (s.type, s.id, s.seq, bytes(s.payload)) == (0, 0x1234, 7, b"ping!")
    del s.chksum
    assert ICMP(bytes(s)).chksum == int.from_bytes(rep[2:4], "big")


def test_icmp4_errors_vs_scapy() -> None:
    orig = bytes(IP(src=str(A4), dst=str(B4)) / UDP(sport=1, dport=2) / (b"x" * 1000))
    q = quote_ipv4(orig)
    assert len(q) == 548 and q == orig[:548]
    m = Icmp4DestinationUnreachable(ICMP4_CODE_FRAGMENTATION_NEEDED, q[:28], 1400)
    s = ICMP(m.encode())
    assert (s.type, s.code, s.nexthopmtu) == (3, 4, 1400)
    assert isinstance(s.payload, IPerror) and s.payload.dst == str(B4)
    assert decode_icmp4(m.encode()) == m
    port = Icmp4DestinationUnreachable(ICMP4_CODE_PORT_UNREACHABLE, q[:28], 1400)
    assert decode_icmp4(port.encode()) == Icmp4DestinationUnreachable(3, q[:28], 0)
    raw = bytes(ICMP(type=11, code=1) / IPerror(orig[:28]))
    assert decode_icmp4(raw) == Icmp4TimeExceeded(1, orig[:28])
    te = Icmp4TimeExceeded(0, q)
    assert ICMP(te.encode()).type == 11 and decode_icmp4(te.encode()) == te
    ts = bytes(ICMP(type=13, id=1, seq=2) / (b"\0" * 12))
    other = decode_icmp4(ts)
    assert isinstance(other, Icmp4Other) and other.type == 13
    assert other.encode() == ts


def test_icmp4_rejects() -> None:
    good = Icmp4Echo(1, 2, b"abc").encode()
    with pytest.raises(DecodeError, match="checksum"):
        decode_icmp4(good[:-1] + b"d")
    assert decode_icmp4(good[:-1] + b"d", verify_checksum=False) == Icmp4Echo(1, 2, b"abd")
    with pytest.raises(DecodeError):
        decode_icmp4(good[:7])
    with pytest.raises(DecodeError, match="code"):
        decode_icmp4(bytes(ICMP(type=8, code=1)))


@settings(max_examples=200)
@given(
    st.one_of(
        st.builds(
            Icmp4Echo,
            st.integers(0, 0xFFFF),
            st.integers(0, 0xFFFF),
            st.binary(max_size=40),
            st.booleans(),
        ),
        st.builds(
            Icmp4DestinationUnreachable,
            st.integers(0, 3) | st.integers(5, 15),
            st.binary(max_size=40),
        ),
        st.builds(
            Icmp4DestinationUnreachable, st.just(4), st.binary(max_size=40), st.integers(0, 0xFFFF)
        ),
        st.builds(Icmp4TimeExceeded, st.integers(0, 255), st.binary(max_size=40)),
        st.builds(
            Icmp4Other,
            st.sampled_from([4, 5, 12, 13, 14, 42]),
            st.integers(0, 255),
            st.integers(0, 0xFFFFFFFF),
            st.binary(max_size=40),
        ),
    )
)
def test_icmp4_round_trip(m: object) -> None:
    enc = m.encode()  # type: ignore[attr-defined]
    assert decode_icmp4(enc) == m
    assert scapy_checksum(enc) == 0  # scapy's RFC 1071 over the whole message


# --- ICMPv6 -----------------------------------------------------------------------------


def test_icmp6_echo_vs_scapy() -> None:
    m = decode_icmp6(six(ICMPv6EchoRequest(id=9, seq=10, data=b"hello")), A6, B6)
    assert m == Icmp6Echo(9, 10, b"hello")
    assert isinstance(m, Icmp6Echo)
    rep = m.make_reply().encode(B6, A6)
    p = dissect6(rep, B6, A6)
    assert isinstance(p[IPv6].payload, ICMPv6EchoReply) and p[ICMPv6EchoReply].data == b"hello"
    scapy_ok6(rep, B6, A6)
    with pytest.raises(DecodeError, match="checksum"):
        decode_icmp6(rep, B6, IPv6Address("fd00::3"))  # the pseudo-header covers addresses


def test_icmp6_errors_vs_scapy() -> None:
    orig = bytes(IPv6(src=str(B6), dst="fd00::99") / UDP() / (b"y" * 2000))
    q = quote_ipv6(orig)
    assert len(q) == ICMP6_MAX_QUOTE
    for m in (
        Icmp6DestinationUnreachable(ICMP6_CODE_PORT_UNREACHABLE, q),
        Icmp6PacketTooBig(1280, q),
        Icmp6TimeExceeded(1, q),
    ):
        enc = m.encode(A6, B6)
        assert len(enc) + 40 <= 1280
        assert decode_icmp6(enc, A6, B6) == m
        scapy_ok6(enc)
    assert dissect6(Icmp6PacketTooBig(1400, q).encode(A6, B6))[ICMPv6PacketTooBig].mtu == 1400
    assert decode_icmp6(six(ICMPv6DestUnreach(code=3) / Raw(q[:48])), A6, B6) == (
        Icmp6DestinationUnreachable(3, q[:48])
    )
    assert decode_icmp6(six(ICMPv6TimeExceeded(code=0) / Raw(q[:48])), A6, B6) == (
        Icmp6TimeExceeded(0, q[:48])
    )
    pp = decode_icmp6(Icmp6Other(4, 1, 40, q[:48]).encode(A6, B6), A6, B6)
    assert pp == Icmp6Other(4, 1, 40, q[:48])


def test_ndp_ns_na_vs_scapy() -> None:
    target = IPv6Address("fd00::1234:5678")
    sn = solicited_node_address(target)
    raw = six(
        ICMPv6ND_NS(tgt=str(target)) / ICMPv6NDOptSrcLLAddr(lladdr="02:aa:bb:cc:dd:ee"), A6, sn
    )
    ns = decode_icmp6(raw, A6, sn)
    assert ns == NeighborSolicitation(target, MAC)
    na = NeighborAdvertisement(target, 0x020000000042, router=False, solicited=True, override=True)
    enc = na.encode(target, A6)
    p = dissect6(enc, target, A6)
    assert p[ICMPv6ND_NA].tgt == str(target)
    assert (p[ICMPv6ND_NA].R, p[ICMPv6ND_NA].S, p[ICMPv6ND_NA].O) == (0, 1, 1)
    assert p[ICMPv6NDOptDstLLAddr].lladdr == "02:00:00:00:00:42"
    scapy_ok6(enc, target, A6)
    assert decode_icmp6(enc, target, A6) == na
    raw_na = six(ICMPv6ND_NA(tgt=str(target), R=1, S=0, O=0), target, A6)
    assert decode_icmp6(raw_na, target, A6) == NeighborAdvertisement(target, None, True)
    enc_ns = NeighborSolicitation(target, MAC).encode(A6, sn)
    assert dissect6(enc_ns, A6, sn)[ICMPv6NDOptSrcLLAddr].lladdr == "02:aa:bb:cc:dd:ee"
    scapy_ok6(enc_ns, A6, sn)


def test_ndp_router_messages_vs_scapy() -> None:
    rs = decode_icmp6(six(ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr="02:aa:bb:cc:dd:ee")), A6, B6)
    assert rs == RouterSolicitation(MAC)
    assert decode_icmp6(RouterSolicitation().encode(A6, B6), A6, B6) == RouterSolicitation()
    raw = six(
        ICMPv6ND_RA(chlim=64, M=1, O=0, routerlifetime=1800, reachabletime=30000, retranstimer=1000)
        / ICMPv6NDOptSrcLLAddr(lladdr="02:aa:bb:cc:dd:ee")
        / ICMPv6NDOptMTU(mtu=2800)
        / ICMPv6NDOptPrefixInfo(prefix="fd00::", prefixlen=64)
    )
    ra = decode_icmp6(raw, A6, B6)
    assert isinstance(ra, RouterAdvertisement)
    assert (ra.cur_hop_limit, ra.managed, ra.other_config, ra.router_lifetime) == (
        64,
        True,
        False,
        1800,
    )
    assert (ra.reachable_time, ra.retrans_timer, ra.source_lladdr, ra.mtu) == (
        30000,
        1000,
        MAC,
        2800,
    )
    assert [t for t, _ in ra.other_options] == [NDP_OPT_PREFIX_INFO]
    enc = ra.encode(A6, B6)
    assert decode_icmp6(enc, A6, B6) == ra
    p = dissect6(enc)
    assert p[ICMPv6NDOptMTU].mtu == 2800 and p[ICMPv6NDOptPrefixInfo].prefix == "fd00::"
    scapy_ok6(enc)


def test_ndp_rejects() -> None:
    t = IPv6Address("fd00::5")
    ns = NeighborSolicitation(t, MAC).encode(A6, B6)
    zero_len = six(ICMPv6ND_NS(tgt=str(t)) / Raw(b"\x01\x00" + b"\0" * 6))
    bad_code = six(ICMPv6ND_NS(tgt=str(t), code=1))
    mcast = six(ICMPv6ND_NS(tgt="ff02::1"))
    cases = [ns[:23], zero_len, bad_code, mcast, six(ICMPv6ND_NS(tgt=str(t)) / Raw(b"\x01\x02\0"))]
    cases.append(six(ICMPv6ND_RA())[:15])
    cases.append(six(ICMPv6ND_RS() / Raw(b"\x01")))
    cases.append(six(ICMPv6EchoRequest(code=3)))
    for c in cases:
        with pytest.raises(DecodeError):
            decode_icmp6(c, A6, B6)
    with pytest.raises(DecodeError):
        decode_icmp6(ns[:7], A6, B6, verify_checksum=False)
    with pytest.raises(ValueError):
        RouterSolicitation(1 << 48).encode(A6, B6)


macs = st.none() | st.integers(0, (1 << 48) - 1)
v6 = st.integers(0, (1 << 128) - 1).map(IPv6Address).filter(lambda a: not a.is_multicast)
raw_opts = st.lists(
    st.tuples(st.sampled_from([3, 24, 25, 31]), st.binary(min_size=6, max_size=6)), max_size=2
).map(tuple)


@settings(max_examples=200)
@given(
    st.one_of(
        st.builds(
            Icmp6Echo,
            st.integers(0, 0xFFFF),
            st.integers(0, 0xFFFF),
            st.binary(max_size=40),
            st.booleans(),
        ),
        st.builds(Icmp6DestinationUnreachable, st.integers(0, 255), st.binary(max_size=40)),
        st.builds(Icmp6PacketTooBig, st.integers(0, 0xFFFFFFFF), st.binary(max_size=40)),
        st.builds(Icmp6TimeExceeded, st.integers(0, 255), st.binary(max_size=40)),
        st.builds(RouterSolicitation, macs, raw_opts),
        st.builds(
            RouterAdvertisement,
            st.integers(0, 255),
            st.booleans(),
            st.booleans(),
            st.integers(0, 0xFFFF),
            st.integers(0, 0xFFFFFFFF),
            st.integers(0, 0xFFFFFFFF),
            macs,
            st.none() | st.integers(0, 0xFFFFFFFF),
            raw_opts,
        ),
        st.builds(NeighborSolicitation, v6, macs, raw_opts),
        st.builds(
            NeighborAdvertisement, v6, macs, st.booleans(), st.booleans(), st.booleans(), raw_opts
        ),
    )
)
def test_icmp6_round_trip(m: object) -> None:
    enc = m.encode(A6, B6)  # type: ignore[attr-defined]
    assert decode_icmp6(enc, A6, B6) == m
    scapy_ok6(enc)


@settings(max_examples=300)
@given(st.data(), st.sampled_from(["ns", "ra", "echo4", "unreach4"]))
def test_fuzz(d: st.DataObject, kind: str) -> None:
    seeds = {
        "ns": NeighborSolicitation(IPv6Address("fd00::1"), MAC, ((3, b"\0" * 6),)).encode(A6, B6),
        "ra": RouterAdvertisement(64, True, False, 1, 2, 3, MAC, 1500).encode(A6, B6),
        "echo4": Icmp4Echo(1, 2, b"data").encode(),
        "unreach4": Icmp4DestinationUnreachable(4, b"\x45" + b"\0" * 27, 1400).encode(),
    }
    seed = seeds[kind]
    b = bytearray(seed[: d.draw(st.integers(0, len(seed)))])
    for _ in range(d.draw(st.integers(0, 4))):
        if b:
            b[d.draw(st.integers(0, len(b) - 1))] = d.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        if kind.endswith("4"):
            decode_icmp4(bytes(b), verify_checksum=False)
        else:
            decode_icmp6(bytes(b), A6, B6, verify_checksum=False)


def test_field_validation() -> None:
    for make in (
        lambda: Icmp4Echo(1 << 16, 0),
        lambda: Icmp6Echo(0, -1),
        lambda: Icmp4DestinationUnreachable(256, b""),
        lambda: Icmp4DestinationUnreachable(4, b"", 1 << 16),
        lambda: Icmp4TimeExceeded(-1, b""),
        lambda: Icmp4Other(256, 0, 0, b""),
        lambda: Icmp6Other(1, 0, 1 << 32, b""),
        lambda: Icmp6PacketTooBig(1 << 32, b""),
        lambda: Icmp6DestinationUnreachable(300, b""),
        lambda: Icmp6TimeExceeded(300, b""),
        lambda: RouterAdvertisement(router_lifetime=1 << 16),
        lambda: RouterAdvertisement(mtu=-1),
    ):
        with pytest.raises(ValueError):
            make()


@settings(max_examples=300)
@given(
    st.sampled_from([0, 3, 8, 11, 1, 2, 3, 4, 128, 129, 133, 134, 135, 136, 200]),
    st.binary(max_size=60),
)
def test_fuzz_random_bodies(t: int, rest: bytes) -> None:
    data = bytes([t, 0, 0, 0]) + rest
    for verify in (True, False):
        with contextlib.suppress(DecodeError):
            decode_icmp4(data, verify_checksum=verify)
        with contextlib.suppress(DecodeError):
            decode_icmp6(data, A6, B6, verify_checksum=verify)
