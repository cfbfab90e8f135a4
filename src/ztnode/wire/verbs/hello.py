"""HELLO (verb 0x01): a node announcing its identity, version and view of the topology.

Layout (Packet.hpp:543-560; IncomingPacket.cpp:363-574; protocol-core.md section 10.2)::

    u8  protocol version        u8 major   u8 minor   u16 revision
    u64 timestamp               echoed back in OK(HELLO) for latency measurement
    identity                    binary, public only (71 bytes for type 0)
    InetAddress destination     the physical address the packet was sent to; 0x00 via a relay
    u64 planet world id         \\ optional: present only if 16 bytes remain
    u64 planet world timestamp  /
    ---- everything from here on is cryptField-encrypted on the wire ----
    u16 count                   optional: present only if 2 bytes remain
    count x { u8 world type (127 = moon) | u64 world id | u64 world timestamp }

Every field after the identity is optional in the reference: it parses each "if bytes remain",
so HELLOs from old nodes that stop early are still accepted. :meth:`Hello.decode` does the same.

**The encrypted tail.** The moon list is XOR-ed with a Salsa20/12 keystream (``cryptField``,
protocol-core.md section 5.5) before the packet is armoured, keyed with the sender/receiver key
that the receiver can only compute once it has read the identity from the clear-text head. This
codec never does cryptography; instead it tells the caller where the tail starts:

* Receiving: ``off = Hello.encrypted_tail_offset(payload)``; if it is not ``None``, apply
  cryptField to packet bytes ``[IDX_PAYLOAD + off, end)`` (HELLO is never compressed, so payload
  and packet offsets differ by exactly ``IDX_PAYLOAD``), then ``Hello.decode(decrypted payload)``.
* Sending: ``payload, off = hello.encode_with_tail_offset()``; build the packet, apply
  cryptField from ``IDX_PAYLOAD + off`` to the end, then armour (cipher 0, MAC only).

:meth:`Hello.decode` therefore always expects the tail in plaintext.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final, NamedTuple, Self

from ztnode.errors import LocalProtocolError
from ztnode.identity import Identity
from ztnode.wire.buffer import Buf, Reader, Writer
from ztnode.wire.constants import Verb
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.verbs._common import VerbPayload

WORLD_TYPE_PLANET: Final = 1
WORLD_TYPE_MOON: Final = 127

HELLO_VERSION_FIELDS_SIZE: Final = 13  # proto, major, minor, revision, timestamp
PLANET_FIELDS_SIZE: Final = 16
MOON_RECORD_SIZE: Final = 17
MAX_MOONS: Final = 0xFFFF


class MoonRef(NamedTuple):
    """One entry of HELLO's encrypted world list.

    Nodes list the moons they have (with their timestamp) and the moons they want via a seed
    (timestamp 0); the receiver answers with newer copies in OK(HELLO). The reference reads the
    type byte but uses only entries whose type is 127 (moon); other types are kept here so
    decoding and re-encoding preserves them.
    """

    type: int
    world_id: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class Hello(VerbPayload):
    """HELLO request payload (see the module docstring for the layout and tail encryption)."""

    VERB: ClassVar[Verb] = Verb.HELLO

    protocol_version: int
    version_major: int
    version_minor: int
    version_revision: int
    timestamp: int
    identity: Identity
    destination: InetAddress | None = None
    planet_id: int | None = None
    planet_timestamp: int | None = None
    moons: tuple[MoonRef, ...] | None = None

    def __post_init__(self) -> None:
        if (self.planet_id is None) != (self.planet_timestamp is None):
            raise LocalProtocolError("planet_id and planet_timestamp go together")
        if self.moons is not None:
            if self.planet_id is None and self.moons:
                # Without the 16 planet bytes a receiver would read the moon list as the planet.
                # (An empty list is 2 bytes, too short to be mistaken, and decodes that way.)
                raise LocalProtocolError("a HELLO moon list needs planet_id/planet_timestamp")
            if len(self.moons) > MAX_MOONS:
                raise LocalProtocolError(f"at most {MAX_MOONS} moon entries fit in a HELLO")

    @staticmethod
    def _read_head(r: Reader) -> tuple[int, int, int, int, int, Identity]:
        proto = r.u8("HELLO protocol version")
        major = r.u8("HELLO major version")
        minor = r.u8("HELLO minor version")
        revision = r.u16("HELLO revision")
        timestamp = r.u64("HELLO timestamp")
        identity = Identity.read(r)
        return proto, major, minor, revision, timestamp, identity

    @classmethod
    def _read(cls, r: Reader) -> Self:
        proto, major, minor, revision, timestamp, identity = cls._read_head(r)
        destination = None
        if not r.at_end():
            destination = InetAddress.read(r)
        planet_id = planet_ts = None
        if r.remaining >= PLANET_FIELDS_SIZE:
            planet_id = r.u64("planet id")
            planet_ts = r.u64("planet timestamp")
        moons = None
        # The reference needs two bytes for the count; a lone trailing byte is ignored.
        # Bytes after the last record are ignored as well.
        if r.remaining >= 2:
            n = r.count(r.u16("moon count"), MOON_RECORD_SIZE, "HELLO moons")
            moons = tuple(
                MoonRef(r.u8("moon type"), r.u64("moon id"), r.u64("moon timestamp"))
                for _ in range(n)
            )
        return cls(
            proto,
            major,
            minor,
            revision,
            timestamp,
            identity,
            destination,
            planet_id,
            planet_ts,
            moons,
        )

    @classmethod
    def encrypted_tail_offset(cls, payload: Buf) -> int | None:
        """Payload offset where the cryptField-encrypted tail starts, or ``None`` if there is none.

        Mirrors the receiver in IncomingPacket.cpp: the tail is whatever follows the destination
        address and, if 16 bytes were available for them, the planet fields. Raises
        :class:`~ztnode.errors.DecodeError` if the clear-text head itself is malformed.
        """
        r = Reader(payload)
        cls._read_head(r)
        if r.at_end():
            return None
        InetAddress.read(r)
        if r.remaining >= PLANET_FIELDS_SIZE:
            r.skip(PLANET_FIELDS_SIZE)
        return None if r.at_end() else r.pos

    def write(self, writer: Writer) -> None:
        self._write(writer)

    def _write(self, w: Writer) -> int | None:
        w.u8(self.protocol_version).u8(self.version_major).u8(self.version_minor)
        w.u16(self.version_revision).u64(self.timestamp)
        start = len(w.buf) - HELLO_VERSION_FIELDS_SIZE
        self.identity.write(w, include_private=False)
        InetAddress.write_optional(w, self.destination)
        if self.planet_id is not None and self.planet_timestamp is not None:
            w.u64(self.planet_id).u64(self.planet_timestamp)
        if self.moons is None:
            return None
        tail = len(w.buf) - start
        w.u16(len(self.moons))
        for moon in self.moons:
            w.u8(moon.type).u64(moon.world_id).u64(moon.timestamp)
        return tail

    def encode_with_tail_offset(self) -> tuple[bytes, int | None]:
        """The plaintext payload and the payload offset where cryptField must start.

        The offset is ``None`` when no moon list is sent (then nothing is encrypted). The
        reference always sends the list, possibly empty, so real HELLOs have a tail.
        """
        w = Writer()
        tail = self._write(w)
        return bytes(w.buf), tail

    def moon_refs(self) -> tuple[MoonRef, ...]:
        """Only the entries of type moon (127), which are the ones the reference acts on."""
        if self.moons is None:
            return ()
        return tuple(m for m in self.moons if m.type == WORLD_TYPE_MOON)


__all__ = [
    "MOON_RECORD_SIZE",
    "WORLD_TYPE_MOON",
    "WORLD_TYPE_PLANET",
    "Hello",
    "MoonRef",
]
