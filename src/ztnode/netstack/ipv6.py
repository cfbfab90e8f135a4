"""IPv6 (RFC 8200): fixed header, extension-header walking, fragmentation and reassembly.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version| Traffic Class |           Flow Label                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Payload Length        |  Next Header  |   Hop Limit   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  Source Address (128 bits)                    |
    |               Destination Address (128 bits)                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Fragment header (RFC 8200 §4.5)::

    |  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
    |                         Identification                        |

As in :mod:`ztnode.netstack.ipv4`, ``payload_length`` is derived, not stored, and
``offset`` is in bytes. Our own fragments carry no unfragmentable extension headers (the
stack never sends hop-by-hop or routing headers), so :func:`fragment` puts the fragment
header right after the fixed header. On reassembly, extension headers before the fragment
header are dropped: the stack has processed them already, and only the upper layer matters.
RFC 4193 / 6plane address helpers live in :mod:`ztnode.core.network`.

Not enforced here: RFC 7112 (the first fragment must hold the whole header chain up to the
upper-layer header) needs the upper-layer header length, so it is the caller's check after
reassembly or on the first fragment's :class:`ExtensionChain`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Final, Self, final

from ztnode.errors import DecodeError
from ztnode.netstack._codec import trusted_constructor
from ztnode.netstack._reassembly import Reassembler
from ztnode.netstack.ipproto import (
    NH_AH,
    NH_DESTINATION_OPTIONS,
    NH_ESP,
    NH_FRAGMENT,
    NH_HOP_BY_HOP,
    NH_ICMPV6,
    NH_NONE,
    NH_ROUTING,
    NH_TCP,
    NH_UDP,
)

Buf = bytes | bytearray | memoryview

IPV6_HEADER_LEN: Final = 40
FRAGMENT_HEADER_LEN: Final = 8
IPV6_MIN_MTU: Final = 1280
# Hard bound on extension headers walked per packet, so a chain of tiny headers costs O(1).
MAX_EXTENSION_HEADERS: Final = 8

_HDR: Final = struct.Struct(">IHBB16s16s")
_FRAG: Final = struct.Struct(">BBHI")
# Headers sharing the generic (next header, length in 8-octet units beyond the first) layout.
_GENERIC_EXT: Final = frozenset({NH_HOP_BY_HOP, NH_ROUTING, NH_DESTINATION_OPTIONS})


@final
@dataclass(frozen=True, slots=True)
class IPv6Header:
    """The fixed 40-byte IPv6 header (``payload_length`` derived on encode)."""

    src: IPv6Address
    dst: IPv6Address
    next_header: int
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.next_header <= 255 or not 0 <= self.hop_limit <= 255:
            raise ValueError("next header and hop limit are bytes")
        if not 0 <= self.traffic_class <= 255 or not 0 <= self.flow_label <= 0xFFFFF:
            raise ValueError("traffic class is 8 bits, flow label 20")

    @classmethod
    def parse(cls, data: Buf) -> tuple[IPv6Header, memoryview]:
        """Decode the fixed header and return a view of its payload (``payload_length`` cut).

        A zero payload length with a hop-by-hop header would be a jumbogram (RFC 2675),
        which a ZeroTier MTU can never need; it is simply an empty payload here.
        """
        mv = data if isinstance(data, memoryview) else memoryview(data)
        n = len(mv)
        if n < IPV6_HEADER_LEN:
            raise DecodeError(f"IPv6 packet of {n} bytes is shorter than its header")
        vtf, plen, nh, hl, src, dst = _HDR.unpack_from(mv, 0)
        if vtf >> 28 != 6:
            raise DecodeError(f"IP version {vtf >> 28} in an IPv6 header")
        if IPV6_HEADER_LEN + plen > n:
            raise DecodeError(f"IPv6 payload length {plen} exceeds the {n - 40} bytes present")
        hdr = _make_ipv6(
            IPv6Address(src), IPv6Address(dst), nh, hl, (vtf >> 20) & 0xFF, vtf & 0xFFFFF
        )
        return hdr, mv[IPV6_HEADER_LEN : IPV6_HEADER_LEN + plen]

    @classmethod
    def decode(cls, data: Buf) -> IPv6Header:
        return cls.parse(data)[0]

    def encode(self, payload: Buf = b"") -> bytes:
        """The fixed header followed by ``payload`` (everything after the fixed header)."""
        if len(payload) > 0xFFFF:
            raise ValueError(f"IPv6 payload of {len(payload)} bytes needs a jumbogram")
        vtf = 0x60000000 | (self.traffic_class << 20) | self.flow_label
        return (
            _HDR.pack(
                vtf,
                len(payload),
                self.next_header,
                self.hop_limit,
                self.src.packed,
                self.dst.packed,
            )
            + payload
        )


_make_ipv6 = trusted_constructor(IPv6Header)


@dataclass(frozen=True, slots=True)
class FragmentHeader:
    """The IPv6 Fragment extension header; ``offset`` in bytes (multiple of 8)."""

    next_header: int
    offset: int
    more: bool
    identification: int

    def __post_init__(self) -> None:
        if not 0 <= self.next_header <= 255 or not 0 <= self.identification <= 0xFFFFFFFF:
            raise ValueError("next header is a byte, identification 32 bits")
        if self.offset & 7 or not 0 <= self.offset <= 0xFFF8:
            raise ValueError(f"fragment offset {self.offset} is not a 13-bit 8s count")

    @property
    def is_atomic(self) -> bool:
        """Offset 0 and no more fragments: a whole packet with a fragment header (RFC 6946)."""
        return self.offset == 0 and not self.more

    @classmethod
    def decode(cls, data: Buf) -> Self:
        if len(data) < FRAGMENT_HEADER_LEN:
            raise DecodeError("truncated IPv6 fragment header")
        nh, _res, om, ident = _FRAG.unpack_from(data, 0)
        return cls(nh, om & 0xFFF8, bool(om & 1), ident)

    def encode(self) -> bytes:
        return _FRAG.pack(self.next_header, 0, self.offset | int(self.more), self.identification)


@dataclass(frozen=True, slots=True)
class ExtensionChain:
    """Result of walking the extension headers of one packet.

    ``upper_protocol`` is the first next-header value that is not a known extension header
    (TCP, UDP, ICMPv6, No Next Header, or anything unknown: the caller decides) and
    ``upper_offset`` where its data starts within the payload. ``headers`` lists the
    ``(type, raw bytes)`` of each extension header walked, ``fragment`` the fragment header
    if one was met, and ``fragment_offset`` where the fragmentable data after it begins.
    """

    upper_protocol: int
    upper_offset: int
    headers: tuple[tuple[int, bytes], ...]
    fragment: FragmentHeader | None
    fragment_offset: int


def walk_extension_headers(next_header: int, payload: Buf) -> ExtensionChain:
    """Walk hop-by-hop, routing, destination-options and fragment headers (RFC 8200 §4).

    Stops at the first upper-layer header, or right after a fragment header that is not the
    first fragment (offset > 0: what follows is the middle of a datagram, not a header).
    Hop-by-hop anywhere but first, more than :data:`MAX_EXTENSION_HEADERS` headers, ESP/AH
    (not supported, treated as upper layers), or truncation raise :class:`DecodeError`.
    """
    mv = payload if isinstance(payload, memoryview) else memoryview(payload)
    n = len(mv)
    pos = 0
    nh = next_header
    headers: list[tuple[int, bytes]] = []
    frag: FragmentHeader | None = None
    frag_pos = -1
    while True:
        if nh in _GENERIC_EXT:
            if nh == NH_HOP_BY_HOP and pos != 0:
                raise DecodeError("IPv6 hop-by-hop header not first")
            if pos + 2 > n:
                raise DecodeError(f"truncated IPv6 extension header {nh}")
            ln = (mv[pos + 1] + 1) << 3
            if pos + ln > n:
                raise DecodeError(f"IPv6 extension header {nh} of {ln} bytes is truncated")
            headers.append((nh, mv[pos : pos + ln].tobytes()))
            nxt = mv[pos]
            pos += ln
        elif nh == NH_FRAGMENT:
            if frag is not None:
                raise DecodeError("two IPv6 fragment headers")
            frag = FragmentHeader.decode(mv[pos:])
            headers.append((nh, mv[pos : pos + FRAGMENT_HEADER_LEN].tobytes()))
            nxt = frag.next_header
            pos += FRAGMENT_HEADER_LEN
            frag_pos = pos
            if frag.offset:
                return ExtensionChain(nxt, pos, tuple(headers), frag, frag_pos)
        else:
            return ExtensionChain(nh, pos, tuple(headers), frag, frag_pos)
        nh = nxt
        if len(headers) > MAX_EXTENSION_HEADERS:
            raise DecodeError(f"more than {MAX_EXTENSION_HEADERS} IPv6 extension headers")


def fragment(header: IPv6Header, payload: Buf, mtu: int, identification: int) -> list[bytes]:
    """Split a packet into encoded fragments of at most ``mtu`` bytes (RFC 8200 §4.5).

    ``header.next_header`` is the protocol of ``payload`` (no unfragmentable extension
    headers). A packet that fits is returned whole, without a fragment header (RFC 8200 no
    longer allows atomic fragments to be generated, RFC 8021). ``ValueError`` if ``mtu`` is
    below 1280 (IPv6 links must carry 1280 bytes, §5).
    """
    if IPV6_HEADER_LEN + len(payload) <= mtu:
        return [header.encode(payload)]
    if mtu < IPV6_MIN_MTU:
        raise ValueError(f"IPv6 MTU {mtu} below the 1280-byte minimum")
    room = (mtu - IPV6_HEADER_LEN - FRAGMENT_HEADER_LEN) & ~7
    mv = memoryview(payload)
    n = len(mv)
    if n > 0xFFF8 + room:
        raise ValueError(f"payload of {n} bytes cannot be fragmented (offset overflow)")
    fh = IPv6Header(
        header.src,
        header.dst,
        NH_FRAGMENT,
        header.hop_limit,
        header.traffic_class,
        header.flow_label,
    )
    out: list[bytes] = []
    pos = 0
    while pos < n:
        end = min(pos + room, n)
        f = FragmentHeader(header.next_header, pos, end < n, identification)
        out.append(fh.encode(f.encode() + mv[pos:end]))
        pos = end
    return out


class IPv6Reassembler:
    """Bounded reassembly keyed by (src, dst, identification) (RFC 8200 §4.5).

    Overlaps discard the datagram (RFC 5722); see :mod:`ztnode.netstack._reassembly`. The
    default timeout is RFC 8200's 60 s.
    """

    def __init__(
        self,
        *,
        max_datagrams: int = 64,
        max_bytes: int = 1 << 20,
        timeout_ms: int = 60_000,
        max_fragments: int = 256,
    ) -> None:
        self.engine: Reassembler[tuple[int, int, int], tuple[IPv6Header, int]] = Reassembler(
            max_datagrams=max_datagrams,
            max_bytes=max_bytes,
            timeout_ms=timeout_ms,
            max_fragments=max_fragments,
            max_size=0xFFFF,
        )

    def push(
        self, header: IPv6Header, frag: FragmentHeader, data: Buf, now: int
    ) -> tuple[IPv6Header, int, bytes] | None:
        """Feed one fragment (``data`` = the bytes after its fragment header).

        Returns ``(header, next_header, payload)`` once whole, where ``next_header`` is the
        first fragment's and ``payload`` the reassembled fragmentable part. Atomic fragments
        are returned at once and never mix with a reassembly of the same id (RFC 6946).
        """
        if frag.is_atomic:
            return header, frag.next_header, bytes(data)
        key = (int(header.src), int(header.dst), frag.identification)
        r = self.engine.add(
            key,
            frag.offset,
            bytes(data),
            frag.more,
            now,
            (header, frag.next_header) if frag.offset == 0 else None,
        )
        if r is None:
            return None
        (h, nh), payload = r
        return h, nh, payload

    def expire(self, now: int) -> int:
        return self.engine.expire(now)

    def __len__(self) -> int:
        return len(self.engine)


__all__ = [
    "FRAGMENT_HEADER_LEN",
    "IPV6_HEADER_LEN",
    "IPV6_MIN_MTU",
    "MAX_EXTENSION_HEADERS",
    "NH_AH",
    "NH_DESTINATION_OPTIONS",
    "NH_ESP",
    "NH_FRAGMENT",
    "NH_HOP_BY_HOP",
    "NH_ICMPV6",
    "NH_NONE",
    "NH_ROUTING",
    "NH_TCP",
    "NH_UDP",
    "ExtensionChain",
    "FragmentHeader",
    "IPv6Header",
    "IPv6Reassembler",
    "fragment",
]
