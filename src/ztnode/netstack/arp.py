"""ARP for IPv4 over Ethernet (RFC 826), request and reply only.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     HTYPE = 1 (Ethernet)      |      PTYPE = 0x0800 (IPv4)    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |   HLEN = 6    |   PLEN = 4    |          Operation            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Sender hardware address (6) | Sender protocol address (4)    |
    |  Target hardware address (6) | Target protocol address (4)    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Anything but Ethernet/IPv4 with 6/4 lengths, or an operation other than request (1) or reply
(2), is a :class:`~ztnode.errors.DecodeError`: the stack has nothing to do with RARP or other
hardware types. Bytes after the 28-byte body (Ethernet padding) are ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Final, Self

from ztnode.errors import DecodeError
from ztnode.wire.mac import MAC_MASK

Buf = bytes | bytearray | memoryview

ARP_REQUEST: Final = 1
ARP_REPLY: Final = 2
ARP_LEN: Final = 28
_HTYPE_ETHERNET: Final = 1
_PTYPE_IPV4: Final = 0x0800
_FMT: Final = struct.Struct(">HHBBH6s4s6s4s")


@dataclass(frozen=True, slots=True)
class ArpPacket:
    """An ARP request or reply; MACs are 48-bit ints."""

    op: int
    sender_mac: int
    sender_ip: IPv4Address
    target_mac: int
    target_ip: IPv4Address

    def __post_init__(self) -> None:
        if self.op not in (ARP_REQUEST, ARP_REPLY):
            raise ValueError(f"ARP operation {self.op} is neither request nor reply")
        if not 0 <= self.sender_mac <= MAC_MASK or not 0 <= self.target_mac <= MAC_MASK:
            raise ValueError("MACs are 48-bit unsigned ints")

    @classmethod
    def decode(cls, data: Buf) -> Self:
        if len(data) < ARP_LEN:
            raise DecodeError(f"ARP packet of {len(data)} bytes, need {ARP_LEN}")
        ht, pt, hl, pl, op, sha, spa, tha, tpa = _FMT.unpack_from(data, 0)
        if ht != _HTYPE_ETHERNET or pt != _PTYPE_IPV4 or hl != 6 or pl != 4:
            raise DecodeError(f"ARP for htype {ht} ptype {pt:#x} ({hl}/{pl}) is not Ethernet/IPv4")
        if op not in (ARP_REQUEST, ARP_REPLY):
            raise DecodeError(f"ARP operation {op} is neither request nor reply")
        return cls(
            op,
            int.from_bytes(sha, "big"),
            IPv4Address(spa),
            int.from_bytes(tha, "big"),
            IPv4Address(tpa),
        )

    def encode(self) -> bytes:
        return _FMT.pack(
            _HTYPE_ETHERNET,
            _PTYPE_IPV4,
            6,
            4,
            self.op,
            self.sender_mac.to_bytes(6, "big"),
            self.sender_ip.packed,
            self.target_mac.to_bytes(6, "big"),
            self.target_ip.packed,
        )

    @classmethod
    def request(cls, sender_mac: int, sender_ip: IPv4Address, target_ip: IPv4Address) -> Self:
        """A who-has query; the target MAC is zero (RFC 826: "don't care" in requests)."""
        return cls(ARP_REQUEST, sender_mac, sender_ip, 0, target_ip)

    def reply(self, my_mac: int) -> ArpPacket:
        """The reply to this request from the owner of ``target_ip``, whose MAC is ``my_mac``."""
        return ArpPacket(ARP_REPLY, my_mac, self.target_ip, self.sender_mac, self.sender_ip)

    @property
    def is_gratuitous(self) -> bool:
        """Sender and target IP equal: an announcement (RFC 5227 §3), not a query."""
        return self.sender_ip == self.target_ip


__all__ = ["ARP_LEN", "ARP_REPLY", "ARP_REQUEST", "ArpPacket"]
