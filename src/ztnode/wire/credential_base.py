"""The codec base the network credentials share (``wire/credentials.py``).

Every credential of ZeroTierOne 1.14.1 is framed and signed the same few ways, so the framing
lives here once and each credential class declares only its own fields:

- :class:`CredentialCodec`: ``decode`` (read one record, then demand the end of the bytes, naming
  the record as ``LABEL`` in the error) and ``encode`` (``write`` into a fresh buffer). A subclass
  supplies ``read``/``write`` and its ``LABEL``.
- :class:`MarkerSigned`: the scheme of Tag, CertificateOfOwnership and Revocation. The record is
  ``body [sig block] [2] extra``; the subclass gives ``_write_body`` and a ``read`` of its
  fields (in wire order, ending with ``signed_by``) that ends in ``_read_tail``, and inherits
  ``write``, ``signing_message``, ``sign`` and ``verify`` (signed by the network's controller).
- The signature block helpers, shared with Capability's custody hops.

Wire details: a signature block is ``[1] 1 [2] 96 [96] sig``; a block whose type byte is not 1 is
skipped (``[2] len [len]``) and leaves an all-zero signature; a trailing ``[2] n [n]`` of extra
fields is skipped. The bytes signed are the "for signing" serialisation: ``7f`` x 8, the body, the
u16 extra length (0), ``7f`` x 8. Readers raise only :class:`~ztnode.errors.DecodeError`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import replace
from typing import ClassVar, Final, Protocol, Self, TypeVar

from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.wire.buffer import Buf, Reader, Writer

SIGNATURE_LENGTH: Final = 96
SIGNATURE_TYPE_ED25519: Final = 1
EMPTY_SIGNATURE: Final = bytes(SIGNATURE_LENGTH)
SIGN_MARKER: Final = b"\x7f" * 8


class SigningIdentity(Protocol):
    """What signing needs: the signer's address and its 96-byte signature primitive."""

    @property
    def address(self) -> int: ...

    def sign(self, msg: bytes) -> bytes: ...


class VerifyingIdentity(Protocol):
    """What checking a signature needs."""

    @property
    def address(self) -> int: ...

    def verify(self, msg: bytes, sig: bytes) -> bool: ...


def controller_for(nwid: int) -> int:
    """The controller address of a network: its top 40 bits."""
    return (nwid >> 24) & 0xFF_FFFF_FFFF


def read_signature(reader: Reader, what: str) -> bytes:
    """One signature block; an unknown type is skipped and yields the empty signature, as the
    reference leaves its signature buffer zeroed."""
    kind = reader.u8(f"{what} signature type")
    if kind == SIGNATURE_TYPE_ED25519:
        n = reader.u16(f"{what} signature length")
        if n != SIGNATURE_LENGTH:
            raise DecodeError(f"{what}: Ed25519 signature of length {n}, expected 96")
        return reader.raw(SIGNATURE_LENGTH, f"{what} signature")
    reader.skip(reader.u16(f"{what} signature length"), f"{what} signature")
    return EMPTY_SIGNATURE


def check_signature(sig: bytes) -> None:
    """Refuse a malformed signature before anything is written, so a failed ``write`` leaves
    the caller's writer untouched."""
    if len(sig) != SIGNATURE_LENGTH:
        raise LocalProtocolError(f"a signature is 96 bytes, not {len(sig)}")


def write_signature(writer: Writer, sig: bytes) -> None:
    """An Ed25519 signature block (the only kind ever written)."""
    writer.u8(SIGNATURE_TYPE_ED25519).u16(SIGNATURE_LENGTH).raw(sig)


def skip_extra(reader: Reader, what: str) -> None:
    """The ``[2] n [n]`` extension every marker-signed record ends with; its content is ignored."""
    reader.skip(reader.u16(f"{what} extra length"), f"{what} extra fields")


def marker_signing_message(write_body: Callable[[Writer], None]) -> bytes:
    """The "for signing" bytes around a body: marker, body, empty extension, marker."""
    w = Writer(SIGN_MARKER)
    write_body(w)
    w.u16(0).raw(SIGN_MARKER)
    return bytes(w.buf)


class CredentialCodec:
    """Whole-buffer ``decode``/``encode`` on top of a class's ``read``/``write``.

    ``LABEL`` names the record in :class:`DecodeError` messages for trailing bytes; ``MIN_SIZE``
    is its smallest encoding, which bounds a wire count before anything is allocated
    (:func:`read_counted`).
    """

    __slots__ = ()
    LABEL: ClassVar[str]
    MIN_SIZE: ClassVar[int] = 1

    @classmethod
    @abstractmethod
    def read(cls, reader: Reader) -> Self:
        """Read one record from ``reader``, raising only :class:`DecodeError`."""

    @abstractmethod
    def write(self, writer: Writer) -> None:
        """Append the record, or raise :class:`LocalProtocolError` before writing anything."""

    @classmethod
    def decode(cls, data: Buf) -> Self:
        """Exactly one record: trailing bytes are a :class:`DecodeError`."""
        r = Reader(data)
        v = cls.read(r)
        r.expect_end(cls.LABEL)
        return v

    def encode(self) -> bytes:
        w = Writer()
        self.write(w)
        return bytes(w.buf)


_C = TypeVar("_C", bound=CredentialCodec)


def read_counted(reader: Reader, kind: type[_C], into: list[_C], count: str, items: str) -> None:
    """A ``[2] n`` then n records of ``kind``, appended to ``into`` one by one so that a caller
    decoding partially keeps those read before a bad one. ``count`` and ``items`` name the count
    and the records in errors."""
    n = reader.count(reader.u16(count), kind.MIN_SIZE, items)
    for _ in range(n):
        into.append(kind.read(reader))


def write_counted(writer: Writer, records: tuple[CredentialCodec, ...]) -> None:
    """A ``[2] n`` then the n records."""
    writer.u16(len(records))
    for record in records:
        record.write(writer)


class MarkerSigned(CredentialCodec):
    """The record and signing scheme Tag, CertificateOfOwnership and Revocation share.

    Each signs its serialisation "for signing" (:func:`marker_signing_message`) with
    ``signed_by`` set to the signer, so the signer's address is itself signed; verification also
    demands that the signer be the network's controller. On the wire the body is followed by one
    signature block and an empty extension.
    """

    __slots__ = ()
    network_id: int
    signed_by: int
    signature: bytes

    @abstractmethod
    def _write_body(self, writer: Writer) -> None:
        """The record's own fields, up to and including ``signed_by``."""

    @classmethod
    def _read_tail(cls, reader: Reader) -> bytes:
        """What follows the body on the wire: the signature block (returned) and the skipped
        extension. A subclass's ``read`` reads its fields up to ``signed_by`` and passes this
        as the signature, so no record is built twice."""
        sig = read_signature(reader, cls.LABEL)
        skip_extra(reader, cls.LABEL)
        return sig

    def write(self, writer: Writer) -> None:
        check_signature(self.signature)
        self._write_body(writer)
        write_signature(writer, self.signature)
        writer.u16(0)

    def signing_message(self) -> bytes:
        return marker_signing_message(self._write_body)

    def sign(self, identity: SigningIdentity) -> Self:
        """Set ``signed_by`` to the signer (it is part of the signed bytes) and sign."""
        unsigned: Self = replace(self, signed_by=identity.address)  # type: ignore[type-var]
        signature = identity.sign(unsigned.signing_message())
        return replace(unsigned, signature=signature)  # type: ignore[type-var]

    def verify(self, signer: VerifyingIdentity) -> bool:
        """Signed by this network's controller, by the identity given, with a good signature."""
        signed_by = self.signed_by
        if signed_by == 0 or signed_by != controller_for(self.network_id):
            return False
        if signer.address != signed_by:
            return False
        return signer.verify(self.signing_message(), self.signature)


__all__ = [
    "EMPTY_SIGNATURE",
    "SIGNATURE_LENGTH",
    "SIGNATURE_TYPE_ED25519",
    "SIGN_MARKER",
    "CredentialCodec",
    "MarkerSigned",
    "SigningIdentity",
    "VerifyingIdentity",
    "check_signature",
    "controller_for",
    "marker_signing_message",
    "read_counted",
    "read_signature",
    "skip_extra",
    "write_counted",
    "write_signature",
]
