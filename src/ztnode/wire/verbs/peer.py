"""Peer-level VL1 verbs: NOP, WHOIS, RENDEZVOUS, ECHO, PUSH_DIRECT_PATHS, USER_MESSAGE,
REMOTE_TRACE (Packet.hpp; IncomingPacket.cpp; protocol-core.md sections 10.3-10.13)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar, Final, Self

from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.wire.buffer import Reader, Writer
from ztnode.wire.constants import Verb
from ztnode.wire.inetaddr import TYPE_IPV4, TYPE_IPV6, InetAddress, IPAddress
from ztnode.wire.verbs._common import ADDRESS_LENGTH, VerbPayload

PUSH_FLAG_FORGET_PATH: Final = 0x01  # Packet.hpp:216 (the reference skips such records)
PUSH_FLAG_CLUSTER_REDIRECT: Final = 0x02  # Packet.hpp:221
PUSH_MIN_RECORD_SIZE: Final = 5  # flags, ext length, type, length with empty ext and address
_PUSH_ADDR_LEN: Final = {TYPE_IPV4: 6, TYPE_IPV6: 18}

MAX_REMOTE_TRACE_SIZE: Final = 10000  # ZT_MAX_REMOTE_TRACE_SIZE, include/ZeroTierOne.h:121
USER_MESSAGE_RESERVED_TYPES: Final = 65535  # type ids up to this are ZeroTier's


@dataclass(frozen=True, slots=True)
class Nop(VerbPayload):
    """NOP (0x00), and what unassigned verbs (0x0f, 0x11, 0x17-0x1f) decode to.

    The reference accepts any payload for these and ignores it, so decoding never fails and
    keeps nothing.
    """

    VERB: ClassVar[Verb] = Verb.NOP

    @classmethod
    def _read(cls, r: Reader) -> Self:
        return cls()

    def write(self, writer: Writer) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Whois(VerbPayload):
    """WHOIS (0x04): 5-byte addresses to look up.

    The reference reads addresses while five bytes remain, so a shorter tail is ignored; an
    empty WHOIS is valid and asks for nothing.
    """

    VERB: ClassVar[Verb] = Verb.WHOIS

    addresses: tuple[int, ...]

    @classmethod
    def _read(cls, r: Reader) -> Self:
        n = r.remaining // ADDRESS_LENGTH
        return cls(tuple(r.address("WHOIS address") for _ in range(n)))

    def write(self, writer: Writer) -> None:
        for a in self.addresses:
            writer.address(a)


@dataclass(frozen=True, slots=True)
class Rendezvous(VerbPayload):
    """RENDEZVOUS (0x05): ``u8 flags (0) | address | u16 port | u8 ip length | ip``.

    Sent by a relay (normally a root) to tell a peer where it might reach ``address`` directly.
    An IP length other than 4 or 16 makes the reference ignore the packet; here it is a
    DecodeError. Port 0 decodes (the handler must ignore it, as the reference does). Trailing
    bytes are ignored.
    """

    VERB: ClassVar[Verb] = Verb.RENDEZVOUS

    address: int
    ip: IPAddress
    port: int
    flags: int = 0

    @classmethod
    def _read(cls, r: Reader) -> Self:
        flags = r.u8("RENDEZVOUS flags")
        address = r.address("RENDEZVOUS address")
        port = r.u16("RENDEZVOUS port")
        ip_len = r.u8("RENDEZVOUS address length")
        ip: IPAddress
        if ip_len == 4:
            ip = IPv4Address(r.raw(4, "RENDEZVOUS IPv4"))
        elif ip_len == 16:
            ip = IPv6Address(r.raw(16, "RENDEZVOUS IPv6"))
        else:
            raise DecodeError(f"RENDEZVOUS address length {ip_len}, not 4 or 16")
        return cls(address, ip, port, flags)

    def write(self, writer: Writer) -> None:
        packed = self.ip.packed
        writer.u8(self.flags).address(self.address).u16(self.port).u8(len(packed)).raw(packed)

    @property
    def endpoint(self) -> InetAddress:
        return InetAddress(self.ip, self.port)

    @classmethod
    def create(cls, address: int, endpoint: InetAddress) -> Rendezvous:
        """Tell the receiver that ``address`` may be reachable at ``endpoint``."""
        return cls(address, endpoint.ip, endpoint.port)


@dataclass(frozen=True, slots=True)
class Echo(VerbPayload):
    """ECHO (0x08): any payload, copied back in OK(ECHO); empty for keepalives."""

    VERB: ClassVar[Verb] = Verb.ECHO

    data: bytes = b""

    @classmethod
    def _read(cls, r: Reader) -> Self:
        return cls(r.rest())

    def write(self, writer: Writer) -> None:
        writer.raw(self.data)


@dataclass(frozen=True, slots=True)
class PushedPath:
    """One PUSH_DIRECT_PATHS record: ``u8 flags | u16 ext len | ext | u8 type | u8 len | addr``.

    Types 4 and 6 carry an IP and port and decode into ``address`` (their address lengths must
    be 6 and 18; the reference reads the fixed-size address whatever the length byte says, so
    any other length is refused here as malformed). Other types are kept raw in ``raw_address``
    and skipped by receivers, as the reference skips them by their length. ``ext`` (extended
    path characteristics) is unused by every known sender and kept raw.
    """

    flags: int
    address: InetAddress | None
    addr_type: int
    raw_address: bytes = b""
    ext: bytes = b""

    def __post_init__(self) -> None:
        if self.address is not None:
            want = TYPE_IPV4 if self.address.is_ipv4() else TYPE_IPV6
            if self.addr_type != want or self.raw_address:
                raise LocalProtocolError("addr_type/raw_address disagree with address")
        elif self.addr_type in _PUSH_ADDR_LEN:
            raise LocalProtocolError("types 4 and 6 need an address")

    @classmethod
    def for_address(cls, address: InetAddress, flags: int = 0) -> PushedPath:
        return cls(flags, address, TYPE_IPV4 if address.is_ipv4() else TYPE_IPV6)

    def encoded_size(self) -> int:
        """Bytes :meth:`write` appends (senders keep a push under 1200 bytes with this)."""
        addr_len = self.address.encoded_size() - 1 if self.address else len(self.raw_address)
        return 5 + len(self.ext) + addr_len

    @property
    def forget(self) -> bool:
        return bool(self.flags & PUSH_FLAG_FORGET_PATH)

    @property
    def cluster_redirect(self) -> bool:
        return bool(self.flags & PUSH_FLAG_CLUSTER_REDIRECT)

    @classmethod
    def read(cls, r: Reader) -> PushedPath:
        flags = r.u8("path flags")
        ext = r.raw(r.u16("path extension length"), "path extension")
        addr_type = r.u8("path address type")
        addr_len = r.u8("path address length")
        want = _PUSH_ADDR_LEN.get(addr_type)
        if want is None:
            return cls(flags, None, addr_type, r.raw(addr_len, "path address"), ext)
        if addr_len != want:
            raise DecodeError(f"path address type {addr_type} with length {addr_len}")
        ip: IPAddress
        if addr_type == TYPE_IPV4:
            ip = IPv4Address(r.raw(4, "path IPv4"))
        else:
            ip = IPv6Address(r.raw(16, "path IPv6"))
        return cls(flags, InetAddress(ip, r.u16("path port")), addr_type, b"", ext)

    def write(self, writer: Writer) -> None:
        writer.u8(self.flags).u16(len(self.ext)).raw(self.ext).u8(self.addr_type)
        if self.address is not None:
            packed = self.address.ip.packed
            writer.u8(len(packed) + 2).raw(packed).u16(self.address.port)
        else:
            writer.u8(len(self.raw_address)).raw(self.raw_address)


@dataclass(frozen=True, slots=True)
class PushDirectPaths(VerbPayload):
    """PUSH_DIRECT_PATHS (0x10): ``u16 count | count x PushedPath``. Trailing bytes ignored."""

    VERB: ClassVar[Verb] = Verb.PUSH_DIRECT_PATHS

    paths: tuple[PushedPath, ...]

    @classmethod
    def _read(cls, r: Reader) -> Self:
        n = r.count(r.u16("path count"), PUSH_MIN_RECORD_SIZE, "pushed paths")
        return cls(tuple(PushedPath.read(r) for _ in range(n)))

    def write(self, writer: Writer) -> None:
        writer.u16(len(self.paths))
        for p in self.paths:
            p.write(writer)


@dataclass(frozen=True, slots=True)
class UserMessage(VerbPayload):
    """USER_MESSAGE (0x14): ``u64 type id | data``, delivered to the application as an event.

    Type ids up to 65535 are reserved for ZeroTier. The reference ignores a payload shorter than
    the type id; here that is a DecodeError.
    """

    VERB: ClassVar[Verb] = Verb.USER_MESSAGE

    type_id: int
    data: bytes = b""

    @classmethod
    def _read(cls, r: Reader) -> Self:
        return cls(r.u64("USER_MESSAGE type id"), r.rest())

    def write(self, writer: Writer) -> None:
        writer.u64(self.type_id).raw(self.data)


@dataclass(frozen=True, slots=True)
class RemoteTrace(VerbPayload):
    """REMOTE_TRACE (0x15): NUL-terminated dictionary strings, one trace event each.

    Decoding follows IncomingPacket.cpp:1452-1476: every terminated string that is non-empty and
    at most 10000 bytes is an event; empty or oversized strings and an unterminated tail are
    dropped. Entries stay raw bytes for the dictionary codec.
    """

    VERB: ClassVar[Verb] = Verb.REMOTE_TRACE

    records: tuple[bytes, ...]

    def __post_init__(self) -> None:
        for e in self.records:
            if not e or len(e) > MAX_REMOTE_TRACE_SIZE or b"\0" in e:
                raise LocalProtocolError(
                    f"trace entries are 1..{MAX_REMOTE_TRACE_SIZE} bytes without NUL"
                )

    @classmethod
    def _read(cls, r: Reader) -> Self:
        parts = r.rest().split(b"\0")
        # The last part is either empty (payload ended with NUL) or an unterminated tail.
        return cls(tuple(p for p in parts[:-1] if 0 < len(p) <= MAX_REMOTE_TRACE_SIZE))

    def write(self, writer: Writer) -> None:
        for e in self.records:
            writer.raw(e).u8(0)


__all__ = [
    "MAX_REMOTE_TRACE_SIZE",
    "PUSH_FLAG_CLUSTER_REDIRECT",
    "PUSH_FLAG_FORGET_PATH",
    "PUSH_MIN_RECORD_SIZE",
    "USER_MESSAGE_RESERVED_TYPES",
    "Echo",
    "Nop",
    "PushDirectPaths",
    "PushedPath",
    "RemoteTrace",
    "Rendezvous",
    "UserMessage",
    "Whois",
]
