"""Shared machinery of the verb payload codecs.

Decoding policy, applied to every verb so that behaviour is predictable:

* A field the reference handler reads must be present and complete, otherwise the payload is a
  :class:`~ztnode.errors.DecodeError` (the reference's ``Buffer`` throws and the packet is dropped,
  IncomingPacket.cpp:163-166).
* Bytes the reference never looks at (after the last field it reads) are ignored and not kept,
  as the reference ignores them; the docstring of each payload says where that applies.
* Counts read from the wire are checked with :meth:`Reader.count` before anything is built for
  them, so memory stays proportional to the input.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Final, Self

from ztnode.errors import LocalProtocolError
from ztnode.wire.buffer import Buf, Reader, Writer
from ztnode.wire.constants import Verb

if TYPE_CHECKING:
    from ztnode.wire.credentials import CertificateOfMembership

MAC_LENGTH: Final = 6
NETWORK_ID_LENGTH: Final = 8
ADDRESS_LENGTH: Final = 5
MAC_MAX: Final = (1 << 48) - 1


class VerbPayload(ABC):
    """Base of every payload record: ``decode`` a whole payload, ``encode`` one back.

    ``payload`` is what follows the verb byte (``packet[28:]``), already decrypted and
    decompressed. Subclasses are frozen, slotted dataclasses that implement ``_read`` (consume
    the payload from a reader, deciding what to do with trailing bytes) and ``write``.
    """

    __slots__ = ()

    VERB: ClassVar[Verb]

    @classmethod
    @abstractmethod
    def _read(cls, reader: Reader) -> Self:
        """Consume this payload from ``reader`` (each verb decides about trailing bytes)."""

    @abstractmethod
    def write(self, writer: Writer) -> None:
        """Append the payload's wire form to ``writer``."""

    @classmethod
    def decode(cls, payload: Buf) -> Self:
        """Parse a whole payload; raises only :class:`~ztnode.errors.DecodeError` on bad bytes."""
        return cls._read(Reader(payload))

    def encode(self) -> bytes:
        """Serialise to payload bytes (what goes after the verb byte)."""
        w = Writer()
        self.write(w)
        return bytes(w.buf)


def read_mac(reader: Reader, what: str = "MAC") -> int:
    """A 48-bit Ethernet address as an int (big-endian, first octet most significant)."""
    return reader.uint(MAC_LENGTH, what)


def write_mac(writer: Writer, mac: int) -> None:
    writer.uint(mac, MAC_LENGTH)


def read_addresses(reader: Reader, n: int, what: str = "addresses") -> tuple[int, ...]:
    """``n`` consecutive 5-byte ZeroTier addresses, after checking they can all be present."""
    reader.count(n, ADDRESS_LENGTH, what)
    return tuple(reader.address(what) for _ in range(n))


def read_com(reader: Reader) -> CertificateOfMembership:
    """Read an inline certificate of membership (the colleague-owned credential codec).

    Imported lazily so the verb codecs load even when only the VL1 subset is used, and so that
    ``ztnode.wire.credentials`` can never form an import cycle with this package.
    """
    from ztnode.wire.credentials import CertificateOfMembership

    return CertificateOfMembership.read(reader)


def require_flag_matches(flags: int, bit: int, present: bool, what: str) -> None:
    """Keep a flags byte and the optional field it announces consistent.

    Payload records carry the raw flags byte (unknown bits survive a round trip) next to the
    optional fields; a record whose flag says "present" while the field is ``None`` (or the
    reverse) would encode bytes that decode to something else, so it is refused up front.
    """
    if bool(flags & bit) != present:
        state = "set" if flags & bit else "clear"
        raise LocalProtocolError(
            f"flag 0x{bit:02x} is {state} but {what} is {'present' if present else 'absent'}; "
            "set both or neither"
        )


__all__ = [
    "ADDRESS_LENGTH",
    "MAC_LENGTH",
    "MAC_MAX",
    "NETWORK_ID_LENGTH",
    "VerbPayload",
    "read_addresses",
    "read_com",
    "read_mac",
    "require_flag_matches",
    "write_mac",
]
