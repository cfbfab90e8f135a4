"""InetAddress serialisation, text form and the reference's address classification."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.strategies import inet_addresses, ipv6s
from ztnode.errors import DecodeError
from ztnode.wire.buffer import Reader, Writer
from ztnode.wire.inetaddr import (
    IP_BUCKET_COUNT,
    InetAddress,
    IpScope,
    ip_bucket,
    ip_scope,
    ips_equal,
    is_valid_path_address,
)

H = bytes.fromhex


# --- binary form -------------------------------------------------------------------------------


def test_ipv4_wire_layout() -> None:
    a = InetAddress(ip_address("104.194.8.134"), 9993)
    assert a.encode() == H("0468c208862709")
    assert a.encoded_size() == 7
    assert InetAddress.decode(H("0468c208862709")) == a


def test_ipv6_wire_layout() -> None:
    a = InetAddress(ip_address("2605:9880:200:1200:30:571:e34:51"), 9993)
    assert a.encode() == H("062605988002001200003005710e3400512709")
    assert a.encoded_size() == 19
    assert InetAddress.decode(a.encode()) == a


@given(inet_addresses)
def test_round_trip(a: InetAddress) -> None:
    data = a.encode()
    assert len(data) == a.encoded_size()
    r = Reader(data + b"tail")
    assert InetAddress.read(r) == a
    assert r.rest() == b"tail"


def test_null_and_write_null() -> None:
    w = Writer()
    InetAddress.write_null(w)
    InetAddress.write_optional(w, None)
    assert bytes(w.buf) == b"\x00\x00"
    r = Reader(bytes(w.buf))
    assert InetAddress.read(r) is None
    assert r.remaining == 1


@pytest.mark.parametrize(
    "data",
    [H("01112233445566"), H("02112233445566"), H("030003aabbcc"), H("030000")],
)
def test_forward_compatible_types_are_skipped(data: bytes) -> None:
    r = Reader(data + b"\x99")
    assert InetAddress.read(r) is None
    assert r.u8() == 0x99  # cursor sits right after the skipped record


@pytest.mark.parametrize(
    "data",
    [
        b"",
        H("05"),
        H("ff"),
        H("04010203"),
        H("040102030400"),
        H("06" + "00" * 17),
        H("011122"),
        H("030005aabb"),
        H("0300"),
    ],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(DecodeError):
        InetAddress.read(Reader(data))


def test_decode_rejects_trailing() -> None:
    with pytest.raises(DecodeError):
        InetAddress.decode(H("0401020304270900"))


@settings(max_examples=300)
@given(st.binary(max_size=24))
def test_read_random_bytes_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        InetAddress.read(Reader(data))


def test_port_range_checked() -> None:
    with pytest.raises(ValueError):
        InetAddress(IPv4Address("1.2.3.4"), 65536)
    with pytest.raises(ValueError):
        InetAddress(IPv4Address("1.2.3.4"), -1)
    with pytest.raises(TypeError):
        InetAddress("1.2.3.4", 1)  # type: ignore[arg-type]


# --- text form ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ip", "port"),
    [
        ("1.2.3.4/9993", "1.2.3.4", 9993),
        ("::1/9993", "::1", 9993),
        ("[::1]/9993", "::1", 9993),
        ("2605:9880:200:1200:30:571:e34:51/9993", "2605:9880:200:1200:30:571:e34:51", 9993),
        ("10.0.0.1", "10.0.0.1", 0),
        (" 10.0.0.1/0 ", "10.0.0.1", 0),
        ("fd00::/65535", "fd00::", 65535),
    ],
)
def test_parse(text: str, ip: str, port: int) -> None:
    assert InetAddress.parse(text) == InetAddress(ip_address(ip), port)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.2.3.4/",
        "1.2.3.4/65536",
        "1.2.3.4/-1",
        "1.2.3.4/x",
        "1.2.3/1",
        "[1.2.3.4]/1",
        "host/1",
        "1.2.3.4/١٢",
        "::g/1",
        "1.2.3.4:9993",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(DecodeError):
        InetAddress.parse(text)


@given(inet_addresses)
def test_text_round_trip(a: InetAddress) -> None:
    assert InetAddress.parse(str(a)) == a


def test_str_is_ip_slash_port() -> None:
    assert str(InetAddress(ip_address("104.194.8.134"), 9993)) == "104.194.8.134/9993"
    assert str(InetAddress(ip_address("2001:49f0:d0db:2::2"), 9993)) == "2001:49f0:d0db:2::2/9993"


def test_sockaddr() -> None:
    a = InetAddress(ip_address("10.1.2.3"), 9993)
    assert a.to_sockaddr() == ("10.1.2.3", 9993)
    assert InetAddress.from_sockaddr(("10.1.2.3", 9993)) == a
    assert InetAddress.from_sockaddr(("::ffff:10.1.2.3", 9993, 0, 0)) == a
    mapped = InetAddress.from_sockaddr(("::ffff:10.1.2.3", 9993, 0, 0), unmap_ipv4=False)
    assert mapped.is_ipv6()
    v6 = InetAddress(ip_address("fd00::5"), 1)
    assert InetAddress.from_sockaddr(v6.to_sockaddr()) == v6
    with pytest.raises(ValueError):
        InetAddress.from_sockaddr(("10.1.2.3",))


# --- classification ----------------------------------------------------------------------------

SCOPE_TABLE = [
    # IPv4, in the reference's order
    ("0.0.0.0", IpScope.NONE),
    ("0.255.255.255", IpScope.NONE),
    ("255.255.255.255", IpScope.NONE),
    ("255.0.0.1", IpScope.NONE),
    ("10.0.0.1", IpScope.PRIVATE),
    ("10.255.255.255", IpScope.PRIVATE),
    *(
        (f"{n}.1.2.3", IpScope.PSEUDOPRIVATE)
        for n in (6, 11, 21, 22, 25, 26, 28, 29, 30, 51, 55, 56)
    ),
    ("7.1.2.3", IpScope.GLOBAL),
    ("27.1.2.3", IpScope.GLOBAL),
    ("100.63.255.255", IpScope.GLOBAL),
    ("100.64.0.0", IpScope.PRIVATE),
    ("100.127.255.255", IpScope.PRIVATE),
    ("100.128.0.0", IpScope.GLOBAL),
    ("127.0.0.1", IpScope.LOOPBACK),
    ("127.255.0.9", IpScope.LOOPBACK),
    ("169.254.1.1", IpScope.LINK_LOCAL),
    ("169.253.1.1", IpScope.GLOBAL),
    ("172.15.255.255", IpScope.GLOBAL),
    ("172.16.0.0", IpScope.PRIVATE),
    ("172.31.255.255", IpScope.PRIVATE),
    ("172.32.0.0", IpScope.GLOBAL),
    ("192.168.1.1", IpScope.PRIVATE),
    ("192.169.1.1", IpScope.GLOBAL),
    ("192.0.2.7", IpScope.PRIVATE),
    ("192.0.3.7", IpScope.GLOBAL),
    ("198.18.0.1", IpScope.PRIVATE),
    ("198.19.255.255", IpScope.PRIVATE),
    ("198.20.0.0", IpScope.GLOBAL),
    ("198.51.100.1", IpScope.PRIVATE),
    ("198.51.101.1", IpScope.GLOBAL),
    ("203.0.113.9", IpScope.PRIVATE),
    ("203.0.114.9", IpScope.GLOBAL),
    ("224.0.0.1", IpScope.MULTICAST),
    ("239.255.255.250", IpScope.MULTICAST),
    ("240.0.0.1", IpScope.PSEUDOPRIVATE),
    ("254.255.255.255", IpScope.PSEUDOPRIVATE),
    ("8.8.8.8", IpScope.GLOBAL),
    ("104.194.8.134", IpScope.GLOBAL),
    # IPv6
    ("ff02::1", IpScope.MULTICAST),
    ("ff0e::1234", IpScope.MULTICAST),
    ("fe80::1", IpScope.LOOPBACK),  # reference quirk
    ("febf::1", IpScope.LOOPBACK),  # any fe80::/10 with zero middle and last byte 1
    ("fe80::2", IpScope.LINK_LOCAL),
    ("fe80::1:1", IpScope.LINK_LOCAL),
    ("fe80::1234:5678:9abc:def0", IpScope.LINK_LOCAL),
    ("fec0::1", IpScope.GLOBAL),  # old site-local, not link-local in the reference
    ("fc00::1", IpScope.PRIVATE),
    ("fd12:3456:789a::1", IpScope.PRIVATE),
    ("fe00::1", IpScope.GLOBAL),
    ("f000::1", IpScope.GLOBAL),
    ("::1", IpScope.LOOPBACK),
    ("::", IpScope.NONE),
    ("::2", IpScope.GLOBAL),
    ("::ffff:127.0.0.1", IpScope.LOOPBACK),
    ("::ffff:127.1.2.3", IpScope.LOOPBACK),
    ("::ff:ffff:7f00:1", IpScope.LOOPBACK),  # byte 9 is not checked by the reference
    ("::ffff:10.0.0.1", IpScope.GLOBAL),  # other mapped addresses are GLOBAL
    ("2001:470::1", IpScope.GLOBAL),
    ("2001:db8::1", IpScope.GLOBAL),
    ("2605:9880:200:1200:30:571:e34:51", IpScope.GLOBAL),
]


@pytest.mark.parametrize(("ip", "scope"), SCOPE_TABLE)
def test_ip_scope(ip: str, scope: IpScope) -> None:
    assert ip_scope(ip_address(ip)) is scope
    assert InetAddress(ip_address(ip), 1).scope() is scope


def test_scope_values_match_reference() -> None:
    assert [(s.name, int(s)) for s in IpScope] == [
        ("NONE", 0),
        ("MULTICAST", 1),
        ("LOOPBACK", 2),
        ("PSEUDOPRIVATE", 3),
        ("GLOBAL", 4),
        ("LINK_LOCAL", 5),
        ("SHARED", 6),
        ("PRIVATE", 7),
    ]


def test_every_scope_but_shared_is_reachable() -> None:
    produced = {scope for _, scope in SCOPE_TABLE}
    assert produced == set(IpScope) - {IpScope.SHARED}


@pytest.mark.parametrize(
    ("ip", "valid", "valid_with_loopback"),
    [
        ("10.0.0.1", True, True),
        ("100.64.1.1", True, True),
        ("28.1.1.1", True, True),
        ("8.8.8.8", True, True),
        ("fd00::1", True, True),
        ("2001:db8::1", True, True),
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("fe80::1", False, True),  # classified LOOPBACK by the reference
        ("169.254.3.3", False, False),
        ("fe80::2", False, False),
        ("224.0.0.1", False, False),
        ("ff02::1", False, False),
        ("0.0.0.0", False, False),
        ("255.255.255.255", False, False),
        ("::", False, False),
        ("2001:470::1", False, False),  # he.net tunnels
        ("2001:470:ffff::1", False, False),
        ("2001:471::1", True, True),
    ],
)
def test_valid_path_address(ip: str, valid: bool, valid_with_loopback: bool) -> None:
    addr = ip_address(ip)
    assert is_valid_path_address(addr) is valid
    assert is_valid_path_address(addr, allow_loopback=True) is valid_with_loopback
    assert InetAddress(addr, 9993).is_valid_path() is valid


def test_ip_bucket_known_values() -> None:
    # IPv4: h = ip >> 8, folded with h >> 14, low 14 bits.
    h = 0x010203
    assert ip_bucket(IPv4Address("1.2.3.4")) == (h ^ (h >> 14)) & 0x3FFF
    assert ip_bucket(IPv4Address("0.0.0.0")) == 0
    h = 0xFFFFFF
    assert ip_bucket(IPv4Address("255.255.255.255")) == (h ^ (h >> 14)) & 0x3FFF
    # IPv6: one-bit shifts per byte over the first six bytes (20 01 0d b8 00 01).
    h = 0x20
    for b in (0x01, 0x0D, 0xB8, 0x00, 0x01):
        h = (h << 1) + b
    assert ip_bucket(IPv6Address("2001:db8:1::5")) == h & 0x3FFF == 0x759
    assert InetAddress(IPv6Address("2001:db8:1::5"), 1).bucket() == 0x759


@given(st.integers(0, 2**24 - 1), st.integers(0, 255), st.integers(0, 255))
def test_ip_bucket_is_per_slash24(prefix: int, a: int, b: int) -> None:
    x = IPv4Address((prefix << 8) | a)
    y = IPv4Address((prefix << 8) | b)
    assert ip_bucket(x) == ip_bucket(y)
    assert 0 <= ip_bucket(x) < IP_BUCKET_COUNT


@given(ipv6s)
def test_ip_bucket_v6_range(ip: IPv6Address) -> None:
    assert 0 <= ip_bucket(ip) < IP_BUCKET_COUNT


def test_ips_equal_ignores_port() -> None:
    a = InetAddress(ip_address("10.0.0.1"), 1)
    b = InetAddress(ip_address("10.0.0.1"), 2)
    assert a != b
    assert a.ips_equal(b)
    assert a.with_port(2) == b
    assert not a.ips_equal(InetAddress(ip_address("10.0.0.2"), 1))
    assert not ips_equal(IPv4Address("0.0.0.1"), IPv6Address("::1"))
    assert ips_equal(IPv6Address("fe80::1%eth0"), IPv6Address("fe80::1"))
