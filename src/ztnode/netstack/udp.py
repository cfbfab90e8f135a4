"""UDP (RFC 768) header codec with pseudo-header checksums.

::

     0      7 8     15 16    23 24    31
    +--------+--------+--------+--------+
    |     Source      |   Destination   |
    |      Port       |      Port       |
    +--------+--------+--------+--------+
    |     Length      |    Checksum     |
    +--------+--------+--------+--------+

A zero checksum means "none" and is accepted over IPv4 (RFC 768) but rejected over IPv6,
where it is mandatory (RFC 8200 §8.1; the RFC 6935 tunnel exception does not apply to a host
stack). A computed checksum of zero is sent as 0xFFFF. The length field must cover the header
and fit in the IP payload; bytes beyond it are ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final, Self

from ztnode.errors import DecodeError
from ztnode.netstack.checksum import internet_checksum, ones_sum, pseudo_header_sum
from ztnode.netstack.ipproto import PROTO_UDP

Buf = bytes | bytearray | memoryview

UDP_HEADER_LEN: Final = 8
_HDR: Final = struct.Struct(">HHHH")


@dataclass(frozen=True, slots=True)
class UdpHeader:
    """Source and destination port; length and checksum are derived/checked, not stored."""

    src_port: int
    dst_port: int

    def __post_init__(self) -> None:
        if not 0 <= self.src_port <= 0xFFFF or not 0 <= self.dst_port <= 0xFFFF:
            raise ValueError("UDP ports are 16 bits")

    @classmethod
    def parse(
        cls,
        data: Buf,
        src: IPv4Address | IPv6Address,
        dst: IPv4Address | IPv6Address,
        *,
        verify_checksum: bool = True,
    ) -> tuple[Self, memoryview]:
        """Decode a datagram (the IP payload); returns the header and a view of the payload."""
        mv = data if isinstance(data, memoryview) else memoryview(data)
        n = len(mv)
        if n < UDP_HEADER_LEN:
            raise DecodeError(f"UDP datagram of {n} bytes is shorter than its header")
        sport, dport, length, ck = _HDR.unpack_from(mv, 0)
        if length < UDP_HEADER_LEN or length > n:
            raise DecodeError(f"UDP length {length} inconsistent with {n} bytes")
        if verify_checksum:
            if ck == 0:
                if isinstance(src, IPv6Address):
                    raise DecodeError("zero UDP checksum over IPv6")
            elif ones_sum(mv[:length], pseudo_header_sum(src, dst, PROTO_UDP, length)) != 0xFFFF:
                raise DecodeError("UDP checksum mismatch")
        return cls(sport, dport), mv[UDP_HEADER_LEN:length]

    @classmethod
    def decode(cls, data: Buf) -> Self:
        """The ports alone, no length or checksum check beyond the header's presence."""
        if len(data) < UDP_HEADER_LEN:
            raise DecodeError("truncated UDP header")
        sport, dport, _l, _c = _HDR.unpack_from(data, 0)
        return cls(sport, dport)

    def encode(
        self,
        payload: Buf,
        src: IPv4Address | IPv6Address,
        dst: IPv4Address | IPv6Address,
    ) -> bytes:
        """Header with length and checksum, followed by ``payload``."""
        length = UDP_HEADER_LEN + len(payload)
        if length > 0xFFFF:
            raise ValueError(f"UDP datagram of {length} bytes exceeds 65535")
        hdr = _HDR.pack(self.src_port, self.dst_port, length, 0)
        ck = internet_checksum(
            payload, ones_sum(hdr, pseudo_header_sum(src, dst, PROTO_UDP, length))
        )
        return _HDR.pack(self.src_port, self.dst_port, length, ck or 0xFFFF) + payload


__all__ = ["PROTO_UDP", "UDP_HEADER_LEN", "UdpHeader"]
