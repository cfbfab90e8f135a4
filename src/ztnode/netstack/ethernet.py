"""Ethernet II framing (IEEE 802.3 / RFC 894 style), 14-byte header, no FCS.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  Destination MAC (6 bytes)                    |
    +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                               |                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
    |                    Source MAC (6 bytes)                       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           EtherType           |  payload ...
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

ZeroTier virtual ports are untagged: FRAME/EXT_FRAME carry one ethertype and no 802.1Q tag,
and the reference tap drops tagged traffic it cannot map. So a VLAN tag (0x8100 or 0x88A8)
is rejected with :class:`~ztnode.errors.DecodeError` rather than skipped; skipping would let a
tagged frame from a bridge reach a stack that has no notion of VLANs. A value below 0x0600 is an
802.3 length field (LLC/SNAP), which this stack does not speak, and is rejected too.

MACs are ints (48 bits, first octet most significant) as in :mod:`ztnode.wire.mac`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Self

from ztnode.errors import DecodeError
from ztnode.wire.mac import MAC_MASK, mac_to_str

Buf = bytes | bytearray | memoryview

ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_ARP: Final = 0x0806
ETHERTYPE_IPV6: Final = 0x86DD
ETHERTYPE_VLAN: Final = 0x8100
ETHERTYPE_QINQ: Final = 0x88A8
ETHERNET_HEADER_LEN: Final = 14
_MIN_ETHERTYPE: Final = 0x0600

# Two 48-bit MACs as a u16 + u32 pair each, then the ethertype.
_HDR: Final = struct.Struct(">HIHIH")


@dataclass(frozen=True, slots=True)
class EthernetHeader:
    """The 14-byte Ethernet II header."""

    dst: int
    src: int
    ethertype: int

    def __post_init__(self) -> None:
        if not 0 <= self.dst <= MAC_MASK or not 0 <= self.src <= MAC_MASK:
            raise ValueError("MACs are 48-bit unsigned ints")
        if not 0 <= self.ethertype <= 0xFFFF:
            raise ValueError(f"ethertype {self.ethertype:#x} is not 16 bits")

    @classmethod
    def parse(cls, data: Buf) -> tuple[Self, memoryview]:
        """Split a frame into its header and a zero-copy view of the payload."""
        mv = data if isinstance(data, memoryview) else memoryview(data)
        if len(mv) < ETHERNET_HEADER_LEN:
            raise DecodeError(f"Ethernet frame of {len(mv)} bytes is shorter than its header")
        dh, dl, sh, sl, et = _HDR.unpack_from(mv, 0)
        if et in (ETHERTYPE_VLAN, ETHERTYPE_QINQ):
            raise DecodeError(f"VLAN-tagged frame (TPID {et:#06x}) on an untagged port")
        if et < _MIN_ETHERTYPE:
            raise DecodeError(f"802.3 length field {et} instead of an EtherType")
        return cls((dh << 32) | dl, (sh << 32) | sl, et), mv[ETHERNET_HEADER_LEN:]

    @classmethod
    def decode(cls, data: Buf) -> Self:
        """The header alone (payload ignored)."""
        return cls.parse(data)[0]

    def encode(self, payload: Buf = b"") -> bytes:
        """Header followed by ``payload`` (no padding to 60 bytes: ZeroTier does not need it)."""
        return (
            _HDR.pack(
                self.dst >> 32,
                self.dst & 0xFFFFFFFF,
                self.src >> 32,
                self.src & 0xFFFFFFFF,
                self.ethertype,
            )
            + payload
        )

    def __str__(self) -> str:
        return f"{mac_to_str(self.src)} > {mac_to_str(self.dst)} type {self.ethertype:#06x}"


__all__ = [
    "ETHERNET_HEADER_LEN",
    "ETHERTYPE_ARP",
    "ETHERTYPE_IPV4",
    "ETHERTYPE_IPV6",
    "ETHERTYPE_QINQ",
    "ETHERTYPE_VLAN",
    "EthernetHeader",
]
