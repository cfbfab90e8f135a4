"""Multipath (bonding) verbs: ACK (0x12), QOS_MEASUREMENT (0x13), PATH_NEGOTIATION_REQUEST (0x16).

All three are sent MAC-only (cipher 0) by the bond layer and dropped by a node without a bond
(protocol-multipath.md sections 4 and 7). In 1.14.1 ACK is neither sent nor parsed and path
negotiation is never sent; only QoS is live. Byte order differs between them, see each record.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final, NamedTuple, Self

from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.wire.buffer import Reader, Writer
from ztnode.wire.constants import Verb
from ztnode.wire.verbs._common import VerbPayload

QOS_RECORD_SIZE: Final = 10
QOS_MAX_PACKET_SIZE: Final = 1400  # ZT_QOS_MAX_PACKET_SIZE, Constants.hpp:441
QOS_MAX_RECORDS: Final = (QOS_MAX_PACKET_SIZE * 8) // (64 + 16)  # ZT_QOS_TABLE_SIZE = 140
_QOS_RECORD: Final = struct.Struct("<QH")


@dataclass(frozen=True, slots=True)
class Ack(VerbPayload):
    """ACK (0x12): ``u32`` big-endian byte count received since the previous ACK.

    Dead code in 1.14.1 (sending and parsing are commented out; Bond.cpp:863,
    IncomingPacket.cpp:333-347). The commented-out reader wanted exactly four bytes, as here.
    """

    VERB: ClassVar[Verb] = Verb.ACK

    bytes_received: int

    @classmethod
    def _read(cls, r: Reader) -> Self:
        v = r.u32("ACK byte count")
        r.expect_end("ACK")
        return cls(v)

    def write(self, writer: Writer) -> None:
        writer.u32(self.bytes_received)


class QosRecord(NamedTuple):
    """A packet the sender received: its id and how long it held it before reporting (ms)."""

    packet_id: int
    holding_time: int


@dataclass(frozen=True, slots=True)
class QosMeasurement(VerbPayload):
    """QOS_MEASUREMENT (0x13): repeated ``packet id (8) | holding time (2)`` records.

    **Both fields are little-endian** — the reference memcpy's host-order integers
    (Bond.cpp:588-607, IncomingPacket.cpp:349-373), unlike everything else on the wire. The id is
    the integer value of the packet id as read big-endian from the header, so on the wire the 8
    id bytes appear reversed. Packet.hpp documents a 1-byte field and 155 records; the code uses 2
    bytes and at most 140 records in at most 1400 bytes, as here.

    The reference reads whole records while any byte is left, over-reading a partial record, and
    ignores payloads over 1400 bytes; both are DecodeErrors here. An empty payload (which the
    reference ignores for being under 9 bytes) decodes to no records.
    """

    VERB: ClassVar[Verb] = Verb.QOS_MEASUREMENT

    records: tuple[QosRecord, ...]

    def __post_init__(self) -> None:
        if len(self.records) > QOS_MAX_RECORDS:
            raise LocalProtocolError(f"at most {QOS_MAX_RECORDS} QoS records fit in one packet")

    @classmethod
    def _read(cls, r: Reader) -> Self:
        n, extra = divmod(r.remaining, QOS_RECORD_SIZE)
        if extra or n > QOS_MAX_RECORDS:
            raise DecodeError(f"QoS payload of {r.remaining} bytes")
        data = r.view(n * QOS_RECORD_SIZE, "QoS records")
        return cls(tuple(QosRecord(*rec) for rec in _QOS_RECORD.iter_unpack(data)))

    def write(self, writer: Writer) -> None:
        for rec in self.records:
            try:
                writer.raw(_QOS_RECORD.pack(rec.packet_id, rec.holding_time))
            except struct.error as e:
                raise ValueError(f"QoS record {rec} out of range: {e}") from None


@dataclass(frozen=True, slots=True)
class PathNegotiationRequest(VerbPayload):
    """PATH_NEGOTIATION_REQUEST (0x16): exactly one big-endian ``int16`` path utility.

    The reference ignores any other payload length (IncomingPacket.cpp:1478-1492); here that is
    a DecodeError.
    """

    VERB: ClassVar[Verb] = Verb.PATH_NEGOTIATION_REQUEST

    utility: int

    @classmethod
    def _read(cls, r: Reader) -> Self:
        v = r.i16("path utility")
        r.expect_end("PATH_NEGOTIATION_REQUEST")
        return cls(v)

    def write(self, writer: Writer) -> None:
        writer.i16(self.utility)


__all__ = [
    "QOS_MAX_PACKET_SIZE",
    "QOS_MAX_RECORDS",
    "QOS_RECORD_SIZE",
    "Ack",
    "PathNegotiationRequest",
    "QosMeasurement",
    "QosRecord",
]
