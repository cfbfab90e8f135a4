"""IPv4 (RFC 791): header with options, fragmentation and bounded reassembly.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version|  IHL  |Type of Service|          Total Length         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Identification        |Flags|      Fragment Offset    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Time to Live |    Protocol   |         Header Checksum       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                       Source Address                          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Destination Address                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Options                    |    Padding    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The header is a frozen dataclass without ``total_length`` and ``checksum``: those are derived
on :meth:`IPv4Header.encode` and checked on :meth:`IPv4Header.parse`, so a decoded header
re-encodes to the same bytes and nobody can build one with a stale length. Options are kept
as raw, padded bytes (validated as TLVs on decode, since fragmentation must read their
"copied" bit). ``fragment_offset`` is in bytes (a multiple of 8), not 8-byte units.

Bytes after ``total_length`` (Ethernet padding) are ignored by :meth:`IPv4Header.parse`; a
set reserved flag bit (RFC 791 "must be zero", the RFC 3514 "evil bit") is a
:class:`~ztnode.errors.DecodeError`, as is a bad header checksum unless the caller opts out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Final, final

from ztnode.errors import DecodeError
from ztnode.netstack._codec import trusted_constructor
from ztnode.netstack._reassembly import Reassembler
from ztnode.netstack.checksum import internet_checksum, ones_sum
from ztnode.netstack.ipproto import PROTO_ICMP, PROTO_TCP, PROTO_UDP

Buf = bytes | bytearray | memoryview

IPV4_HEADER_LEN: Final = 20
IPV4_MAX_HEADER_LEN: Final = 60
IPV4_MAX_LEN: Final = 65535
# RFC 791: every link must carry a 68-byte datagram unfragmented.
IPV4_MIN_MTU: Final = 68

_HDR: Final = struct.Struct(">BBHHHBBH4s4s")
_FLAG_DF: Final = 0x4000
_FLAG_MF: Final = 0x2000
_FLAG_RESERVED: Final = 0x8000
_OFFSET_MASK: Final = 0x1FFF
_OPT_EOL: Final = 0
_OPT_NOP: Final = 1
_OPT_COPIED: Final = 0x80


def iter_options(options: Buf) -> list[tuple[int, bytes]]:
    """Split IPv4 options into ``(type, whole option bytes)``; stops at End of Option List.

    Raises :class:`DecodeError` on a truncated option or a length byte below 2.
    """
    out: list[tuple[int, bytes]] = []
    mv = memoryview(options)
    i, n = 0, len(mv)
    while i < n:
        t = mv[i]
        if t == _OPT_EOL:
            break
        if t == _OPT_NOP:
            out.append((t, b"\x01"))
            i += 1
            continue
        if i + 1 >= n:
            raise DecodeError(f"IPv4 option {t} truncated before its length")
        ln = mv[i + 1]
        if ln < 2 or i + ln > n:
            raise DecodeError(f"IPv4 option {t} has bad length {ln}")
        out.append((t, mv[i : i + ln].tobytes()))
        i += ln
    return out


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) & 3)


@final
@dataclass(frozen=True, slots=True)
class IPv4Header:
    """An IPv4 header; see the module docstring for what is derived rather than stored."""

    src: IPv4Address
    dst: IPv4Address
    protocol: int
    ttl: int = 64
    tos: int = 0
    identification: int = 0
    dont_fragment: bool = False
    more_fragments: bool = False
    fragment_offset: int = 0
    options: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.protocol <= 255 or not 0 <= self.ttl <= 255 or not 0 <= self.tos <= 255:
            raise ValueError("protocol, ttl and tos are bytes")
        if not 0 <= self.identification <= 0xFFFF:
            raise ValueError(f"identification {self.identification} is not 16 bits")
        if self.fragment_offset & 7 or not 0 <= self.fragment_offset <= _OFFSET_MASK << 3:
            raise ValueError(f"fragment offset {self.fragment_offset} is not a 13-bit 8s count")
        if len(self.options) & 3 or len(self.options) > 40:
            raise ValueError("options must be padded to a multiple of 4 bytes, at most 40")

    @property
    def header_length(self) -> int:
        return IPV4_HEADER_LEN + len(self.options)

    @property
    def is_fragment(self) -> bool:
        """Part of a larger datagram (MF set or a non-zero offset)."""
        return self.more_fragments or self.fragment_offset != 0

    @property
    def dscp(self) -> int:
        return self.tos >> 2

    @property
    def ecn(self) -> int:
        return self.tos & 3

    @classmethod
    def parse(cls, data: Buf, *, verify_checksum: bool = True) -> tuple[IPv4Header, memoryview]:
        """Decode a datagram into its header and a view of the payload (``total_length`` cut)."""
        mv = data if isinstance(data, memoryview) else memoryview(data)
        n = len(mv)
        if n < IPV4_HEADER_LEN:
            raise DecodeError(f"IPv4 datagram of {n} bytes is shorter than its header")
        vihl, tos, total, ident, ff, ttl, proto, _ck, src, dst = _HDR.unpack_from(mv, 0)
        if vihl >> 4 != 4:
            raise DecodeError(f"IP version {vihl >> 4} in an IPv4 header")
        hlen = (vihl & 0xF) << 2
        if hlen < IPV4_HEADER_LEN:
            raise DecodeError(f"IPv4 IHL {hlen >> 2} below 5")
        if hlen > total or total > n:
            raise DecodeError(f"IPv4 total length {total} inconsistent (IHL {hlen}, have {n})")
        if verify_checksum and ones_sum(mv[:hlen]) != 0xFFFF:
            raise DecodeError("IPv4 header checksum mismatch")
        if ff & _FLAG_RESERVED:
            raise DecodeError("IPv4 reserved flag bit set")
        options = b""
        if hlen > IPV4_HEADER_LEN:
            options = mv[IPV4_HEADER_LEN:hlen].tobytes()
            iter_options(options)
        hdr = _make_ipv4(
            IPv4Address(src),
            IPv4Address(dst),
            proto,
            ttl,
            tos,
            ident,
            bool(ff & _FLAG_DF),
            bool(ff & _FLAG_MF),
            (ff & _OFFSET_MASK) << 3,
            options,
        )
        return hdr, mv[hlen:total]

    @classmethod
    def decode(cls, data: Buf, *, verify_checksum: bool = True) -> IPv4Header:
        return cls.parse(data, verify_checksum=verify_checksum)[0]

    def encode(self, payload: Buf = b"") -> bytes:
        """Header (with length and checksum computed) followed by ``payload``."""
        hlen = IPV4_HEADER_LEN + len(self.options)
        total = hlen + len(payload)
        if total > IPV4_MAX_LEN:
            raise ValueError(f"IPv4 datagram of {total} bytes exceeds 65535")
        ff = (
            (_FLAG_DF if self.dont_fragment else 0)
            | (_FLAG_MF if self.more_fragments else 0)
            | (self.fragment_offset >> 3)
        )
        hdr = bytearray(
            _HDR.pack(
                0x40 | (hlen >> 2),
                self.tos,
                total,
                self.identification,
                ff,
                self.ttl,
                self.protocol,
                0,
                self.src.packed,
                self.dst.packed,
            )
        )
        hdr += self.options
        struct.pack_into(">H", hdr, 10, internet_checksum(hdr))
        hdr += payload
        return bytes(hdr)


_make_ipv4 = trusted_constructor(IPv4Header)


def fragment(header: IPv4Header, payload: Buf, mtu: int) -> list[bytes]:
    """Split a datagram into encoded fragments of at most ``mtu`` bytes (RFC 791 §3.2).

    The first fragment carries every option, the others only those with the "copied" flag.
    A header that is itself a fragment is split further, keeping its offset and MF. Raises
    ``ValueError`` if the datagram needs fragmenting but has DF set (the caller answers with
    ICMP "fragmentation needed") or the MTU cannot carry 8 bytes of data.
    """
    if header.header_length + len(payload) <= mtu:
        return [header.encode(payload)]
    if header.dont_fragment:
        raise ValueError(f"datagram of {header.header_length + len(payload)} bytes > MTU {mtu}, DF")
    later_opts = _pad4(b"".join(o for t, o in iter_options(header.options) if t & _OPT_COPIED))
    mv = memoryview(payload)
    out: list[bytes] = []
    pos = 0
    n = len(mv)
    while pos < n:
        h = header if pos == 0 else replace(header, options=later_opts)
        room = (mtu - h.header_length) & ~7
        if room <= 0:
            raise ValueError(f"MTU {mtu} cannot carry an 8-byte fragment")
        end = min(pos + room, n)
        last = end == n
        out.append(
            replace(
                h,
                fragment_offset=header.fragment_offset + pos,
                more_fragments=header.more_fragments or not last,
            ).encode(mv[pos:end])
        )
        pos = end
    return out


class IPv4Reassembler:
    """Bounded reassembly of IPv4 fragments keyed by (src, dst, protocol, id) (RFC 791).

    See :mod:`ztnode.netstack._reassembly` for the overlap, memory and timeout rules. RFC 1122
    §3.3.2 suggests a 60-120 s timeout; 30 s (Linux ``ipfrag_time``) is the default here.
    """

    def __init__(
        self,
        *,
        max_datagrams: int = 64,
        max_bytes: int = 1 << 20,
        timeout_ms: int = 30_000,
        max_fragments: int = 256,
    ) -> None:
        self.engine: Reassembler[tuple[int, int, int, int], IPv4Header] = Reassembler(
            max_datagrams=max_datagrams,
            max_bytes=max_bytes,
            timeout_ms=timeout_ms,
            max_fragments=max_fragments,
            max_size=IPV4_MAX_LEN - IPV4_HEADER_LEN,
        )

    def push(self, header: IPv4Header, payload: Buf, now: int) -> tuple[IPv4Header, bytes] | None:
        """Feed one datagram; returns the whole datagram's header and payload when complete.

        A datagram that is not a fragment is returned at once. The returned header is the
        first fragment's with MF cleared and offset 0.
        """
        if not header.is_fragment:
            return header, bytes(payload)
        key = (int(header.src), int(header.dst), header.protocol, header.identification)
        off = header.fragment_offset
        if off + len(payload) > IPV4_MAX_LEN - header.header_length:
            raise DecodeError("IPv4 fragment reaches past 65535 bytes")
        r = self.engine.add(
            key,
            off,
            bytes(payload),
            header.more_fragments,
            now,
            replace(header, more_fragments=False, fragment_offset=0) if off == 0 else None,
        )
        return r

    def expire(self, now: int) -> int:
        """Drop timed-out datagrams; returns how many."""
        return self.engine.expire(now)

    def __len__(self) -> int:
        return len(self.engine)


__all__ = [
    "IPV4_HEADER_LEN",
    "IPV4_MAX_HEADER_LEN",
    "IPV4_MAX_LEN",
    "IPV4_MIN_MTU",
    "PROTO_ICMP",
    "PROTO_TCP",
    "PROTO_UDP",
    "IPv4Header",
    "IPv4Reassembler",
    "fragment",
    "iter_options",
]
