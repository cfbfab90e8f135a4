"""Ethernet MACs on ZeroTier networks and the multicast groups built from them.

A ZeroTier node's MAC on a network is a pure function of its 40-bit address and the 64-bit
network id, so any member can turn a destination MAC back into a ZeroTier address without asking
anyone (``node/MAC.hpp:143-181``; fact sheet ``protocol-network.md`` §1.3):

* octet 0 is ``(nwid & 0xfe) | 0x02`` (locally administered, unicast), except that 0x52 becomes
  0x32 because KVM/libvirt claim 0x52;
* octets 1..5 are the address bytes XOR-ed with nwid bytes 1..5 counted from the least
  significant end: octet 1 with bits 8-15, ..., octet 5 with bits 40-47. That is the reverse of
  the address byte order, an easy thing to get wrong.

MACs are plain ``int`` values (48 bits, first octet most significant), as they are on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from ztnode.errors import DecodeError

MAC_MASK: Final = (1 << 48) - 1
ADDRESS_MASK: Final = (1 << 40) - 1
BROADCAST_MAC: Final = 0xFFFF_FFFF_FFFF
_MULTICAST_BIT: Final = 0x01_00_00_00_00_00
_LOCALLY_ADMINISTERED_BIT: Final = 0x02_00_00_00_00_00
# 0x52 is the de-facto libvirt/KVM prefix; the reference substitutes 0x32 (MAC.hpp:177).
_KVM_OCTET: Final = 0x52
_KVM_REPLACEMENT: Final = 0x32
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def first_octet_for_network(nwid: int) -> int:
    """The first MAC octet every member of ``nwid`` uses (``MAC::firstOctetForNetwork``)."""
    a = (nwid & 0xFE) | 0x02
    return _KVM_REPLACEMENT if a == _KVM_OCTET else a


def _nwid_mask(nwid: int) -> int:
    """The 40-bit XOR mask applied to the address: nwid bytes 1..5 in reversed order."""
    return (
        (((nwid >> 8) & 0xFF) << 32)
        | (((nwid >> 16) & 0xFF) << 24)
        | (((nwid >> 24) & 0xFF) << 16)
        | (((nwid >> 32) & 0xFF) << 8)
        | ((nwid >> 40) & 0xFF)
    )


#: Per network: its first octet shifted into place and its address mask. Every data packet
#: maps addresses and MACs two to four times, so these are computed once per network id (a
#: handful per node; bounded anyway, since ids can come from the network).
_PER_NETWORK: Final[dict[int, tuple[int, int]]] = {}
_PER_NETWORK_LIMIT: Final = 1024


def _network_bits(nwid: int) -> tuple[int, int]:
    bits = _PER_NETWORK.get(nwid)
    if bits is None:
        if len(_PER_NETWORK) >= _PER_NETWORK_LIMIT:
            _PER_NETWORK.clear()
        bits = _PER_NETWORK[nwid] = (first_octet_for_network(nwid) << 40, _nwid_mask(nwid))
    return bits


def mac_from_address(address: int, nwid: int) -> int:
    """The MAC of ZeroTier ``address`` on network ``nwid`` (``MAC::fromAddress``)."""
    high, mask = _PER_NETWORK.get(nwid) or _network_bits(nwid)
    return high | ((address & ADDRESS_MASK) ^ mask)


def address_from_mac(mac: int, nwid: int) -> int:
    """The ZeroTier address a MAC stands for on ``nwid`` (``MAC::toAddress``).

    Only meaningful when :func:`is_network_mac` holds; otherwise the MAC is bridged or foreign and
    the result is just the unmasked low 40 bits.
    """
    return (mac & ADDRESS_MASK) ^ (_PER_NETWORK.get(nwid) or _network_bits(nwid))[1]


def is_network_mac(mac: int, nwid: int) -> bool:
    """Whether ``mac`` looks like a member's own MAC: its first octet matches the network's.

    The switch sends FRAME (not EXT_FRAME) exactly when this holds (node/Switch.cpp:571).
    """
    return (mac >> 40) & 0xFF == first_octet_for_network(nwid)


def is_multicast(mac: int) -> bool:
    """Bit 0 of octet 0 set (broadcast included)."""
    return bool(mac & _MULTICAST_BIT)


def is_broadcast(mac: int) -> bool:
    return mac & MAC_MASK == BROADCAST_MAC


def is_locally_administered(mac: int) -> bool:
    return bool(mac & _LOCALLY_ADMINISTERED_BIT)


def mac_to_str(mac: int) -> str:
    """``aa:bb:cc:dd:ee:ff``, lowercase, as the reference's ``MAC::toString`` and JSON API."""
    b = (mac & MAC_MASK).to_bytes(6, "big")
    return ":".join(f"{x:02x}" for x in b)


def mac_from_str(text: str) -> int:
    """Parse ``aa:bb:cc:dd:ee:ff``, ``aa-bb-...`` or 12 bare hex digits.

    Strict, unlike the controller's lenient JSON reader (see :mod:`ztnode.wire.rules`): anything
    but exactly 12 hex digits after removing ``:`` and ``-`` is a :class:`DecodeError`, because a
    mistyped MAC that silently became zero would be a hard bug to find.
    """
    digits = text.strip().replace(":", "").replace("-", "")
    if len(digits) != 12 or not set(digits) <= _HEX_DIGITS:
        raise DecodeError(f"not a MAC address: {text!r}")
    return int(digits, 16)


def mac_to_bytes(mac: int) -> bytes:
    return (mac & MAC_MASK).to_bytes(6, "big")


def mac_from_bytes(b: bytes) -> int:
    if len(b) != 6:
        raise DecodeError(f"a MAC is 6 bytes, not {len(b)}")
    return int.from_bytes(b, "big")


@dataclass(frozen=True, slots=True, order=True)
class MulticastGroup:
    """An Ethernet multicast group: a multicast MAC plus a 32-bit "additional distinguishing
    information" value (``node/MulticastGroup.hpp``).

    The ADI lets IPv4 ARP, which uses the broadcast MAC, still fan out only to the owner of the
    queried IP: the group is (broadcast, IPv4 address). Ordering is by (mac, adi), as the
    reference's ``operator<``.
    """

    mac: int
    adi: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.mac <= MAC_MASK:
            raise ValueError(f"MAC {self.mac:#x} is not 48 bits")
        if not 0 <= self.adi <= 0xFFFF_FFFF:
            raise ValueError(f"ADI {self.adi:#x} is not 32 bits")

    @classmethod
    def for_address_resolution(cls, ip: IPv4Address | IPv6Address) -> MulticastGroup:
        """The group ARP (IPv4) or NDP (IPv6) queries for ``ip`` are sent to.

        IPv4: (ff:ff:ff:ff:ff:ff, ip as a big-endian u32). IPv6: the solicited-node MAC
        33:33:ff:xx:yy:zz from the low three bytes, ADI 0. A userspace stack must subscribe to its
        own groups, or nobody can resolve it.
        """
        if isinstance(ip, IPv4Address):
            return cls(BROADCAST_MAC, int(ip))
        p = ip.packed
        return cls(0x3333FF000000 | (p[13] << 16) | (p[14] << 8) | p[15], 0)

    @property
    def is_broadcast(self) -> bool:
        return self.mac == BROADCAST_MAC

    def __str__(self) -> str:
        return f"{mac_to_str(self.mac)}/{self.adi:08x}"


BROADCAST_GROUP: Final = MulticastGroup(BROADCAST_MAC, 0)
# All-nodes IPv6 multicast (ff02::1) as an Ethernet group.
IPV6_ALL_NODES_GROUP: Final = MulticastGroup(0x333300000001, 0)


__all__ = [
    "ADDRESS_MASK",
    "BROADCAST_GROUP",
    "BROADCAST_MAC",
    "IPV6_ALL_NODES_GROUP",
    "MAC_MASK",
    "MulticastGroup",
    "address_from_mac",
    "first_octet_for_network",
    "is_broadcast",
    "is_locally_administered",
    "is_multicast",
    "is_network_mac",
    "mac_from_address",
    "mac_from_bytes",
    "mac_from_str",
    "mac_to_bytes",
    "mac_to_str",
]
