"""Ethernet-carrying and multicast verbs: FRAME, EXT_FRAME, MULTICAST_LIKE/GATHER/FRAME.

Layouts from Packet.hpp:620-960 and IncomingPacket.cpp:791-1349 (protocol-core.md sections
10.5-10.10, protocol-network.md section 4). MAC addresses are 48-bit ints; network ids 64-bit.

Optional fields announced by a flags byte are modelled as the raw flags byte (so unknown bits
survive) plus ``None``-able fields; the constructor refuses a record whose flag bit and field
disagree, and the ``create`` class methods compute the flags for you.

The deprecated inline certificate of membership (flag 0x01) is decoded with the credentials
colleague's :class:`~ztnode.wire.credentials.CertificateOfMembership`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import TYPE_CHECKING, ClassVar, Final, Self

from ztnode.errors import DecodeError
from ztnode.wire.buffer import Reader, Writer
from ztnode.wire.constants import Verb
from ztnode.wire.verbs._common import (
    VerbPayload,
    read_addresses,
    read_com,
    read_mac,
    require_flag_matches,
    write_mac,
)

if TYPE_CHECKING:
    from ztnode.wire.credentials import CertificateOfMembership

MULTICAST_LIKE_ENTRY_SIZE: Final = 18  # nwid 8 | MAC 6 | ADI 4


class ExtFrameFlag(IntFlag):
    """EXT_FRAME flag bits (Packet.hpp:652-670)."""

    COM = 0x01  # certificate of membership follows the flags (deprecated)
    SUBTYPE_MASK = 0x0E  # three-bit subtype, see ExtFrameSubtype
    ACK_REQUESTED = 0x10  # receiver answers OK(EXT_FRAME) with the network id


class ExtFrameSubtype(IntEnum):
    """Why an EXT_FRAME was sent, stored as ``(flags >> 1) & 7``.

    Packet.hpp's comment calls bit 0x02 the most significant subtype bit, but the senders in
    Network.cpp shift the subtype left by one, so TEE-out is flags 0x02 and WATCH-in (with the ACK
    bit) 0x1c. This follows the code (protocol-core.md section 10.5). Receivers ignore it.
    """

    NORMAL = 0
    TEE_OUTBOUND = 1
    REDIRECT_OUTBOUND = 2
    WATCH_OUTBOUND = 3
    TEE_INBOUND = 4
    REDIRECT_INBOUND = 5
    WATCH_INBOUND = 6
    RESERVED = 7


class MulticastGatherFlag(IntFlag):
    COM = 0x01  # certificate of membership follows the gather limit


class MulticastFrameFlag(IntFlag):
    """MULTICAST_FRAME flag bits (Packet.hpp:900-910)."""

    COM = 0x01  # certificate of membership follows the flags (deprecated)
    GATHER_LIMIT = 0x02  # u32 implicit gather limit present
    SOURCE_MAC = 0x04  # explicit source MAC present (bridged traffic)
    REPLICATE = 0x08  # "please replicate", sent to multicast replicators


@dataclass(frozen=True, slots=True)
class Frame(VerbPayload):
    """FRAME (0x06): ``nwid | ethertype | payload``; MACs are implied by the ZeroTier addresses.

    The reference delivers nothing from a FRAME shorter than nwid + ethertype; here such a
    payload is a :class:`~ztnode.errors.DecodeError`.
    """

    VERB: ClassVar[Verb] = Verb.FRAME

    network_id: int
    ethertype: int
    payload: bytes

    @classmethod
    def _read(cls, r: Reader) -> Self:
        nwid = r.u64("FRAME network id")
        ethertype = r.u16("FRAME ethertype")
        return cls(nwid, ethertype, r.rest())

    def write(self, writer: Writer) -> None:
        writer.u64(self.network_id).u16(self.ethertype).raw(self.payload)


@dataclass(frozen=True, slots=True)
class ExtFrame(VerbPayload):
    """EXT_FRAME (0x07): ``nwid | flags | [COM] | to MAC | from MAC | ethertype | payload``.

    Used for bridged traffic and for rule-engine TEE/REDIRECT/WATCH copies (the subtype in the
    flags says which). ``flags`` is the raw byte; bit 0x01 must agree with ``com``.
    """

    VERB: ClassVar[Verb] = Verb.EXT_FRAME

    network_id: int
    flags: int
    to_mac: int
    from_mac: int
    ethertype: int
    payload: bytes
    com: CertificateOfMembership | None = None

    def __post_init__(self) -> None:
        require_flag_matches(self.flags, ExtFrameFlag.COM, self.com is not None, "com")

    @classmethod
    def create(
        cls,
        network_id: int,
        to_mac: int,
        from_mac: int,
        ethertype: int,
        payload: bytes,
        *,
        subtype: ExtFrameSubtype = ExtFrameSubtype.NORMAL,
        ack_requested: bool = False,
        com: CertificateOfMembership | None = None,
    ) -> ExtFrame:
        flags = (int(subtype) & 7) << 1
        if ack_requested:
            flags |= ExtFrameFlag.ACK_REQUESTED
        if com is not None:
            flags |= ExtFrameFlag.COM
        return cls(network_id, flags, to_mac, from_mac, ethertype, payload, com)

    @property
    def subtype(self) -> ExtFrameSubtype:
        return ExtFrameSubtype((self.flags >> 1) & 7)

    @property
    def ack_requested(self) -> bool:
        return bool(self.flags & ExtFrameFlag.ACK_REQUESTED)

    @classmethod
    def _read(cls, r: Reader) -> Self:
        nwid = r.u64("EXT_FRAME network id")
        flags = r.u8("EXT_FRAME flags")
        com = read_com(r) if flags & ExtFrameFlag.COM else None
        to_mac = read_mac(r, "EXT_FRAME destination MAC")
        from_mac = read_mac(r, "EXT_FRAME source MAC")
        ethertype = r.u16("EXT_FRAME ethertype")
        return cls(nwid, flags, to_mac, from_mac, ethertype, r.rest(), com)

    def write(self, writer: Writer) -> None:
        writer.u64(self.network_id).u8(self.flags)
        if self.com is not None:
            self.com.write(writer)
        write_mac(writer, self.to_mac)
        write_mac(writer, self.from_mac)
        writer.u16(self.ethertype).raw(self.payload)


@dataclass(frozen=True, slots=True)
class MulticastSubscription:
    """A (network, multicast group) pair: the group is a MAC plus 32-bit ADI.

    For IPv4 ARP the ADI carries the IPv4 address being resolved, so one broadcast MAC fans out
    into per-address groups (MulticastGroup.hpp:60-77).
    """

    network_id: int
    mac: int
    adi: int


@dataclass(frozen=True, slots=True)
class MulticastLike(VerbPayload):
    """MULTICAST_LIKE (0x09): repeated 18-byte ``nwid | MAC | ADI`` subscriptions.

    The reference reads whole tuples until the end, so a partial tuple makes the packet
    undecodable (its ``Buffer`` throws part-way; here nothing is applied).
    """

    VERB: ClassVar[Verb] = Verb.MULTICAST_LIKE

    subscriptions: tuple[MulticastSubscription, ...]

    @classmethod
    def _read(cls, r: Reader) -> Self:
        if r.remaining % MULTICAST_LIKE_ENTRY_SIZE:
            raise DecodeError(
                f"MULTICAST_LIKE: {r.remaining} bytes is not a whole number of "
                f"{MULTICAST_LIKE_ENTRY_SIZE}-byte entries"
            )
        n = r.remaining // MULTICAST_LIKE_ENTRY_SIZE
        return cls(
            tuple(
                MulticastSubscription(r.u64("LIKE network id"), read_mac(r), r.u32("LIKE ADI"))
                for _ in range(n)
            )
        )

    def write(self, writer: Writer) -> None:
        for g in self.subscriptions:
            writer.u64(g.network_id)
            write_mac(writer, g.mac)
            writer.u32(g.adi)


@dataclass(frozen=True, slots=True)
class MulticastGather(VerbPayload):
    """MULTICAST_GATHER (0x0d): ``nwid | flags | MAC | ADI | u32 gather limit | [COM]``.

    Unlike EXT_FRAME and MULTICAST_FRAME the COM comes *last*. The reference wraps its parse in
    ``catch (...)`` and discards a broken COM without dropping the request
    (IncomingPacket.cpp:1220-1228); so does this decoder, which then reports ``com=None`` and
    clears bit 0x01 in ``flags`` to keep the record consistent.
    """

    VERB: ClassVar[Verb] = Verb.MULTICAST_GATHER

    network_id: int
    flags: int
    mac: int
    adi: int
    gather_limit: int
    com: CertificateOfMembership | None = None

    def __post_init__(self) -> None:
        require_flag_matches(self.flags, MulticastGatherFlag.COM, self.com is not None, "com")

    @classmethod
    def create(
        cls,
        network_id: int,
        mac: int,
        adi: int,
        gather_limit: int,
        com: CertificateOfMembership | None = None,
    ) -> MulticastGather:
        flags = MulticastGatherFlag.COM if com is not None else 0
        return cls(network_id, int(flags), mac, adi, gather_limit, com)

    @classmethod
    def _read(cls, r: Reader) -> Self:
        nwid = r.u64("GATHER network id")
        flags = r.u8("GATHER flags")
        mac = read_mac(r, "GATHER MAC")
        adi = r.u32("GATHER ADI")
        limit = r.u32("GATHER limit")
        com = None
        if flags & MulticastGatherFlag.COM:
            try:
                com = read_com(r)
            except DecodeError:
                flags &= 0xFF ^ MulticastGatherFlag.COM
        return cls(nwid, flags, mac, adi, limit, com)

    def write(self, writer: Writer) -> None:
        writer.u64(self.network_id).u8(self.flags)
        write_mac(writer, self.mac)
        writer.u32(self.adi).u32(self.gather_limit)
        if self.com is not None:
            self.com.write(writer)


@dataclass(frozen=True, slots=True)
class MulticastFrame(VerbPayload):
    """MULTICAST_FRAME (0x0e).

    Layout: ``nwid | flags | [COM if 0x01] | [u32 gather limit if 0x02] | [source MAC if 0x04]
    | dest MAC | ADI | ethertype | payload``. The optional fields come in that order in the
    reference reader (IncomingPacket.cpp:1260-1300). Without 0x04 the source MAC is derived from
    the sender's address. An empty payload is accepted: the reference then delivers nothing but
    still answers an implicit gather.
    """

    VERB: ClassVar[Verb] = Verb.MULTICAST_FRAME

    network_id: int
    flags: int
    dest_mac: int
    adi: int
    ethertype: int
    payload: bytes
    gather_limit: int | None = None
    source_mac: int | None = None
    com: CertificateOfMembership | None = None

    def __post_init__(self) -> None:
        require_flag_matches(self.flags, MulticastFrameFlag.COM, self.com is not None, "com")
        require_flag_matches(
            self.flags,
            MulticastFrameFlag.GATHER_LIMIT,
            self.gather_limit is not None,
            "gather_limit",
        )
        require_flag_matches(
            self.flags, MulticastFrameFlag.SOURCE_MAC, self.source_mac is not None, "source_mac"
        )

    @classmethod
    def create(
        cls,
        network_id: int,
        dest_mac: int,
        adi: int,
        ethertype: int,
        payload: bytes,
        *,
        gather_limit: int | None = None,
        source_mac: int | None = None,
        replicate: bool = False,
        com: CertificateOfMembership | None = None,
    ) -> MulticastFrame:
        flags = 0
        if com is not None:
            flags |= MulticastFrameFlag.COM
        if gather_limit is not None:
            flags |= MulticastFrameFlag.GATHER_LIMIT
        if source_mac is not None:
            flags |= MulticastFrameFlag.SOURCE_MAC
        if replicate:
            flags |= MulticastFrameFlag.REPLICATE
        return cls(
            network_id, flags, dest_mac, adi, ethertype, payload, gather_limit, source_mac, com
        )

    @property
    def replicate(self) -> bool:
        return bool(self.flags & MulticastFrameFlag.REPLICATE)

    @classmethod
    def _read(cls, r: Reader) -> Self:
        nwid = r.u64("MULTICAST_FRAME network id")
        flags = r.u8("MULTICAST_FRAME flags")
        com = read_com(r) if flags & MulticastFrameFlag.COM else None
        limit = r.u32("gather limit") if flags & MulticastFrameFlag.GATHER_LIMIT else None
        source = read_mac(r, "source MAC") if flags & MulticastFrameFlag.SOURCE_MAC else None
        dest = read_mac(r, "destination MAC")
        adi = r.u32("MULTICAST_FRAME ADI")
        ethertype = r.u16("MULTICAST_FRAME ethertype")
        return cls(nwid, flags, dest, adi, ethertype, r.rest(), limit, source, com)

    def write(self, writer: Writer) -> None:
        writer.u64(self.network_id).u8(self.flags)
        if self.com is not None:
            self.com.write(writer)
        if self.gather_limit is not None:
            writer.u32(self.gather_limit)
        if self.source_mac is not None:
            write_mac(writer, self.source_mac)
        write_mac(writer, self.dest_mac)
        writer.u32(self.adi).u16(self.ethertype).raw(self.payload)


@dataclass(frozen=True, slots=True)
class GatherResults:
    """Members of a multicast group as returned by a gather (Multicaster::gather).

    ``total_known`` counts every member the responder knows; ``members`` is the subset in this
    packet (the reference caps it to the requested limit and what fits in one packet).
    """

    total_known: int
    members: tuple[int, ...]

    @classmethod
    def read(cls, r: Reader) -> GatherResults:
        total = r.u32("gather total")
        n = r.u16("gather count")
        return cls(total, read_addresses(r, n, "gather members"))

    def write(self, writer: Writer) -> None:
        writer.u32(self.total_known).u16(len(self.members))
        for a in self.members:
            writer.address(a)


__all__ = [
    "MULTICAST_LIKE_ENTRY_SIZE",
    "ExtFrame",
    "ExtFrameFlag",
    "ExtFrameSubtype",
    "Frame",
    "GatherResults",
    "MulticastFrame",
    "MulticastFrameFlag",
    "MulticastGather",
    "MulticastGatherFlag",
    "MulticastLike",
    "MulticastSubscription",
]
