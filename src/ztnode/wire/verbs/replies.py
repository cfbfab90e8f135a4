"""Replies: ERROR (0x02) and OK (0x03).

Both start with ``u8 in-re verb | u64 in-re packet id``; what follows depends on the verb being
answered (and, for ERROR, on the error code). The in-re packet id is the *wire* id of the request
(after AES-GMAC-SIV rewrote it), and a node processes an OK only if it is expecting a reply to
that id (protocol-core.md section 9.5).

OK bodies cannot be parsed without knowing the in-re verb, so there is one record per in-re verb
(:class:`OkHello`, :class:`OkWhois`, ...) and :func:`decode_ok` picks the right one. Each exposes
``in_re_verb`` as an ordinary attribute.

**In-re ECHO is ambiguous.** A node acknowledges a completed NETWORK_CONFIG push with an OK whose
in-re verb is ECHO, not NETWORK_CONFIG (IncomingPacket.cpp:1197-1208; protocol-core.md section
10.1), carrying ``nwid | update id``. That is indistinguishable from a genuine OK(ECHO) whose
echoed payload happens to be 16 bytes long, so :func:`decode_ok` always yields :class:`OkEcho`
with the payload raw; a caller that expects a netconf ack (it pushed a config with that packet
id) calls :meth:`OkEcho.as_netconf_ack`. Senders build the ack with :class:`NetconfAck`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final, Self

from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.identity import Identity
from ztnode.wire.buffer import Buf, Reader, Writer
from ztnode.wire.constants import ErrorCode, Verb
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.verbs._common import VerbPayload, read_com, read_mac, write_mac
from ztnode.wire.verbs.frames import GatherResults
from ztnode.wire.verbs.netconf import NetworkConfigChunk

if TYPE_CHECKING:
    from ztnode.wire.credentials import CertificateOfMembership
    from ztnode.wire.world import World

REPLY_HEADER_SIZE: Final = 9  # in-re verb + in-re packet id

# Error codes whose payload starts with a network id the receiver always reads.
_NWID_ERRORS: Final = frozenset(
    {
        ErrorCode.NEED_MEMBERSHIP_CERTIFICATE,
        ErrorCode.NETWORK_ACCESS_DENIED,
        ErrorCode.UNWANTED_MULTICAST,
        ErrorCode.NETWORK_AUTHENTICATION_REQUIRED,
    }
)
# Error codes whose network id the reference reads only when they answer a config request.
_NWID_IF_NCR_ERRORS: Final = frozenset({ErrorCode.OBJ_NOT_FOUND, ErrorCode.UNSUPPORTED_OPERATION})


def _as_verb(v: int) -> int:
    try:
        return Verb(v)
    except ValueError:
        return v


def _as_error_code(v: int) -> int:
    try:
        return ErrorCode(v)
    except ValueError:
        return v


@dataclass(frozen=True, slots=True)
class Error(VerbPayload):
    """ERROR: ``in-re verb | in-re packet id | u8 code | code-specific payload``.

    Payload by code (IncomingPacket.cpp:169-316, Node.cpp:853-905):

    * NEED_MEMBERSHIP_CERTIFICATE, NETWORK_ACCESS_DENIED: ``nwid`` (required).
    * OBJ_NOT_FOUND, UNSUPPORTED_OPERATION: ``nwid``, required when in re
      NETWORK_CONFIG_REQUEST (the only case the reference reads it); otherwise parsed if 8 bytes
      are there, else ``network_id`` is ``None``.
    * UNWANTED_MULTICAST: ``nwid | MAC | ADI`` (required).
    * NETWORK_AUTHENTICATION_REQUIRED: ``nwid`` then, if at least two bytes follow, ``u16 len |
      dictionary`` (``dictionary``; raw bytes for the dictionary codec). The reference quietly
      ignores a length that overruns the packet; here that is a DecodeError.
    * anything else (INVALID_REQUEST, IDENTITY_COLLISION, unknown codes): no defined payload.

    Whatever follows the fields above lands in ``data`` unchanged (a controller may append a
    ``u16 len | dictionary`` to any config-request error; only AUTHENTICATION_REQUIRED's is
    interpreted by the reference). ``in_re_verb`` and ``code`` are :class:`Verb` /
    :class:`ErrorCode` members when known, plain ints otherwise.
    """

    VERB: ClassVar[Verb] = Verb.ERROR

    in_re_verb: int
    in_re_packet_id: int
    code: int
    network_id: int | None = None
    mac: int | None = None
    adi: int | None = None
    dictionary: bytes | None = None
    data: bytes = b""

    def __post_init__(self) -> None:
        # Refuse records that would encode to bytes decoding as something else.
        code = self.code
        if self.network_id is None:
            if code in _NWID_ERRORS:
                raise LocalProtocolError(f"ERROR code {code!r} needs network_id")
            if code in _NWID_IF_NCR_ERRORS and (
                self.in_re_verb == Verb.NETWORK_CONFIG_REQUEST or len(self.data) >= 8
            ):
                raise LocalProtocolError(f"ERROR code {code!r} needs network_id here")
        elif code not in _NWID_ERRORS and code not in _NWID_IF_NCR_ERRORS:
            raise LocalProtocolError(f"ERROR code {code!r} has no network id")
        multicast = code == ErrorCode.UNWANTED_MULTICAST
        if multicast != (self.mac is not None) or multicast != (self.adi is not None):
            raise LocalProtocolError("mac and adi belong to (and are needed by) UNWANTED_MULTICAST")
        if code == ErrorCode.NETWORK_AUTHENTICATION_REQUIRED:
            if self.dictionary is None and len(self.data) >= 2:
                raise LocalProtocolError("put the authentication info in dictionary, not data")
        elif self.dictionary is not None:
            raise LocalProtocolError("only NETWORK_AUTHENTICATION_REQUIRED carries a dictionary")

    @classmethod
    def _read(cls, r: Reader) -> Self:
        in_re_verb = _as_verb(r.u8("ERROR in-re verb"))
        in_re_id = r.u64("ERROR in-re packet id")
        code = _as_error_code(r.u8("ERROR code"))
        nwid = mac = adi = None
        dictionary = None
        if code in _NWID_ERRORS or (
            code in _NWID_IF_NCR_ERRORS
            and (in_re_verb == Verb.NETWORK_CONFIG_REQUEST or r.remaining >= 8)
        ):
            nwid = r.u64("ERROR network id")
        if code == ErrorCode.UNWANTED_MULTICAST:
            mac = read_mac(r, "ERROR multicast MAC")
            adi = r.u32("ERROR multicast ADI")
        elif code == ErrorCode.NETWORK_AUTHENTICATION_REQUIRED and r.remaining >= 2:
            dictionary = r.raw(r.u16("auth info length"), "auth info dictionary")
        return cls(in_re_verb, in_re_id, code, nwid, mac, adi, dictionary, r.rest())

    def write(self, writer: Writer) -> None:
        writer.u8(self.in_re_verb).u64(self.in_re_packet_id).u8(self.code)
        if self.network_id is not None:
            writer.u64(self.network_id)
        if self.mac is not None and self.adi is not None:
            write_mac(writer, self.mac)
            writer.u32(self.adi)
        if self.dictionary is not None:
            writer.u16(len(self.dictionary)).raw(self.dictionary)
        writer.raw(self.data)

    # Constructors for the errors a node actually sends.

    @classmethod
    def identity_collision(cls, hello_packet_id: int) -> Error:
        """Answer to a HELLO whose identity collides with a known one at the same address."""
        return cls(Verb.HELLO, hello_packet_id, ErrorCode.IDENTITY_COLLISION)

    @classmethod
    def need_membership_certificate(
        cls, in_re_verb: int, in_re_packet_id: int, network_id: int
    ) -> Error:
        """Answer to a frame from a peer that failed the network gate."""
        return cls(in_re_verb, in_re_packet_id, ErrorCode.NEED_MEMBERSHIP_CERTIFICATE, network_id)

    @classmethod
    def unsupported_operation(cls, in_re_verb: int, in_re_packet_id: int, network_id: int) -> Error:
        """What a node without a controller answers to NETWORK_CONFIG_REQUEST."""
        return cls(in_re_verb, in_re_packet_id, ErrorCode.UNSUPPORTED_OPERATION, network_id)

    @classmethod
    def unwanted_multicast(
        cls, in_re_verb: int, in_re_packet_id: int, network_id: int, mac: int, adi: int
    ) -> Error:
        return cls(in_re_verb, in_re_packet_id, ErrorCode.UNWANTED_MULTICAST, network_id, mac, adi)


class _OkPayload(VerbPayload):
    """Shared header handling of the per-in-re-verb OK records."""

    __slots__ = ()

    VERB: ClassVar[Verb] = Verb.OK
    IN_RE_VERB: ClassVar[int]

    @classmethod
    def _read_header(cls, r: Reader) -> int:
        in_re = r.u8("OK in-re verb")
        if in_re != cls.IN_RE_VERB:
            raise DecodeError(f"{cls.__name__}: in-re verb 0x{in_re:02x}, not {cls.IN_RE_VERB}")
        return r.u64("OK in-re packet id")

    def _write_header(self, w: Writer, in_re_packet_id: int) -> None:
        w.u8(self.IN_RE_VERB).u64(in_re_packet_id)


@dataclass(frozen=True, slots=True)
class OkHello(_OkPayload):
    """OK(HELLO): ``timestamp echo | proto | major | minor | u16 revision | InetAddress |
    [u16 len | worlds]``.

    The version fields describe the responder (not echoes). ``surface`` is the requester's
    address as the responder saw it (the "external surface" fed to SelfAwareness); the reference
    zeroes its port when the requester's protocol is below 5. ``worlds`` holds serialised
    planet/moon updates, kept raw: :meth:`parse_worlds` splits them with the World codec, which
    only makes sense when the sender may update worlds (an upstream or moon seed). ``worlds`` is
    ``None`` when the length field is absent (old nodes); bytes after the worlds are ignored.
    """

    IN_RE_VERB: ClassVar[int] = Verb.HELLO

    in_re_packet_id: int
    timestamp: int
    protocol_version: int
    version_major: int
    version_minor: int
    version_revision: int
    surface: InetAddress | None = None
    worlds: bytes | None = None
    in_re_verb: int = field(default=Verb.HELLO, init=False, repr=False, compare=False)

    @classmethod
    def _read(cls, r: Reader) -> Self:
        pid = cls._read_header(r)
        ts = r.u64("OK(HELLO) timestamp")
        proto = r.u8("OK(HELLO) protocol version")
        major = r.u8("OK(HELLO) major version")
        minor = r.u8("OK(HELLO) minor version")
        revision = r.u16("OK(HELLO) revision")
        surface = InetAddress.read(r) if not r.at_end() else None
        worlds = None
        if r.remaining >= 2:
            worlds = r.raw(r.u16("world update length"), "world updates")
        return cls(pid, ts, proto, major, minor, revision, surface, worlds)

    def write(self, writer: Writer) -> None:
        self._write_header(writer, self.in_re_packet_id)
        writer.u64(self.timestamp).u8(self.protocol_version)
        writer.u8(self.version_major).u8(self.version_minor).u16(self.version_revision)
        InetAddress.write_optional(writer, self.surface)
        if self.worlds is not None:
            writer.u16(len(self.worlds)).raw(self.worlds)

    def parse_worlds(self) -> tuple[World, ...]:
        """Split ``worlds`` into World records (``ztnode.wire.world``, imported on first use)."""
        if not self.worlds:
            return ()
        from ztnode.wire.world import World

        r = Reader(self.worlds)
        out: list[World] = []
        while not r.at_end():
            before = r.pos
            out.append(World.read(r))
            if r.pos == before:  # a reader that consumed nothing would loop forever
                raise DecodeError("world record of length zero")
        return tuple(out)


@dataclass(frozen=True, slots=True)
class OkWhois(_OkPayload):
    """OK(WHOIS): one or more concatenated public identities.

    The reference parses only the first identity (IncomingPacket.cpp:634-639); this decoder
    requires that one and then keeps every further identity that parses, stopping silently at
    the first that does not (so a responder bundling several answers is fully used while junk
    after the first is tolerated as the reference tolerates it).
    """

    IN_RE_VERB: ClassVar[int] = Verb.WHOIS

    in_re_packet_id: int
    identities: tuple[Identity, ...]
    in_re_verb: int = field(default=Verb.WHOIS, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.identities:
            raise LocalProtocolError("OK(WHOIS) is only sent with at least one identity")

    @classmethod
    def _read(cls, r: Reader) -> Self:
        pid = cls._read_header(r)
        identities = [Identity.read(r)]
        while not r.at_end():
            try:
                identities.append(Identity.read(r))
            except DecodeError:
                break
        return cls(pid, tuple(identities))

    def write(self, writer: Writer) -> None:
        self._write_header(writer, self.in_re_packet_id)
        for ident in self.identities:
            ident.write(writer, include_private=False)


@dataclass(frozen=True, slots=True)
class NetconfAck(_OkPayload):
    """The acknowledgement of a completed NETWORK_CONFIG push: OK, in-re **ECHO**, ``nwid |
    update id``.

    The in-re verb really is ECHO (0x08), not NETWORK_CONFIG: a reference quirk
    (IncomingPacket.cpp:1199). Decoding one from an arbitrary OK(ECHO) is a guess, so
    :func:`decode_ok` never produces this type; see :meth:`OkEcho.as_netconf_ack`.
    """

    IN_RE_VERB: ClassVar[int] = Verb.ECHO

    in_re_packet_id: int
    network_id: int
    update_id: int
    in_re_verb: int = field(default=Verb.ECHO, init=False, repr=False, compare=False)

    @classmethod
    def _read(cls, r: Reader) -> Self:
        pid = cls._read_header(r)
        nwid = r.u64("netconf ack network id")
        update_id = r.u64("netconf ack update id")
        r.expect_end("netconf ack")
        return cls(pid, nwid, update_id)

    def write(self, writer: Writer) -> None:
        self._write_header(writer, self.in_re_packet_id)
        writer.u64(self.network_id).u64(self.update_id)


@dataclass(frozen=True, slots=True)
class OkEcho(_OkPayload):
    """OK(ECHO): the echoed payload, verbatim (also the carrier of netconf acks, see module)."""

    IN_RE_VERB: ClassVar[int] = Verb.ECHO

    in_re_packet_id: int
    data: bytes = b""
    in_re_verb: int = field(default=Verb.ECHO, init=False, repr=False, compare=False)

    @classmethod
    def _read(cls, r: Reader) -> Self:
        pid = cls._read_header(r)
        return cls(pid, r.rest())

    def write(self, writer: Writer) -> None:
        self._write_header(writer, self.in_re_packet_id)
        writer.raw(self.data)

    def as_netconf_ack(self) -> NetconfAck | None:
        """Read the payload as ``nwid | update id``; ``None`` unless it is exactly 16 bytes."""
        if len(self.data) != 16:
            return None
        r = Reader(self.data)
        return NetconfAck(self.in_re_packet_id, r.u64(), r.u64())


@dataclass(frozen=True, slots=True)
class OkNetworkConfigRequest(_OkPayload):
    """OK(NETWORK_CONFIG_REQUEST): one config chunk, same body as NETWORK_CONFIG."""

    IN_RE_VERB: ClassVar[int] = Verb.NETWORK_CONFIG_REQUEST

    in_re_packet_id: int
    chunk: NetworkConfigChunk
    in_re_verb: int = field(
        default=Verb.NETWORK_CONFIG_REQUEST, init=False, repr=False, compare=False
    )

    @classmethod
    def _read(cls, r: Reader) -> Self:
        pid = cls._read_header(r)
        return cls(pid, NetworkConfigChunk._read(r))

    def write(self, writer: Writer) -> None:
        self._write_header(writer, self.in_re_packet_id)
        self.chunk.write(writer)


@dataclass(frozen=True, slots=True)
class OkMulticastGather(_OkPayload):
    """OK(MULTICAST_GATHER): ``nwid | MAC | ADI | u32 total known | u16 n | n x address``."""

    IN_RE_VERB: ClassVar[int] = Verb.MULTICAST_GATHER

    in_re_packet_id: int
    network_id: int
    mac: int
    adi: int
    total_known: int
    members: tuple[int, ...]
    in_re_verb: int = field(default=Verb.MULTICAST_GATHER, init=False, repr=False, compare=False)

    @classmethod
    def _read(cls, r: Reader) -> Self:
        pid = cls._read_header(r)
        nwid = r.u64("OK(GATHER) network id")
        mac = read_mac(r, "OK(GATHER) MAC")
        adi = r.u32("OK(GATHER) ADI")
        results = GatherResults.read(r)
        return cls(pid, nwid, mac, adi, results.total_known, results.members)

    def write(self, writer: Writer) -> None:
        self._write_header(writer, self.in_re_packet_id)
        writer.u64(self.network_id)
        write_mac(writer, self.mac)
        writer.u32(self.adi)
        GatherResults(self.total_known, self.members).write(writer)


OK_MULTICAST_FRAME_FLAG_COM: Final = 0x01
OK_MULTICAST_FRAME_FLAG_GATHER: Final = 0x02


@dataclass(frozen=True, slots=True)
class OkMulticastFrame(_OkPayload):
    """OK(MULTICAST_FRAME): ``nwid | MAC | ADI | flags | [COM if 0x01] | [gather results if
    0x02]``.

    Packet.hpp's comment ties the gather results to flag 0x01; the code (both the sender and
    the reader, IncomingPacket.cpp:656-683) uses 0x02, as here. ``flags`` is the raw byte and
    must agree with ``com`` and ``gather``.
    """

    IN_RE_VERB: ClassVar[int] = Verb.MULTICAST_FRAME

    in_re_packet_id: int
    network_id: int
    mac: int
    adi: int
    flags: int
    com: CertificateOfMembership | None = None
    gather: GatherResults | None = None
    in_re_verb: int = field(default=Verb.MULTICAST_FRAME, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if bool(self.flags & OK_MULTICAST_FRAME_FLAG_COM) != (self.com is not None):
            raise LocalProtocolError("flag 0x01 and com go together")
        if bool(self.flags & OK_MULTICAST_FRAME_FLAG_GATHER) != (self.gather is not None):
            raise LocalProtocolError("flag 0x02 and gather go together")

    @classmethod
    def _read(cls, r: Reader) -> Self:
        pid = cls._read_header(r)
        nwid = r.u64("OK(MULTICAST_FRAME) network id")
        mac = read_mac(r, "OK(MULTICAST_FRAME) MAC")
        adi = r.u32("OK(MULTICAST_FRAME) ADI")
        flags = r.u8("OK(MULTICAST_FRAME) flags")
        com = read_com(r) if flags & OK_MULTICAST_FRAME_FLAG_COM else None
        gather = GatherResults.read(r) if flags & OK_MULTICAST_FRAME_FLAG_GATHER else None
        return cls(pid, nwid, mac, adi, flags, com, gather)

    def write(self, writer: Writer) -> None:
        self._write_header(writer, self.in_re_packet_id)
        writer.u64(self.network_id)
        write_mac(writer, self.mac)
        writer.u32(self.adi).u8(self.flags)
        if self.com is not None:
            self.com.write(writer)
        if self.gather is not None:
            self.gather.write(writer)


@dataclass(frozen=True, slots=True)
class OkExtFrame(_OkPayload):
    """OK(EXT_FRAME): ``nwid``, sent when the frame had the ACK-requested flag (0x10)."""

    IN_RE_VERB: ClassVar[int] = Verb.EXT_FRAME

    in_re_packet_id: int
    network_id: int
    in_re_verb: int = field(default=Verb.EXT_FRAME, init=False, repr=False, compare=False)

    @classmethod
    def _read(cls, r: Reader) -> Self:
        pid = cls._read_header(r)
        return cls(pid, r.u64("OK(EXT_FRAME) network id"))

    def write(self, writer: Writer) -> None:
        self._write_header(writer, self.in_re_packet_id)
        writer.u64(self.network_id)


@dataclass(frozen=True, slots=True)
class OkOther(VerbPayload):
    """OK in re a verb without a defined OK body (the reference ignores these but for path
    learning); the body is kept raw."""

    VERB: ClassVar[Verb] = Verb.OK

    in_re_verb: int
    in_re_packet_id: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if self.in_re_verb in _OK_DECODERS:
            raise LocalProtocolError(
                f"in-re verb {self.in_re_verb!r} has its own OK record; use that instead"
            )

    @classmethod
    def _read(cls, r: Reader) -> Self:
        in_re = _as_verb(r.u8("OK in-re verb"))
        if in_re in _OK_DECODERS:
            raise DecodeError(f"OK in re {in_re!r} has its own layout; use decode_ok")
        pid = r.u64("OK in-re packet id")
        return cls(in_re, pid, r.rest())

    def write(self, writer: Writer) -> None:
        writer.u8(self.in_re_verb).u64(self.in_re_packet_id).raw(self.data)


OkPayload = (
    OkHello
    | OkWhois
    | OkEcho
    | OkNetworkConfigRequest
    | OkMulticastGather
    | OkMulticastFrame
    | OkExtFrame
    | OkOther
)

# Keyed by the full in-re byte: the reference compares the whole byte with each verb, so a byte
# with high bits set matches nothing and gets no special handling.
_OK_DECODERS: Final[dict[int, Callable[[Reader], OkPayload]]] = {
    Verb.HELLO: OkHello._read,
    Verb.WHOIS: OkWhois._read,
    Verb.ECHO: OkEcho._read,
    Verb.NETWORK_CONFIG_REQUEST: OkNetworkConfigRequest._read,
    Verb.MULTICAST_GATHER: OkMulticastGather._read,
    Verb.MULTICAST_FRAME: OkMulticastFrame._read,
    Verb.EXT_FRAME: OkExtFrame._read,
}


def decode_ok(payload: Buf) -> OkPayload:
    """Decode an OK payload into the record for its in-re verb (:class:`OkOther` if none)."""
    r = Reader(payload)
    return _OK_DECODERS.get(r.peek_u8("OK in-re verb"), OkOther._read)(r)


__all__ = [
    "REPLY_HEADER_SIZE",
    "Error",
    "NetconfAck",
    "OkEcho",
    "OkExtFrame",
    "OkHello",
    "OkMulticastFrame",
    "OkMulticastGather",
    "OkNetworkConfigRequest",
    "OkOther",
    "OkPayload",
    "OkWhois",
    "decode_ok",
]
