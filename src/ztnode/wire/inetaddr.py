"""Physical (UDP) endpoint addresses as ZeroTier serialises and classifies them.

ZeroTier writes an endpoint as a one-byte type followed by the address (``InetAddress::serialize``
in ``node/InetAddress.hpp``; reference fact sheet ``protocol-core.md`` section 10.2)::

    0x00                       null address (nothing follows)
    0x04  ip4[4]  port BE16    IPv4 endpoint
    0x06  ip6[16] port BE16    IPv6 endpoint
    0x01 / 0x02  6 bytes       "Ethernet" / "Bluetooth" placeholders, skipped
    0x03  len BE16  len bytes  other address kinds, skipped
    anything else              malformed

The skipped kinds exist so that future address types could be added without breaking old
parsers; the reference reads past them and ends up with a null address, and so does
:meth:`InetAddress.read`.

The module also carries the address classification the core uses to decide which endpoints are
usable as paths: :func:`ip_scope` (``InetAddress::ipScope()``), :func:`is_valid_path_address`
(``Path::isAddressValidForPath``) and :func:`ip_bucket` (``InetAddress::rateGateHash``, the key
of the HELLO identity-verification rate limiter). They are bug-for-bug ports: a node that
classified addresses differently would learn or refuse different paths than a real node.

In ZeroTier's text form an endpoint is ``ip/port`` (for example ``104.194.8.134/9993`` or
``2605:9880:200:1200:30:571:e34:51/9993``); the slash avoids the IPv6 colon ambiguity.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Final

from ztnode.errors import DecodeError
from ztnode.wire.buffer import Buf, Reader, Writer

IPAddress = IPv4Address | IPv6Address

# Type bytes of the serialised form (InetAddress.hpp:558-620).
TYPE_NIL: Final = 0x00
TYPE_ETHERNET: Final = 0x01  # placeholder, skipped by readers
TYPE_BLUETOOTH: Final = 0x02  # placeholder, skipped by readers
TYPE_OTHER: Final = 0x03  # u16 length-prefixed, skipped by readers
TYPE_IPV4: Final = 0x04
TYPE_IPV6: Final = 0x06

# Bytes a serialised address occupies, including the type byte.
SERIALIZED_NIL_SIZE: Final = 1
SERIALIZED_IPV4_SIZE: Final = 7
SERIALIZED_IPV6_SIZE: Final = 19

# Bits of the per-source-IP rate-limit bucket (InetAddress.hpp:524-550).
IP_BUCKET_BITS: Final = 14
IP_BUCKET_COUNT: Final = 1 << IP_BUCKET_BITS


class IpScope(IntEnum):
    """Address scope classes, numbered exactly as ``InetAddress::IpScope`` (InetAddress.hpp:63-70).

    The numbers matter beyond naming: the reference ranks paths by scope number (higher is
    preferred, ``Path::preferenceRank``) and path quality multiplies latency by ``8 - scope``.
    ``SHARED`` is never produced by :func:`ip_scope` (100.64/10 is reported as ``PRIVATE``) but
    keeps its value so scope-indexed tables line up with the reference.
    """

    NONE = 0
    MULTICAST = 1
    LOOPBACK = 2
    PSEUDOPRIVATE = 3
    GLOBAL = 4
    LINK_LOCAL = 5
    SHARED = 6
    PRIVATE = 7


# IPv4 /8 blocks the reference treats as PSEUDOPRIVATE: military and government allocations that
# are unrouted on the public Internet and often squatted on as private space (InetAddress.cpp).
_PSEUDOPRIVATE_V4_SLASH8: Final = frozenset(
    {
        0x06,  # 6/8 US Army
        0x0B,  # 11/8 US DoD
        0x15,  # 21/8 US DDN-RVN
        0x16,  # 22/8 US DISA
        0x19,  # 25/8 UK Ministry of Defence
        0x1A,  # 26/8 US DISA
        0x1C,  # 28/8 US DSI-North
        0x1D,  # 29/8 US DISA
        0x1E,  # 30/8 US DISA
        0x33,  # 51/8 UK Department of Social Security
        0x37,  # 55/8 US DoD
        0x38,  # 56/8 US Postal Service
    }
)

# (mask, value) pairs of IPv4 ranges classified PRIVATE beyond 10/8, checked in reference order.
# 100.64/10 (carrier-grade NAT) is PRIVATE here although the enum has a SHARED value meant for it;
# the documentation and test ranges are PRIVATE too, so they never count as global surfaces.
_PRIVATE_V4_RANGES: Final = (
    (0xFFC00000, 0x64400000),  # 100.64.0.0/10
    (0xFFF00000, 0xAC100000),  # 172.16.0.0/12
    (0xFFFF0000, 0xC0A80000),  # 192.168.0.0/16
    (0xFFFFFF00, 0xC0000200),  # 192.0.2.0/24 (TEST-NET-1)
    (0xFFFE0000, 0xC6120000),  # 198.18.0.0/15 (benchmarking)
    (0xFFFFFF00, 0xC6336400),  # 198.51.100.0/24 (TEST-NET-2)
    (0xFFFFFF00, 0xCB007100),  # 203.0.113.0/24 (TEST-NET-3)
)

_VALID_PATH_SCOPES: Final = frozenset(
    {IpScope.PRIVATE, IpScope.PSEUDOPRIVATE, IpScope.SHARED, IpScope.GLOBAL}
)

# he.net's tunnel broker block; the reference refuses it as a path because those tunnels have
# poor performance and a low MTU (Path.hpp, "TEMPORARY HACK").
_HE_NET_PREFIX: Final = b"\x20\x01\x04\x70"


def _ipv4_scope(ip: int) -> IpScope:
    top = ip >> 24
    if top in (0x00, 0xFF):
        return IpScope.NONE  # 0/8 "this network", 255/8 broadcast or unusable
    if top == 0x0A:
        return IpScope.PRIVATE
    if top in _PSEUDOPRIVATE_V4_SLASH8:
        return IpScope.PSEUDOPRIVATE
    if top == 0x7F:
        return IpScope.LOOPBACK
    if (ip & 0xFFFF0000) == 0xA9FE0000:
        return IpScope.LINK_LOCAL  # 169.254/16
    for mask, value in _PRIVATE_V4_RANGES:
        if (ip & mask) == value:
            return IpScope.PRIVATE
    if (ip >> 28) == 0xE:
        return IpScope.MULTICAST  # 224/4
    if (ip >> 28) == 0xF:
        return IpScope.PSEUDOPRIVATE  # 240/4 "reserved", unusable on the Internet
    return IpScope.GLOBAL


def _ipv6_scope(b: bytes) -> IpScope:
    if b[0] == 0xFF:
        return IpScope.MULTICAST  # ff00::/8
    if b[0] == 0xFE and (b[1] & 0xC0) == 0x80:
        # fe80::/10. The reference calls an address of this block whose bytes 2..14 are zero
        # and whose last byte is 1 (fe80::1) loopback, since some stacks put that on lo.
        if not any(b[2:15]) and b[15] == 0x01:
            return IpScope.LOOPBACK
        return IpScope.LINK_LOCAL
    if (b[0] & 0xFE) == 0xFC:
        return IpScope.PRIVATE  # fc00::/7 unique local addresses
    # IPv4-mapped loopback ::ffff:127.x.y.z. The reference checks bytes 0..8 for zero and
    # bytes 10..12 for ff ff 7f, leaving byte 9 unchecked; kept that way on purpose.
    if not any(b[0:9]) and b[10] == 0xFF and b[11] == 0xFF and b[12] == 0x7F:
        return IpScope.LOOPBACK
    if not any(b[0:15]):
        if b[15] == 0x01:
            return IpScope.LOOPBACK  # ::1
        if b[15] == 0x00:
            return IpScope.NONE  # ::
    return IpScope.GLOBAL


def ip_scope(ip: IPAddress) -> IpScope:
    """Classify ``ip`` exactly as ``InetAddress::ipScope()`` does in ZeroTierOne 1.14.1.

    This deliberately differs from :mod:`ipaddress`'s notion of "private": 100.64/10 and the
    RFC 5737/2544 test ranges are PRIVATE, a dozen military /8 blocks and 240/4 are
    PSEUDOPRIVATE, other IPv4-mapped IPv6 addresses are GLOBAL, and fe80::1 is LOOPBACK.
    """
    if isinstance(ip, IPv4Address):
        return _ipv4_scope(int(ip))
    return _ipv6_scope(ip.packed)


def is_valid_path_address(ip: IPAddress, allow_loopback: bool = False) -> bool:
    """Whether ``ip`` may carry ZeroTier traffic as a path (``Path::isAddressValidForPath``).

    Only PRIVATE, PSEUDOPRIVATE, SHARED and GLOBAL scopes qualify: link-local addresses need an
    interface qualifier PUSH_DIRECT_PATHS cannot carry, and loopback is refused by the reference
    (protocol-core.md section 15 item 11). IPv6 addresses in he.net's 2001:470::/32 tunnel block
    are refused too.

    ``allow_loopback`` is a local extension, off by default, that also admits LOOPBACK scope so
    several ztnode instances on one host can talk to each other directly in tests. A real
    ZeroTier node never accepts such a path, so leave it off when interoperating.
    """
    scope = ip_scope(ip)
    if scope not in _VALID_PATH_SCOPES and not (allow_loopback and scope is IpScope.LOOPBACK):
        return False
    return not (isinstance(ip, IPv6Address) and ip.packed[:4] == _HE_NET_PREFIX)


def ip_bucket(ip: IPAddress) -> int:
    """The 14-bit rate-limit bucket of ``ip`` (``InetAddress::rateGateHash``, InetAddress.hpp:526).

    The reference gates expensive identity verification per bucket, so every address in one
    IPv4 /24 shares a bucket. For IPv4 the /24 prefix is folded onto itself
    (``h = ip >> 8; h ^= h >> 14``). For IPv6 the reference's comment promises the first 48 bits,
    but the code shifts by one bit per byte, so the bucket is ``((((b0*2+b1)*2+b2)*2+b3)*2+b4)*2
    + b5``; copied as is so buckets collide exactly where the reference's do.
    """
    if isinstance(ip, IPv4Address):
        h = (int(ip) & 0xFFFFFF00) >> 8
        h ^= h >> 14
    else:
        b = ip.packed
        h = b[0]
        for i in range(1, 6):
            h = (h << 1) + b[i]
    return h & (IP_BUCKET_COUNT - 1)


def ips_equal(a: IPAddress, b: IPAddress) -> bool:
    """Compare IPs only, ignoring any scope id (``InetAddress::ipsEqual`` with ports dropped).

    The reference uses this when deciding whether a new path duplicates a live one and when
    SelfAwareness compares reported surfaces, so a NAT that remaps ports does not look like a
    new network location.
    """
    if isinstance(a, IPv4Address):
        return isinstance(b, IPv4Address) and a == b
    return isinstance(b, IPv6Address) and a.packed == b.packed


def _parse_ip(text: str) -> IPAddress:
    try:
        return ip_address(text)
    except ValueError:
        raise DecodeError(f"not an IP address: {text!r}") from None


def _parse_port(text: str, whole: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise DecodeError(f"bad port in {whole!r}")
    port = int(text)
    if port > 0xFFFF:
        raise DecodeError(f"port out of range in {whole!r}")
    return port


@dataclass(frozen=True, slots=True)
class InetAddress:
    """An IPv4 or IPv6 UDP endpoint.

    A null address has no instance: the codecs use ``None`` for it, which is what the reference's
    ``operator bool`` distinguishes. In routes and managed IPs the same serialisation carries a
    prefix length in ``port``.
    """

    ip: IPAddress
    port: int

    def __post_init__(self) -> None:
        if not isinstance(self.ip, IPv4Address | IPv6Address):
            raise TypeError(f"ip must be an IPv4Address or IPv6Address, not {type(self.ip)!r}")
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError(f"port {self.port} out of range 0..65535")

    # --- binary form ---------------------------------------------------------------------------

    @classmethod
    def read(cls, reader: Reader) -> InetAddress | None:
        """Read one serialised address; ``None`` for the null address and skipped kinds.

        The skipped kinds (types 1, 2 and 3) must still be complete: a length that runs past the
        data is a :class:`~ztnode.errors.DecodeError`, where the reference would merely advance
        its cursor past the end and fail, or silently stop, on the next field.
        """
        kind = reader.u8("InetAddress type")
        if kind == TYPE_IPV4:
            ip4 = IPv4Address(reader.raw(4, "IPv4 address"))
            return cls(ip4, reader.u16("IPv4 port"))
        if kind == TYPE_IPV6:
            ip6 = IPv6Address(reader.raw(16, "IPv6 address"))
            return cls(ip6, reader.u16("IPv6 port"))
        if kind == TYPE_NIL:
            return None
        if kind in (TYPE_ETHERNET, TYPE_BLUETOOTH):
            reader.skip(6, "placeholder InetAddress")
            return None
        if kind == TYPE_OTHER:
            reader.skip(reader.u16("InetAddress length"), "InetAddress body")
            return None
        raise DecodeError(f"unknown InetAddress type 0x{kind:02x}")

    @classmethod
    def decode(cls, data: Buf) -> InetAddress | None:
        """Decode a buffer holding exactly one serialised address."""
        reader = Reader(data)
        addr = cls.read(reader)
        reader.expect_end("InetAddress")
        return addr

    def write(self, writer: Writer) -> None:
        """Append the serialised form (type byte, address, big-endian port)."""
        if isinstance(self.ip, IPv4Address):
            writer.u8(TYPE_IPV4)
        else:
            writer.u8(TYPE_IPV6)
        writer.raw(self.ip.packed).u16(self.port)

    def encode(self) -> bytes:
        w = Writer()
        self.write(w)
        return bytes(w.buf)

    @staticmethod
    def write_null(writer: Writer) -> None:
        """Append the one-byte null address (HELLO via a relay, unused DNS slots)."""
        writer.u8(TYPE_NIL)

    @staticmethod
    def write_optional(writer: Writer, addr: InetAddress | None) -> None:
        """Append ``addr``, or the null address when it is ``None``."""
        if addr is None:
            writer.u8(TYPE_NIL)
        else:
            addr.write(writer)

    def encoded_size(self) -> int:
        """Bytes :meth:`write` appends: 7 for IPv4, 19 for IPv6."""
        return SERIALIZED_IPV4_SIZE if isinstance(self.ip, IPv4Address) else SERIALIZED_IPV6_SIZE

    # --- text form -----------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> InetAddress:
        """Parse ZeroTier's ``ip/port`` text form.

        Accepted: ``1.2.3.4/9993``, ``::1/9993``, ``[::1]/9993`` and a bare IP (port 0, as the
        reference's ``fromString`` gives). The reference masks an oversized port to 16 bits and
        leaves an unparsable IP as zeros; here both are a :class:`~ztnode.errors.DecodeError`.
        """
        s = text.strip()
        ip_text, sep, port_text = s.partition("/")
        port = _parse_port(port_text, text) if sep else 0
        if ip_text.startswith("[") and ip_text.endswith("]"):
            ip = _parse_ip(ip_text[1:-1])
            if not isinstance(ip, IPv6Address):
                raise DecodeError(f"brackets around a non-IPv6 address in {text!r}")
        else:
            ip = _parse_ip(ip_text)
        return cls(ip, port)

    def __str__(self) -> str:
        return f"{self.ip}/{self.port}"

    # --- sockets -------------------------------------------------------------------------------

    def to_sockaddr(self) -> tuple[str, int]:
        """``(host, port)`` for :meth:`asyncio.DatagramTransport.sendto` and friends."""
        return (str(self.ip), self.port)

    @classmethod
    def from_sockaddr(cls, addr: tuple[object, ...], unmap_ipv4: bool = True) -> InetAddress:
        """Build from a socket address tuple (``(host, port)`` or ``(host, port, flow, scope)``).

        With ``unmap_ipv4`` an IPv4-mapped IPv6 host (``::ffff:a.b.c.d``, as a dual-stack socket
        reports IPv4 peers) becomes the plain IPv4 address, which is what a ZeroTier peer would
        see and report, and what :func:`ip_scope` classifies meaningfully.
        """
        if len(addr) < 2 or not isinstance(addr[0], str) or not isinstance(addr[1], int):
            raise ValueError(f"not a socket address: {addr!r}")
        ip = ip_address(addr[0])
        if unmap_ipv4 and isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return cls(ip, addr[1])

    # --- classification ------------------------------------------------------------------------

    def is_ipv4(self) -> bool:
        return isinstance(self.ip, IPv4Address)

    def is_ipv6(self) -> bool:
        return isinstance(self.ip, IPv6Address)

    def scope(self) -> IpScope:
        """The reference's scope class of the IP (see :func:`ip_scope`)."""
        return ip_scope(self.ip)

    def is_valid_path(self, allow_loopback: bool = False) -> bool:
        return is_valid_path_address(self.ip, allow_loopback)

    def bucket(self) -> int:
        """The rate-limit bucket of the IP (see :func:`ip_bucket`)."""
        return ip_bucket(self.ip)

    def ips_equal(self, other: InetAddress) -> bool:
        """Same IP, port ignored (see :func:`ips_equal`)."""
        return ips_equal(self.ip, other.ip)

    def with_port(self, port: int) -> InetAddress:
        return InetAddress(self.ip, port)


__all__ = [
    "IP_BUCKET_BITS",
    "IP_BUCKET_COUNT",
    "SERIALIZED_IPV4_SIZE",
    "SERIALIZED_IPV6_SIZE",
    "SERIALIZED_NIL_SIZE",
    "TYPE_BLUETOOTH",
    "TYPE_ETHERNET",
    "TYPE_IPV4",
    "TYPE_IPV6",
    "TYPE_NIL",
    "TYPE_OTHER",
    "IPAddress",
    "InetAddress",
    "IpScope",
    "ip_bucket",
    "ip_scope",
    "ips_equal",
    "is_valid_path_address",
]
