"""ICMPv4 (RFC 792), ICMPv6 (RFC 4443) and the NDP messages (RFC 4861) the stack needs.

Every message shares the 4-byte head ``type, code, checksum``::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |     Code      |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |            4 type-specific bytes (id/seq, MTU, unused)        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  data / quoted original datagram / NDP target and options ... |

The ICMPv4 checksum covers the message alone; the ICMPv6 one also covers the IPv6
pseudo-header (RFC 4443 §2.3), so the ICMPv6 codecs take the source and destination.

Decoding dispatches on type to one frozen dataclass per message; types the stack does not
handle come back as :class:`Icmp4Other` / :class:`Icmp6Other` so the caller can count them.
Error messages keep the quoted original datagram as bytes (the caller parses it with the IP
codecs to find the flow it belongs to); :func:`quote_ipv4` / :func:`quote_ipv6` cut a
datagram to what may be quoted.

NDP (RFC 4861 §7.1) validity that only needs the message is checked here: code 0, minimum
lengths, no zero-length option, no multicast target. The hop-limit-255 and
unspecified-source rules need the IP header and are the caller's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Final

from ztnode.errors import DecodeError
from ztnode.netstack.checksum import internet_checksum, ones_sum, pseudo_header_sum_v6
from ztnode.netstack.ipproto import NH_ICMPV6
from ztnode.wire.mac import MAC_MASK

Buf = bytes | bytearray | memoryview

# ICMPv4 types and codes (RFC 792, RFC 1191)
ICMP4_ECHO_REPLY: Final = 0
ICMP4_DEST_UNREACHABLE: Final = 3
ICMP4_ECHO_REQUEST: Final = 8
ICMP4_TIME_EXCEEDED: Final = 11
ICMP4_CODE_NET_UNREACHABLE: Final = 0
ICMP4_CODE_HOST_UNREACHABLE: Final = 1
ICMP4_CODE_PROTOCOL_UNREACHABLE: Final = 2
ICMP4_CODE_PORT_UNREACHABLE: Final = 3
ICMP4_CODE_FRAGMENTATION_NEEDED: Final = 4
ICMP4_CODE_TTL_EXCEEDED: Final = 0
ICMP4_CODE_REASSEMBLY_TIME_EXCEEDED: Final = 1

# ICMPv6 types and codes (RFC 4443, RFC 4861)
ICMP6_DEST_UNREACHABLE: Final = 1
ICMP6_PACKET_TOO_BIG: Final = 2
ICMP6_TIME_EXCEEDED: Final = 3
ICMP6_PARAMETER_PROBLEM: Final = 4
ICMP6_ECHO_REQUEST: Final = 128
ICMP6_ECHO_REPLY: Final = 129
ICMP6_ROUTER_SOLICITATION: Final = 133
ICMP6_ROUTER_ADVERTISEMENT: Final = 134
ICMP6_NEIGHBOR_SOLICITATION: Final = 135
ICMP6_NEIGHBOR_ADVERTISEMENT: Final = 136
ICMP6_CODE_NO_ROUTE: Final = 0
ICMP6_CODE_ADMIN_PROHIBITED: Final = 1
ICMP6_CODE_ADDRESS_UNREACHABLE: Final = 3
ICMP6_CODE_PORT_UNREACHABLE: Final = 4
ICMP6_CODE_HOP_LIMIT_EXCEEDED: Final = 0
ICMP6_CODE_REASSEMBLY_TIME_EXCEEDED: Final = 1

NDP_OPT_SOURCE_LLADDR: Final = 1
NDP_OPT_TARGET_LLADDR: Final = 2
NDP_OPT_PREFIX_INFO: Final = 3
NDP_OPT_MTU: Final = 5

ICMP_HEADER_LEN: Final = 8
# RFC 1812 §4.3.2.3: an ICMPv4 error should not exceed 576 bytes (20 IP + 8 ICMP + quote).
ICMP4_MAX_QUOTE: Final = 576 - 20 - 8
# RFC 4443 §2.4(c): an ICMPv6 error must not exceed the 1280-byte minimum MTU.
ICMP6_MAX_QUOTE: Final = 1280 - 40 - 8

_HEAD: Final = struct.Struct(">BBH")
_ECHO: Final = struct.Struct(">BBHHH")
_WORD: Final = struct.Struct(">BBHI")
_UNREACH4: Final = struct.Struct(">BBHHH")
_RA: Final = struct.Struct(">BBHBBHII")
_NA_FLAGS_ROUTER: Final = 0x80000000
_NA_FLAGS_SOLICITED: Final = 0x40000000
_NA_FLAGS_OVERRIDE: Final = 0x20000000
_RA_MANAGED: Final = 0x80
_RA_OTHER: Final = 0x40


def quote_ipv4(datagram: Buf, limit: int = ICMP4_MAX_QUOTE) -> bytes:
    """The part of an offending IPv4 datagram an ICMPv4 error quotes (at most ``limit``).

    RFC 792 requires the IP header plus 8 bytes; RFC 1812 allows up to 576 bytes in all.
    """
    return bytes(datagram[:limit])


def quote_ipv6(datagram: Buf, limit: int = ICMP6_MAX_QUOTE) -> bytes:
    """As much of an offending IPv6 packet as keeps the error within 1280 bytes."""
    return bytes(datagram[:limit])


def _check(value: int, bits: int, what: str) -> None:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{what} {value} does not fit in {bits} bits")


def _mv(data: Buf) -> memoryview:
    return data if isinstance(data, memoryview) else memoryview(data)


# --- ICMPv4 -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Icmp4Echo:
    """Echo request (type 8) or reply (type 0)."""

    identifier: int
    sequence: int
    data: bytes = b""
    reply: bool = False

    def __post_init__(self) -> None:
        _check(self.identifier, 16, "identifier")
        _check(self.sequence, 16, "sequence")

    def encode(self) -> bytes:
        t = ICMP4_ECHO_REPLY if self.reply else ICMP4_ECHO_REQUEST
        return _finish4(_ECHO.pack(t, 0, 0, self.identifier, self.sequence) + self.data)

    def make_reply(self) -> Icmp4Echo:
        return Icmp4Echo(self.identifier, self.sequence, self.data, True)


@dataclass(frozen=True, slots=True)
class Icmp4DestinationUnreachable:
    """Type 3; ``next_hop_mtu`` only with code 4, "fragmentation needed" (RFC 1191)."""

    code: int
    original: bytes
    next_hop_mtu: int = 0

    def __post_init__(self) -> None:
        _check(self.code, 8, "code")
        _check(self.next_hop_mtu, 16, "next-hop MTU")

    def encode(self) -> bytes:
        mtu = self.next_hop_mtu if self.code == ICMP4_CODE_FRAGMENTATION_NEEDED else 0
        return _finish4(
            _UNREACH4.pack(ICMP4_DEST_UNREACHABLE, self.code, 0, 0, mtu) + self.original
        )


@dataclass(frozen=True, slots=True)
class Icmp4TimeExceeded:
    """Type 11: TTL exceeded in transit (0) or fragment reassembly time exceeded (1)."""

    code: int
    original: bytes

    def __post_init__(self) -> None:
        _check(self.code, 8, "code")

    def encode(self) -> bytes:
        return _finish4(_WORD.pack(ICMP4_TIME_EXCEEDED, self.code, 0, 0) + self.original)


@dataclass(frozen=True, slots=True)
class Icmp4Other:
    """Any other ICMPv4 type: the 4 type-specific bytes and the rest kept raw."""

    type: int
    code: int
    rest_of_header: int
    body: bytes

    def __post_init__(self) -> None:
        _check(self.type, 8, "type")
        _check(self.code, 8, "code")
        _check(self.rest_of_header, 32, "rest of header")

    def encode(self) -> bytes:
        return _finish4(_WORD.pack(self.type, self.code, 0, self.rest_of_header) + self.body)


Icmp4Message = Icmp4Echo | Icmp4DestinationUnreachable | Icmp4TimeExceeded | Icmp4Other


def _finish4(msg: bytes) -> bytes:
    ck = internet_checksum(msg)
    return msg[:2] + ck.to_bytes(2, "big") + msg[4:]


def decode_icmp4(data: Buf, *, verify_checksum: bool = True) -> Icmp4Message:
    """Decode an ICMPv4 message (the IPv4 payload)."""
    mv = _mv(data)
    if len(mv) < ICMP_HEADER_LEN:
        raise DecodeError(f"ICMPv4 message of {len(mv)} bytes is shorter than 8")
    if verify_checksum and ones_sum(mv) != 0xFFFF:
        raise DecodeError("ICMPv4 checksum mismatch")
    t, code, _ck, word = _WORD.unpack_from(mv, 0)
    body = mv[ICMP_HEADER_LEN:].tobytes()
    if t in (ICMP4_ECHO_REQUEST, ICMP4_ECHO_REPLY):
        if code != 0:
            raise DecodeError(f"ICMPv4 echo with code {code}")
        return Icmp4Echo(word >> 16, word & 0xFFFF, body, t == ICMP4_ECHO_REPLY)
    if t == ICMP4_DEST_UNREACHABLE:
        mtu = word & 0xFFFF if code == ICMP4_CODE_FRAGMENTATION_NEEDED else 0
        return Icmp4DestinationUnreachable(code, body, mtu)
    if t == ICMP4_TIME_EXCEEDED:
        return Icmp4TimeExceeded(code, body)
    return Icmp4Other(t, code, word, body)


# --- ICMPv6 -----------------------------------------------------------------------------


def _finish6(msg: bytes, src: IPv6Address, dst: IPv6Address) -> bytes:
    ck = internet_checksum(msg, pseudo_header_sum_v6(src.packed, dst.packed, NH_ICMPV6, len(msg)))
    return msg[:2] + ck.to_bytes(2, "big") + msg[4:]


@dataclass(frozen=True, slots=True)
class Icmp6Echo:
    """Echo request (128) or reply (129)."""

    identifier: int
    sequence: int
    data: bytes = b""
    reply: bool = False

    def __post_init__(self) -> None:
        _check(self.identifier, 16, "identifier")
        _check(self.sequence, 16, "sequence")

    def encode(self, src: IPv6Address, dst: IPv6Address) -> bytes:
        t = ICMP6_ECHO_REPLY if self.reply else ICMP6_ECHO_REQUEST
        return _finish6(_ECHO.pack(t, 0, 0, self.identifier, self.sequence) + self.data, src, dst)

    def make_reply(self) -> Icmp6Echo:
        return Icmp6Echo(self.identifier, self.sequence, self.data, True)


@dataclass(frozen=True, slots=True)
class Icmp6DestinationUnreachable:
    """Type 1 with the quoted packet."""

    code: int
    original: bytes

    def __post_init__(self) -> None:
        _check(self.code, 8, "code")

    def encode(self, src: IPv6Address, dst: IPv6Address) -> bytes:
        return _finish6(
            _WORD.pack(ICMP6_DEST_UNREACHABLE, self.code, 0, 0) + self.original, src, dst
        )


@dataclass(frozen=True, slots=True)
class Icmp6PacketTooBig:
    """Type 2: the MTU of the next hop and the quoted packet (Path MTU Discovery, RFC 8201)."""

    mtu: int
    original: bytes

    def __post_init__(self) -> None:
        _check(self.mtu, 32, "MTU")

    def encode(self, src: IPv6Address, dst: IPv6Address) -> bytes:
        return _finish6(_WORD.pack(ICMP6_PACKET_TOO_BIG, 0, 0, self.mtu) + self.original, src, dst)


@dataclass(frozen=True, slots=True)
class Icmp6TimeExceeded:
    """Type 3: hop limit exceeded (0) or fragment reassembly time exceeded (1)."""

    code: int
    original: bytes

    def __post_init__(self) -> None:
        _check(self.code, 8, "code")

    def encode(self, src: IPv6Address, dst: IPv6Address) -> bytes:
        return _finish6(_WORD.pack(ICMP6_TIME_EXCEEDED, self.code, 0, 0) + self.original, src, dst)


@dataclass(frozen=True, slots=True)
class Icmp6Other:
    """Any other ICMPv6 type (parameter problem, MLD, redirect...), kept raw."""

    type: int
    code: int
    rest_of_header: int
    body: bytes

    def __post_init__(self) -> None:
        _check(self.type, 8, "type")
        _check(self.code, 8, "code")
        _check(self.rest_of_header, 32, "rest of header")

    def encode(self, src: IPv6Address, dst: IPv6Address) -> bytes:
        return _finish6(
            _WORD.pack(self.type, self.code, 0, self.rest_of_header) + self.body, src, dst
        )


NdpOptions = tuple[tuple[int, bytes], ...]


def _parse_ndp_options(mv: memoryview) -> NdpOptions:
    """``(type, option data after the type/length bytes)``; zero length is invalid (§4.6)."""
    out: list[tuple[int, bytes]] = []
    i, n = 0, len(mv)
    while i < n:
        if i + 2 > n:
            raise DecodeError("truncated NDP option")
        t, ln = mv[i], mv[i + 1] << 3
        if ln == 0:
            raise DecodeError(f"NDP option {t} with zero length")
        if i + ln > n:
            raise DecodeError(f"NDP option {t} of {ln} bytes is truncated")
        out.append((t, mv[i + 2 : i + ln].tobytes()))
        i += ln
    return tuple(out)


def _encode_ndp_options(options: NdpOptions) -> bytes:
    parts: list[bytes] = []
    for t, data in options:
        total = 2 + len(data)
        pad = -total & 7
        ln = (total + pad) >> 3
        if ln > 255:
            raise ValueError(f"NDP option {t} of {total} bytes is too long")
        parts.append(bytes((t, ln)) + data + b"\0" * pad)
    return b"".join(parts)


def _lladdr(options: NdpOptions, kind: int) -> int | None:
    for t, data in options:
        if t == kind and len(data) >= 6:
            return int.from_bytes(data[:6], "big")
    return None


def _without(options: NdpOptions, kind: int) -> NdpOptions:
    return tuple(o for o in options if o[0] != kind)


def _lladdr_option(kind: int, mac: int | None) -> NdpOptions:
    if mac is None:
        return ()
    if not 0 <= mac <= MAC_MASK:
        raise ValueError("MACs are 48-bit unsigned ints")
    return ((kind, mac.to_bytes(6, "big")),)


@dataclass(frozen=True, slots=True)
class RouterSolicitation:
    """Type 133 (RFC 4861 §4.1); ``other_options`` keeps any option but the source lladdr."""

    source_lladdr: int | None = None
    other_options: NdpOptions = ()

    def encode(self, src: IPv6Address, dst: IPv6Address) -> bytes:
        opts = _lladdr_option(NDP_OPT_SOURCE_LLADDR, self.source_lladdr) + self.other_options
        msg = _WORD.pack(ICMP6_ROUTER_SOLICITATION, 0, 0, 0) + _encode_ndp_options(opts)
        return _finish6(msg, src, dst)


@dataclass(frozen=True, slots=True)
class RouterAdvertisement:
    """Type 134 (RFC 4861 §4.2), minimal: fixed fields, source lladdr, MTU; prefix
    information and other options are kept raw in ``other_options``."""

    cur_hop_limit: int = 0
    managed: bool = False
    other_config: bool = False
    router_lifetime: int = 0
    reachable_time: int = 0
    retrans_timer: int = 0
    source_lladdr: int | None = None
    mtu: int | None = None
    other_options: NdpOptions = ()

    def __post_init__(self) -> None:
        _check(self.cur_hop_limit, 8, "hop limit")
        _check(self.router_lifetime, 16, "router lifetime")
        _check(self.reachable_time, 32, "reachable time")
        _check(self.retrans_timer, 32, "retrans timer")
        if self.mtu is not None:
            _check(self.mtu, 32, "MTU")

    def encode(self, src: IPv6Address, dst: IPv6Address) -> bytes:
        opts = _lladdr_option(NDP_OPT_SOURCE_LLADDR, self.source_lladdr)
        if self.mtu is not None:
            opts += ((NDP_OPT_MTU, b"\0\0" + self.mtu.to_bytes(4, "big")),)
        flags = (_RA_MANAGED if self.managed else 0) | (_RA_OTHER if self.other_config else 0)
        msg = _RA.pack(
            ICMP6_ROUTER_ADVERTISEMENT,
            0,
            0,
            self.cur_hop_limit,
            flags,
            self.router_lifetime,
            self.reachable_time,
            self.retrans_timer,
        )
        return _finish6(msg + _encode_ndp_options(opts + self.other_options), src, dst)


@dataclass(frozen=True, slots=True)
class NeighborSolicitation:
    """Type 135 (RFC 4861 §4.3): who has ``target``; sender's MAC in ``source_lladdr``."""

    target: IPv6Address
    source_lladdr: int | None = None
    other_options: NdpOptions = ()

    def encode(self, src: IPv6Address, dst: IPv6Address) -> bytes:
        opts = _lladdr_option(NDP_OPT_SOURCE_LLADDR, self.source_lladdr) + self.other_options
        msg = _WORD.pack(ICMP6_NEIGHBOR_SOLICITATION, 0, 0, 0) + self.target.packed
        return _finish6(msg + _encode_ndp_options(opts), src, dst)


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement:
    """Type 136 (RFC 4861 §4.4): ``target`` is at ``target_lladdr``."""

    target: IPv6Address
    target_lladdr: int | None = None
    router: bool = False
    solicited: bool = False
    override: bool = False
    other_options: NdpOptions = ()

    def encode(self, src: IPv6Address, dst: IPv6Address) -> bytes:
        flags = (
            (_NA_FLAGS_ROUTER if self.router else 0)
            | (_NA_FLAGS_SOLICITED if self.solicited else 0)
            | (_NA_FLAGS_OVERRIDE if self.override else 0)
        )
        opts = _lladdr_option(NDP_OPT_TARGET_LLADDR, self.target_lladdr) + self.other_options
        msg = _WORD.pack(ICMP6_NEIGHBOR_ADVERTISEMENT, 0, 0, flags) + self.target.packed
        return _finish6(msg + _encode_ndp_options(opts), src, dst)


Icmp6Message = (
    Icmp6Echo
    | Icmp6DestinationUnreachable
    | Icmp6PacketTooBig
    | Icmp6TimeExceeded
    | RouterSolicitation
    | RouterAdvertisement
    | NeighborSolicitation
    | NeighborAdvertisement
    | Icmp6Other
)


def decode_icmp6(
    data: Buf, src: IPv6Address, dst: IPv6Address, *, verify_checksum: bool = True
) -> Icmp6Message:
    """Decode an ICMPv6 message (the upper-layer payload), checking the pseudo-header sum."""
    mv = _mv(data)
    n = len(mv)
    if n < ICMP_HEADER_LEN:
        raise DecodeError(f"ICMPv6 message of {n} bytes is shorter than 8")
    if (
        verify_checksum
        and ones_sum(mv, pseudo_header_sum_v6(src.packed, dst.packed, NH_ICMPV6, n)) != 0xFFFF
    ):
        raise DecodeError("ICMPv6 checksum mismatch")
    t, code, _ck, word = _WORD.unpack_from(mv, 0)
    if t in (ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY):
        if code != 0:
            raise DecodeError(f"ICMPv6 echo with code {code}")
        return Icmp6Echo(word >> 16, word & 0xFFFF, mv[8:].tobytes(), t == ICMP6_ECHO_REPLY)
    if t == ICMP6_DEST_UNREACHABLE:
        return Icmp6DestinationUnreachable(code, mv[8:].tobytes())
    if t == ICMP6_PACKET_TOO_BIG:
        return Icmp6PacketTooBig(word, mv[8:].tobytes())
    if t == ICMP6_TIME_EXCEEDED:
        return Icmp6TimeExceeded(code, mv[8:].tobytes())
    if ICMP6_ROUTER_SOLICITATION <= t <= ICMP6_NEIGHBOR_ADVERTISEMENT:
        if code != 0:
            raise DecodeError(f"NDP message {t} with code {code}")
        return _decode_ndp(t, word, mv)
    return Icmp6Other(t, code, word, mv[8:].tobytes())


def _decode_ndp(t: int, word: int, mv: memoryview) -> Icmp6Message:
    n = len(mv)
    if t == ICMP6_ROUTER_SOLICITATION:
        opts = _parse_ndp_options(mv[8:])
        return RouterSolicitation(
            _lladdr(opts, NDP_OPT_SOURCE_LLADDR), _without(opts, NDP_OPT_SOURCE_LLADDR)
        )
    if t == ICMP6_ROUTER_ADVERTISEMENT:
        if n < 16:
            raise DecodeError("truncated router advertisement")
        _t, _c, _ck, hop, flags, lifetime, reach, retrans = _RA.unpack_from(mv, 0)
        opts = _parse_ndp_options(mv[16:])
        mtu = next((int.from_bytes(d[2:6], "big") for k, d in opts if k == NDP_OPT_MTU), None)
        return RouterAdvertisement(
            hop,
            bool(flags & _RA_MANAGED),
            bool(flags & _RA_OTHER),
            lifetime,
            reach,
            retrans,
            _lladdr(opts, NDP_OPT_SOURCE_LLADDR),
            mtu,
            tuple(o for o in opts if o[0] not in (NDP_OPT_SOURCE_LLADDR, NDP_OPT_MTU)),
        )
    if n < 24:
        raise DecodeError(f"truncated neighbor discovery message {t}")
    target = IPv6Address(mv[8:24].tobytes())
    if target.is_multicast:
        raise DecodeError(f"NDP target {target} is multicast")
    opts = _parse_ndp_options(mv[24:])
    if t == ICMP6_NEIGHBOR_SOLICITATION:
        return NeighborSolicitation(
            target, _lladdr(opts, NDP_OPT_SOURCE_LLADDR), _without(opts, NDP_OPT_SOURCE_LLADDR)
        )
    return NeighborAdvertisement(
        target,
        _lladdr(opts, NDP_OPT_TARGET_LLADDR),
        bool(word & _NA_FLAGS_ROUTER),
        bool(word & _NA_FLAGS_SOLICITED),
        bool(word & _NA_FLAGS_OVERRIDE),
        _without(opts, NDP_OPT_TARGET_LLADDR),
    )


__all__ = [
    "ICMP4_CODE_FRAGMENTATION_NEEDED",
    "ICMP4_CODE_HOST_UNREACHABLE",
    "ICMP4_CODE_NET_UNREACHABLE",
    "ICMP4_CODE_PORT_UNREACHABLE",
    "ICMP4_CODE_PROTOCOL_UNREACHABLE",
    "ICMP4_CODE_REASSEMBLY_TIME_EXCEEDED",
    "ICMP4_CODE_TTL_EXCEEDED",
    "ICMP4_DEST_UNREACHABLE",
    "ICMP4_ECHO_REPLY",
    "ICMP4_ECHO_REQUEST",
    "ICMP4_MAX_QUOTE",
    "ICMP4_TIME_EXCEEDED",
    "ICMP6_CODE_ADDRESS_UNREACHABLE",
    "ICMP6_CODE_ADMIN_PROHIBITED",
    "ICMP6_CODE_HOP_LIMIT_EXCEEDED",
    "ICMP6_CODE_NO_ROUTE",
    "ICMP6_CODE_PORT_UNREACHABLE",
    "ICMP6_CODE_REASSEMBLY_TIME_EXCEEDED",
    "ICMP6_DEST_UNREACHABLE",
    "ICMP6_ECHO_REPLY",
    "ICMP6_ECHO_REQUEST",
    "ICMP6_MAX_QUOTE",
    "ICMP6_NEIGHBOR_ADVERTISEMENT",
    "ICMP6_NEIGHBOR_SOLICITATION",
    "ICMP6_PACKET_TOO_BIG",
    "ICMP6_PARAMETER_PROBLEM",
    "ICMP6_ROUTER_ADVERTISEMENT",
    "ICMP6_ROUTER_SOLICITATION",
    "ICMP6_TIME_EXCEEDED",
    "ICMP_HEADER_LEN",
    "NDP_OPT_MTU",
    "NDP_OPT_PREFIX_INFO",
    "NDP_OPT_SOURCE_LLADDR",
    "NDP_OPT_TARGET_LLADDR",
    "Icmp4DestinationUnreachable",
    "Icmp4Echo",
    "Icmp4Message",
    "Icmp4Other",
    "Icmp4TimeExceeded",
    "Icmp6DestinationUnreachable",
    "Icmp6Echo",
    "Icmp6Message",
    "Icmp6Other",
    "Icmp6PacketTooBig",
    "Icmp6TimeExceeded",
    "NdpOptions",
    "NeighborAdvertisement",
    "NeighborSolicitation",
    "RouterAdvertisement",
    "RouterSolicitation",
    "decode_icmp4",
    "decode_icmp6",
    "quote_ipv4",
    "quote_ipv6",
]
