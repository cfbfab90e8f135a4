"""Network credentials: membership certificates, capabilities, tags, ownership certificates and
revocations, plus the NETWORK_CREDENTIALS (0x0a) payload that carries them.

Every credential is issued and signed by the network's controller (address ``nwid >> 24``) and
checked by every member, so the byte layouts and the exact bytes signed must match ZeroTierOne
1.14.1 (``node/CertificateOfMembership.*``, ``Capability.*``, ``Tag.*``,
``CertificateOfOwnership.*``, ``Revocation.*``; fact sheet ``protocol-network.md`` §4-5).

Signed bytes. A COM signs the concatenation of its qualifier triples. The other four sign their
"for signing" serialisation: ``7f`` x 8, the body without the signature block, the u16 "extra
fields length" (0), ``7f`` x 8. Verification always rebuilds those bytes from the decoded fields,
as the reference does, so a record decoded from non-canonical bytes verifies exactly when the
reference would accept it.

The framing these records share (signature blocks, extension skip, whole-buffer
``decode``/``encode``, the marker-signed read/write/sign/verify) is in
:mod:`ztnode.wire.credential_base`; each class here declares only its own fields. Readers raise
only :class:`~ztnode.errors.DecodeError` and check counts against the bytes left.

Identities are typed structurally (:class:`SigningIdentity`, :class:`VerifyingIdentity`,
:class:`PublicIdentity`), which ``ztnode.identity.Identity`` satisfies; tests may use fakes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar, Final, Protocol, Self

from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.wire.buffer import Buf, Reader, Writer
from ztnode.wire.constants import Verb
from ztnode.wire.credential_base import (
    EMPTY_SIGNATURE,
    SIGNATURE_LENGTH,
    CredentialCodec,
    MarkerSigned,
    SigningIdentity,
    VerifyingIdentity,
    check_signature,
    controller_for,
    marker_signing_message,
    read_counted,
    read_signature,
    skip_extra,
    write_counted,
    write_signature,
)
from ztnode.wire.mac import MAC_MASK
from ztnode.wire.rules import MAX_CAPABILITY_RULES, Rule, read_rules, write_rules

COM_FORMAT: Final = 1
COM_MAX_QUALIFIERS: Final = 8  # ZT_NETWORK_COM_MAX_QUALIFIERS
CAPABILITY_MAX_CUSTODY_CHAIN: Final = 7  # ZT_MAX_CAPABILITY_CUSTODY_CHAIN_LENGTH
COO_MAX_THINGS: Final = 16  # ZT_CERTIFICATEOFOWNERSHIP_MAX_THINGS
COO_THING_VALUE_SIZE: Final = 16
REVOCATION_FLAG_FAST_PROPAGATE: Final = 0x1
_UNBOUNDED_DELTA: Final = 0xFFFF_FFFF_FFFF_FFFF


class CredentialType(IntEnum):
    """Credential type codes, used in revocations (``node/Credential.hpp:39-47``)."""

    NULL = 0
    COM = 1
    CAPABILITY = 2
    TAG = 3
    COO = 4
    REVOCATION = 6


class VerifyResult(IntEnum):
    """The reference's three-way verify result: OK, signer identity unknown (WHOIS and retry),
    or bad."""

    OK = 0
    NEED_IDENTITY = 1
    BAD = -1


class PublicIdentity(Protocol):
    """What the COM identity hash needs: the address and the 64-byte C25519 public key."""

    @property
    def address(self) -> int: ...

    @property
    def public_key(self) -> bytes: ...


def identity_hash_words(identity: PublicIdentity) -> tuple[int, int, int, int]:
    """The four u64 words of SHA-384(address[5] || public key[64]) that bind a COM to a full
    identity (``Identity::publicKeyHash``; COM qualifiers 3..6)."""
    digest = hashlib.sha384(
        (identity.address & 0xFF_FFFF_FFFF).to_bytes(5, "big") + bytes(identity.public_key)
    ).digest()
    return (
        int.from_bytes(digest[0:8], "big"),
        int.from_bytes(digest[8:16], "big"),
        int.from_bytes(digest[16:24], "big"),
        int.from_bytes(digest[24:32], "big"),
    )


# --- certificate of membership ---------------------------------------------------------------


class ComQualifierId(IntEnum):
    """Reserved COM qualifier ids; 3..6 hold the issued-to identity hash."""

    TIMESTAMP = 0
    NETWORK_ID = 1
    ISSUED_TO = 2
    IDENTITY_HASH_0 = 3
    IDENTITY_HASH_1 = 4
    IDENTITY_HASH_2 = 5
    IDENTITY_HASH_3 = 6


@dataclass(frozen=True, slots=True)
class ComQualifier:
    """One (id, value, max delta) tuple; two COMs agree on it when the values differ by at most
    the checking side's ``max_delta``."""

    id: int
    value: int
    max_delta: int


@dataclass(frozen=True, slots=True)
class CertificateOfMembership(CredentialCodec):
    """A COM: ``[1] 1 [2] q (q x [8] id [8] value [8] maxDelta) [5] signedBy [96 sig if signed]``.

    Qualifier ids must be non-decreasing and at most 8 qualifiers are allowed. A controller-issued
    COM (:meth:`issue`) has 7 and is 272 bytes signed.
    """

    LABEL: ClassVar[str] = "COM"

    qualifiers: tuple[ComQualifier, ...]
    signed_by: int = 0
    signature: bytes = EMPTY_SIGNATURE

    @classmethod
    def issue(
        cls, timestamp: int, max_delta: int, nwid: int, issued_to: PublicIdentity
    ) -> CertificateOfMembership:
        """An unsigned COM as the controller builds it: timestamp (window ``max_delta``), network
        id (exact), issued-to address and the four identity-hash words (ignored deltas)."""
        h = identity_hash_words(issued_to)
        quals = [
            ComQualifier(ComQualifierId.TIMESTAMP, timestamp & _UNBOUNDED_DELTA, max_delta),
            ComQualifier(ComQualifierId.NETWORK_ID, nwid, 0),
            ComQualifier(ComQualifierId.ISSUED_TO, issued_to.address, _UNBOUNDED_DELTA),
        ]
        quals += [ComQualifier(3 + i, h[i], _UNBOUNDED_DELTA) for i in range(4)]
        return cls(tuple(quals))

    def _qualifier(self, qid: int) -> int | None:
        for q in self.qualifiers:
            if q.id == qid:
                return q.value
        return None

    @property
    def timestamp(self) -> int:
        """Qualifier 0 as the reference's signed ``int64_t timestamp()`` (0 if absent)."""
        v = self._qualifier(ComQualifierId.TIMESTAMP) or 0
        return v - (1 << 64) if v >= 1 << 63 else v

    @property
    def network_id(self) -> int:
        return self._qualifier(ComQualifierId.NETWORK_ID) or 0

    @property
    def issued_to(self) -> int:
        return (self._qualifier(ComQualifierId.ISSUED_TO) or 0) & 0xFF_FFFF_FFFF

    @property
    def is_signed(self) -> bool:
        return self.signed_by != 0

    def __bool__(self) -> bool:
        """A COM without qualifiers is the reference's "no COM"."""
        return bool(self.qualifiers)

    def agrees_with(self, other: CertificateOfMembership, other_identity: PublicIdentity) -> bool:
        """Whether a peer holding ``other`` may talk to us (the reference's ``agreesWith``).

        Asymmetric on purpose: every qualifier of *ours* must be in ``other`` within *our*
        ``max_delta`` (extra qualifiers in ``other`` are ignored). If ours carries any of ids 3..6,
        ``other`` must carry all four and they must equal the hash of ``other_identity``.
        """
        if not self.qualifiers or not other.qualifiers:
            return False
        theirs: dict[int, int] = {}
        for q in other.qualifiers:
            theirs[q.id] = q.value  # later duplicates win, as the reference's std::map insert
        full_identity = False
        for q in self.qualifiers:
            if 3 <= q.id <= 6:
                full_identity = True
            b = theirs.get(q.id)
            if b is None or abs(q.value - b) > q.max_delta:
                return False
        if full_identity:
            words = identity_hash_words(other_identity)
            for i in range(4):
                if theirs.get(3 + i) != words[i]:
                    return False
        return True

    def signing_message(self) -> bytes:
        """The bytes signed: every qualifier's three u64s in order, nothing else."""
        w = Writer()
        for q in self.qualifiers:
            w.u64(q.id).u64(q.value).u64(q.max_delta)
        return bytes(w.buf)

    def sign(self, identity: SigningIdentity) -> CertificateOfMembership:
        return replace(
            self, signed_by=identity.address, signature=identity.sign(self.signing_message())
        )

    def verify(self, signer: VerifyingIdentity) -> bool:
        """Signed by the controller of its own network id, by ``signer``, with a good signature."""
        if (
            self.signed_by == 0
            or self.signed_by != controller_for(self.network_id)
            or len(self.qualifiers) > COM_MAX_QUALIFIERS
            or signer.address != self.signed_by
        ):
            return False
        return signer.verify(self.signing_message(), self.signature)

    @classmethod
    def read(cls, reader: Reader) -> Self:
        if reader.u8("COM format") != COM_FORMAT:
            raise DecodeError("COM: format byte is not 1")
        n = reader.count(reader.u16("COM qualifier count"), 24, "COM qualifiers")
        if n > COM_MAX_QUALIFIERS:
            raise DecodeError(f"COM: {n} qualifiers, at most {COM_MAX_QUALIFIERS} allowed")
        quals: list[ComQualifier] = []
        last = 0
        for _ in range(n):
            q = ComQualifier(reader.u64("COM id"), reader.u64("COM value"), reader.u64("COM delta"))
            if q.id < last:
                raise DecodeError("COM: qualifier ids are not sorted")
            last = q.id
            quals.append(q)
        signed_by = reader.address("COM signer")
        sig = reader.raw(SIGNATURE_LENGTH, "COM signature") if signed_by else EMPTY_SIGNATURE
        return cls(tuple(quals), signed_by, sig)

    def write(self, writer: Writer) -> None:
        if len(self.qualifiers) > COM_MAX_QUALIFIERS:
            raise LocalProtocolError(f"a COM holds at most {COM_MAX_QUALIFIERS} qualifiers")
        if any(a.id > b.id for a, b in zip(self.qualifiers, self.qualifiers[1:], strict=False)):
            raise LocalProtocolError("COM qualifier ids must be non-decreasing")
        writer.u8(COM_FORMAT).u16(len(self.qualifiers))
        for q in self.qualifiers:
            writer.u64(q.id).u64(q.value).u64(q.max_delta)
        writer.address(self.signed_by)
        if self.signed_by:
            if len(self.signature) != SIGNATURE_LENGTH:
                raise LocalProtocolError("a signed COM needs a 96-byte signature")
            writer.raw(self.signature)


# --- capability ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustodyEntry:
    """One hop of a capability's chain of custody: ``from_`` signed it over to ``to``."""

    to: int
    from_: int
    signature: bytes = EMPTY_SIGNATURE


@dataclass(frozen=True, slots=True)
class Capability(CredentialCodec):
    """A signed, named rule set a member may use after the base rules (§5.1).

    Wire: ``[8] nwid [8] ts [4] id [2] ruleCount rules [1] mccl`` then custody entries
    ``[5] to [5] from [sig block]`` ended by a zero ``to``, then ``[2] extra``. Every hop signs
    the same bytes (custody excluded). The controller issues ``mccl`` 1 with one entry
    (controller to member).
    """

    LABEL: ClassVar[str] = "capability"
    MIN_SIZE: ClassVar[int] = 8 + 8 + 4 + 2 + 1 + 5 + 2

    id: int
    network_id: int
    timestamp: int
    rules: tuple[Rule, ...] = ()
    max_custody_chain_length: int = 1
    custody: tuple[CustodyEntry, ...] = ()

    @property
    def issued_to(self) -> int:
        """The last holder in the chain of custody (0 if unsigned)."""
        return self.custody[-1].to if self.custody else 0

    def _write_body(self, writer: Writer) -> None:
        if len(self.rules) > MAX_CAPABILITY_RULES:
            raise LocalProtocolError(f"a capability holds at most {MAX_CAPABILITY_RULES} rules")
        writer.u64(self.network_id).i64(self.timestamp).u32(self.id)
        writer.u16(len(self.rules))
        write_rules(writer, self.rules)
        writer.u8(self.max_custody_chain_length)

    def signing_message(self) -> bytes:
        """What every hop signs: the body framed for signing (custody excluded)."""
        return marker_signing_message(self._write_body)

    def sign(self, identity: SigningIdentity, to: int) -> Capability:
        """Append a custody hop from ``identity`` to ``to`` (the reference's ``sign(from, to)``).

        The first hop must come from the controller for :meth:`verify` to accept it.
        """
        if len(self.custody) >= min(self.max_custody_chain_length, CAPABILITY_MAX_CUSTODY_CHAIN):
            raise LocalProtocolError("the capability's chain of custody is full")
        if to == 0:
            raise LocalProtocolError("a custody hop needs a non-zero recipient")
        hop = CustodyEntry(to, identity.address, identity.sign(self.signing_message()))
        return replace(self, custody=(*self.custody, hop))

    def verify_chain(self, lookup: Callable[[int], VerifyingIdentity | None]) -> VerifyResult:
        """``Capability::verify``: hop 0 from the controller, each later hop from the previous
        recipient, every signature good; ``NEED_IDENTITY`` if ``lookup`` lacks a signer."""
        mccl = self.max_custody_chain_length
        if not 1 <= mccl <= CAPABILITY_MAX_CUSTODY_CHAIN:
            return VerifyResult.BAD
        msg = self.signing_message()
        for c in range(mccl):
            hop = self.custody[c] if c < len(self.custody) else None
            if c == 0:
                if hop is None or not hop.from_ or hop.from_ != controller_for(self.network_id):
                    return VerifyResult.BAD
            elif hop is None:
                return VerifyResult.OK
            elif not hop.from_ or hop.from_ != self.custody[c - 1].to:
                return VerifyResult.BAD
            signer = lookup(hop.from_)
            if signer is None:
                return VerifyResult.NEED_IDENTITY
            if not signer.verify(msg, hop.signature):
                return VerifyResult.BAD
        return VerifyResult.OK

    def verify(self, signer: VerifyingIdentity) -> bool:
        """Chain check where ``signer`` is the only identity known (enough for controller-issued
        capabilities, whose single hop is signed by the controller)."""

        def lookup(address: int) -> VerifyingIdentity | None:
            return signer if address == signer.address else None

        return self.verify_chain(lookup) is VerifyResult.OK

    @classmethod
    def read(cls, reader: Reader) -> Self:
        nwid = reader.u64("capability nwid")
        ts = reader.i64("capability timestamp")
        cid = reader.u32("capability id")
        rc = reader.u16("capability rule count")
        if rc > MAX_CAPABILITY_RULES:
            raise DecodeError(f"capability: {rc} rules, at most {MAX_CAPABILITY_RULES}")
        rules = read_rules(reader, rc)
        mccl = reader.u8("capability max custody chain length")
        if not 1 <= mccl <= CAPABILITY_MAX_CUSTODY_CHAIN:
            raise DecodeError(f"capability: custody chain length {mccl} outside 1..7")
        custody: list[CustodyEntry] = []
        while True:
            to = reader.address("custody to")
            if to == 0:
                break
            if len(custody) >= mccl:
                raise DecodeError("capability: chain of custody longer than its maximum")
            frm = reader.address("custody from")
            custody.append(CustodyEntry(to, frm, read_signature(reader, "custody")))
        skip_extra(reader, "capability")
        return cls(cid, nwid, ts, rules, mccl, tuple(custody))

    def write(self, writer: Writer) -> None:
        if len(self.custody) > min(self.max_custody_chain_length, CAPABILITY_MAX_CUSTODY_CHAIN):
            raise LocalProtocolError("chain of custody longer than max_custody_chain_length")
        for hop in self.custody:
            if hop.to == 0:
                raise LocalProtocolError("a custody hop with recipient 0 would end the chain")
            check_signature(hop.signature)
        self._write_body(writer)
        for hop in self.custody:
            writer.address(hop.to).address(hop.from_)
            write_signature(writer, hop.signature)
        writer.address(0).u16(0)


# --- tag -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tag(MarkerSigned):
    """A signed (id, value) pair describing a member, 135 bytes on the wire (§5.2):
    ``[8] nwid [8] ts [4] id [4] value [5] issuedTo [5] signedBy [sig block] [2] extra``."""

    LABEL: ClassVar[str] = "tag"
    MIN_SIZE: ClassVar[int] = 8 + 8 + 4 + 4 + 5 + 5 + 3 + 2

    id: int
    value: int
    network_id: int
    timestamp: int
    issued_to: int
    signed_by: int = 0
    signature: bytes = EMPTY_SIGNATURE

    def _write_body(self, writer: Writer) -> None:
        writer.u64(self.network_id).i64(self.timestamp).u32(self.id).u32(self.value)
        writer.address(self.issued_to).address(self.signed_by)

    @classmethod
    def read(cls, reader: Reader) -> Self:
        nwid = reader.u64("tag nwid")
        ts = reader.i64("tag timestamp")
        tid = reader.u32("tag id")
        value = reader.u32("tag value")
        issued_to = reader.address("tag issued to")
        signed_by = reader.address("tag signer")
        return cls(tid, value, nwid, ts, issued_to, signed_by, cls._read_tail(reader))


# --- certificate of ownership ----------------------------------------------------------------


class ThingType(IntEnum):
    """What a certificate of ownership can assert ownership of."""

    NULL = 0
    MAC = 1
    IPV4 = 2
    IPV6 = 3


@dataclass(frozen=True, slots=True)
class OwnedThing:
    """One owned identifier: a type byte and a 16-byte value (the identifier, zero padded).

    The value is kept whole because all 16 bytes are signed, whatever the type uses.
    """

    type: int
    value: bytes

    def __post_init__(self) -> None:
        if len(self.value) != COO_THING_VALUE_SIZE:
            raise ValueError(f"a thing value is {COO_THING_VALUE_SIZE} bytes")

    @classmethod
    def ip(cls, ip: IPv4Address | IPv6Address) -> OwnedThing:
        kind = ThingType.IPV4 if isinstance(ip, IPv4Address) else ThingType.IPV6
        return cls(kind, ip.packed.ljust(COO_THING_VALUE_SIZE, b"\0"))

    @classmethod
    def mac(cls, mac: int) -> OwnedThing:
        return cls(ThingType.MAC, (mac & MAC_MASK).to_bytes(6, "big").ljust(16, b"\0"))

    def matches(self, kind: ThingType, raw: bytes) -> bool:
        """``_owns``: same type and the first ``len(raw)`` bytes equal."""
        return self.type == kind and self.value[: len(raw)] == raw


@dataclass(frozen=True, slots=True)
class CertificateOfOwnership(MarkerSigned):
    """Proof that a member owns IPs or MACs, used by the rules' "sender IP/MAC authenticated"
    characteristics (§5.3). The controller issues one (id 1) listing all static IPs.

    Wire: ``[8] nwid [8] ts [8] flags [4] id [2] n n x ([1] type [16] value) [5] issuedTo
    [5] signedBy [sig block] [2] extra``, at most 16 things. (A reference reader given more than 16
    stops consuming things after 16 and misparses the rest; such input is a DecodeError here.)
    """

    LABEL: ClassVar[str] = "COO"
    MIN_SIZE: ClassVar[int] = 8 + 8 + 8 + 4 + 2 + 5 + 5 + 3 + 2

    network_id: int
    timestamp: int
    id: int
    issued_to: int
    things: tuple[OwnedThing, ...] = ()
    flags: int = 0
    signed_by: int = 0
    signature: bytes = EMPTY_SIGNATURE

    def owns_ip(self, ip: IPv4Address | IPv6Address) -> bool:
        kind = ThingType.IPV4 if isinstance(ip, IPv4Address) else ThingType.IPV6
        return any(t.matches(kind, ip.packed) for t in self.things)

    def owns_mac(self, mac: int) -> bool:
        raw = (mac & MAC_MASK).to_bytes(6, "big")
        return any(t.matches(ThingType.MAC, raw) for t in self.things)

    def _write_body(self, writer: Writer) -> None:
        if len(self.things) > COO_MAX_THINGS:
            raise LocalProtocolError(f"a COO holds at most {COO_MAX_THINGS} things")
        writer.u64(self.network_id).i64(self.timestamp).u64(self.flags).u32(self.id)
        writer.u16(len(self.things))
        for t in self.things:
            writer.u8(t.type).raw(t.value)
        writer.address(self.issued_to).address(self.signed_by)

    @classmethod
    def read(cls, reader: Reader) -> Self:
        nwid = reader.u64("COO nwid")
        ts = reader.i64("COO timestamp")
        flags = reader.u64("COO flags")
        cid = reader.u32("COO id")
        n = reader.count(reader.u16("COO thing count"), 1 + COO_THING_VALUE_SIZE, "COO things")
        if n > COO_MAX_THINGS:
            raise DecodeError(f"COO: {n} things, at most {COO_MAX_THINGS}")
        things = tuple(
            OwnedThing(reader.u8("thing type"), reader.raw(COO_THING_VALUE_SIZE, "thing"))
            for _ in range(n)
        )
        issued_to = reader.address("COO issued to")
        signed_by = reader.address("COO signer")
        sig = cls._read_tail(reader)
        return cls(nwid, ts, cid, issued_to, things, flags, signed_by, sig)


# --- revocation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Revocation(MarkerSigned):
    """Revokes a member's credentials issued at or before ``threshold`` (§5.4), 152 bytes:
    ``[4] 0 [4] id [8] nwid [4] 0 [4] credId [8] threshold [8] flags [5] target [5] signedBy
    [1] type [sig block] [2] extra``. The two reserved words are ignored on read."""

    LABEL: ClassVar[str] = "revocation"
    MIN_SIZE: ClassVar[int] = 4 + 4 + 8 + 4 + 4 + 8 + 8 + 5 + 5 + 1 + 3 + 2

    id: int
    network_id: int
    credential_id: int
    threshold: int
    flags: int
    target: int
    credential_type: int
    signed_by: int = 0
    signature: bytes = EMPTY_SIGNATURE

    @property
    def fast_propagate(self) -> bool:
        return bool(self.flags & REVOCATION_FLAG_FAST_PROPAGATE)

    def _write_body(self, writer: Writer) -> None:
        writer.u32(0).u32(self.id).u64(self.network_id).u32(0).u32(self.credential_id)
        writer.i64(self.threshold).u64(self.flags)
        writer.address(self.target).address(self.signed_by).u8(self.credential_type)

    @classmethod
    def read(cls, reader: Reader) -> Self:
        reader.skip(4, "revocation reserved")
        rid = reader.u32("revocation id")
        nwid = reader.u64("revocation nwid")
        reader.skip(4, "revocation reserved")
        cred_id = reader.u32("revocation credential id")
        threshold = reader.i64("revocation threshold")
        flags = reader.u64("revocation flags")
        target = reader.address("revocation target")
        signed_by = reader.address("revocation signer")
        ctype = reader.u8("revocation credential type")
        sig = cls._read_tail(reader)
        return cls(rid, nwid, cred_id, threshold, flags, target, ctype, signed_by, sig)


# --- NETWORK_CREDENTIALS payload -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NetworkCredentials:
    """The NETWORK_CREDENTIALS (0x0a) payload (``IncomingPacket::_doNETWORK_CREDENTIALS``):

    ``{COM}* 0x00 [2] n caps [2] n tags [2] n revocations [2] n COOs``.

    Older senders stop after any section (even before the 0x00 when the payload ends after the
    COMs); a missing section decodes as empty. Bytes after the COO section are ignored.
    :meth:`encode` always writes every section.
    """

    VERB: ClassVar[Verb] = Verb.NETWORK_CREDENTIALS

    coms: tuple[CertificateOfMembership, ...] = ()
    capabilities: tuple[Capability, ...] = ()
    tags: tuple[Tag, ...] = ()
    revocations: tuple[Revocation, ...] = ()
    certificates_of_ownership: tuple[CertificateOfOwnership, ...] = ()

    @classmethod
    def decode(cls, payload: Buf) -> NetworkCredentials:
        creds, err = cls.decode_partial(payload)
        if err is not None:
            raise err
        return creds

    @classmethod
    def decode_partial(cls, payload: Buf) -> tuple[NetworkCredentials, DecodeError | None]:
        """Decode as far as possible: the credentials before the first bad byte, and the error.

        The reference acts on each credential as it parses it, so those before a malformed one
        still take effect; a receiver that wants that behaviour uses this.
        """
        reader = Reader(payload)
        coms: list[CertificateOfMembership] = []
        caps: list[Capability] = []
        tags: list[Tag] = []
        revs: list[Revocation] = []
        coos: list[CertificateOfOwnership] = []

        def result(err: DecodeError | None) -> tuple[NetworkCredentials, DecodeError | None]:
            return cls(tuple(coms), tuple(caps), tuple(tags), tuple(revs), tuple(coos)), err

        try:
            while not reader.at_end() and reader.peek_u8() != 0:
                coms.append(CertificateOfMembership.read(reader))
            if reader.at_end():
                return result(None)
            reader.skip(1)
            if reader.at_end():
                return result(None)
            read_counted(reader, Capability, caps, "capability count", "caps")
            if reader.at_end():
                return result(None)
            read_counted(reader, Tag, tags, "tag count", "tags")
            if reader.at_end():
                return result(None)
            read_counted(reader, Revocation, revs, "revocation count", "revocations")
            if reader.at_end():
                return result(None)
            read_counted(reader, CertificateOfOwnership, coos, "COO count", "COOs")
        except DecodeError as e:
            return result(e)
        return result(None)

    def write(self, writer: Writer) -> None:
        for com in self.coms:
            com.write(writer)
        writer.u8(0)
        write_counted(writer, self.capabilities)
        write_counted(writer, self.tags)
        write_counted(writer, self.revocations)
        write_counted(writer, self.certificates_of_ownership)

    def encode(self) -> bytes:
        w = Writer()
        self.write(w)
        return bytes(w.buf)


__all__ = [
    "CAPABILITY_MAX_CUSTODY_CHAIN",
    "COM_MAX_QUALIFIERS",
    "COO_MAX_THINGS",
    "EMPTY_SIGNATURE",
    "REVOCATION_FLAG_FAST_PROPAGATE",
    "SIGNATURE_LENGTH",
    "Capability",
    "CertificateOfMembership",
    "CertificateOfOwnership",
    "ComQualifier",
    "ComQualifierId",
    "CredentialType",
    "CustodyEntry",
    "NetworkCredentials",
    "OwnedThing",
    "PublicIdentity",
    "Revocation",
    "SigningIdentity",
    "Tag",
    "ThingType",
    "VerifyResult",
    "VerifyingIdentity",
    "controller_for",
    "identity_hash_words",
]
