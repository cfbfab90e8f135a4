"""DNS messages for the link-local protocols, through dnspython, with the class field's top bit.

Why not ``dns.message`` alone: mDNS gives the top bit of the class field a meaning of its own,
the cache-flush bit in records (RFC 6762 10.2) and the unicast-response (QU) bit in questions
(RFC 6762 5.4). dnspython's message reader takes class 0x8001 for an unknown class and keeps
IN-specific rdata (A, AAAA, SRV) as opaque generic rdata whose compressed names cannot be read
out of context, and its writer gives all the records of an rrset one class. So this module walks
the header and the resource-record headers with dnspython's wire ``Parser``, hands each rdata to
dnspython's own decoder for its type with the real class (top bit cleared), and writes with
dnspython's ``Renderer``, giving each record its class on the wire through ``override_rdclass``.
Names and rdata stay dnspython's byte for byte. The module also enforces the size and count
bounds before decoding anything (hostile input), and cuts long answers into several datagrams.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.renderer
import dns.wire

from ztnode.errors import DecodeError

__all__ = [
    "CLASS_ANY",
    "CLASS_IN",
    "FLAG_AA",
    "FLAG_QR",
    "FLAG_TC",
    "TOP_BIT",
    "TYPE_A",
    "TYPE_AAAA",
    "TYPE_ANY",
    "TYPE_PTR",
    "TYPE_SRV",
    "TYPE_TXT",
    "Encoded",
    "Fit",
    "Packet",
    "PacketRejected",
    "Question",
    "Record",
    "RecordKey",
    "a_rdata",
    "address_of",
    "chunk_questions",
    "decode",
    "encode",
    "owner_key",
    "ptr_rdata",
    "rdata_target",
    "srv_fields",
    "srv_rdata",
    "txt_rdata",
    "txt_strings",
]

# RFC 1035 4.1.1 header flags; RFC 4795 2.1.1 gives LLMNR's C and T bits the AA and RD places.
FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
OPCODE_SHIFT = 11
OPCODE_MASK = 0xF
RCODE_MASK = 0x000F
# RFC 6762 10.2 (records: cache flush) and 5.4 (questions: unicast response wanted).
TOP_BIT = 0x8000

CLASS_IN = int(dns.rdataclass.IN)
CLASS_ANY = int(dns.rdataclass.ANY)
TYPE_A = int(dns.rdatatype.A)
TYPE_AAAA = int(dns.rdatatype.AAAA)
TYPE_PTR = int(dns.rdatatype.PTR)
TYPE_SRV = int(dns.rdatatype.SRV)
TYPE_TXT = int(dns.rdatatype.TXT)
TYPE_ANY = int(dns.rdatatype.ANY)
# Meta records that describe the message, not a name: skipped on input (RFC 6891 OPT reuses the
# class field for the UDP payload size, so its top bit is not a cache-flush bit).
_META_TYPES = frozenset({int(dns.rdatatype.OPT), int(dns.rdatatype.TSIG), int(dns.rdatatype.TKEY)})
_HEADER = struct.Struct("!HHHHHH")
_RR_HEADER = struct.Struct("!HHIH")
_QUESTION_TAIL = struct.Struct("!HH")
# The most a TTL may say (RFC 2181 8: the top bit of the 32 is not used).
_MAX_TTL = 0x7FFFFFFF

#: A record's identity as RFC 6762 compares records: the owner name and the rdata in canonical
#: wire form (names lowercased, uncompressed), type and class. Bytes, so that a key hashes once:
#: dnspython's own ``Name`` and ``Rdata`` hash by walking labels and re-encoding the rdata on
#: every call, which made answering one mDNS question cost hundreds of microseconds.
RecordKey = tuple[bytes, int, int, bytes]


class PacketRejected(DecodeError):
    """Bytes that are not a usable message; ``reason`` names the counter the engines bump."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def owner_key(name: dns.name.Name) -> bytes:
    """``name`` as :data:`RecordKey` holds it: lowercased, uncompressed wire form (equal exactly
    when dnspython's case-insensitive comparison says the names are equal)."""
    wire = name.canonicalize().to_wire()
    assert wire is not None  # no file given: dnspython returns the bytes
    return wire


@dataclass(frozen=True, slots=True)
class Question:
    """One question; ``rdclass`` without the top bit, which is ``unicast`` (QU) in mDNS."""

    name: dns.name.Name
    rdtype: int
    rdclass: int = CLASS_IN
    unicast: bool = False


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record; ``rdclass`` without the top bit, which is ``cache_flush`` in mDNS.

    Equality of names is case-insensitive (dnspython's), and of rdata canonical, so ``key``
    identifies a record as RFC 6762 compares them (name, type, class, rdata)."""

    name: dns.name.Name
    rdtype: int
    rdclass: int
    ttl: int
    rdata: dns.rdata.Rdata
    cache_flush: bool = False
    _key: RecordKey | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def key(self) -> RecordKey:
        """See :data:`RecordKey`; made on first use and kept (the record is immutable)."""
        k = self._key
        if k is None:
            k = (
                owner_key(self.name),
                self.rdtype,
                self.rdclass,
                self.rdata.to_digestable(),
            )
            object.__setattr__(self, "_key", k)
        return k

    def with_ttl(self, ttl: int) -> Record:
        return replace(self, ttl=ttl)

    def with_flush(self, cache_flush: bool) -> Record:
        return replace(self, cache_flush=cache_flush)

    def raw_rdata(self) -> bytes:
        """The rdata uncompressed, as RFC 6762 8.2 compares probes byte by byte."""
        wire = self.rdata.to_wire()
        assert wire is not None  # no file given: dnspython returns the bytes
        return wire


@dataclass(frozen=True, slots=True)
class Packet:
    """A decoded message: header fields and the four sections, meta records left out."""

    id: int
    flags: int
    questions: tuple[Question, ...]
    answers: tuple[Record, ...]
    authorities: tuple[Record, ...]
    additionals: tuple[Record, ...]

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> OPCODE_SHIFT) & OPCODE_MASK

    @property
    def rcode(self) -> int:
        return self.flags & RCODE_MASK

    @property
    def truncated(self) -> bool:
        return bool(self.flags & FLAG_TC)

    def records(self) -> tuple[Record, ...]:
        return self.answers + self.authorities + self.additionals


def decode(
    data: bytes, *, max_bytes: int, max_questions: int, max_records: int, mdns: bool
) -> Packet:
    """Read one message. ``mdns`` splits the class field's top bit off into ``unicast`` and
    ``cache_flush``; without it the class is kept whole. Raises :class:`PacketRejected` (a
    ``DecodeError``) with ``reason`` one of ``oversize``, ``too_many_questions``,
    ``too_many_records``, ``malformed``, and nothing else."""
    if len(data) > max_bytes:
        raise PacketRejected("oversize", f"{len(data)} bytes > {max_bytes}")
    if len(data) < _HEADER.size:
        raise PacketRejected("malformed", f"{len(data)} bytes is shorter than a header")
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if qdcount > max_questions:
        raise PacketRejected("too_many_questions", f"{qdcount} > {max_questions}")
    if ancount + nscount + arcount > max_records:
        raise PacketRejected("too_many_records", f"{ancount + nscount + arcount} > {max_records}")
    parser = dns.wire.Parser(data, _HEADER.size)
    try:
        questions = tuple(_question(parser, mdns) for _ in range(qdcount))
        sections = [_section(parser, count, mdns) for count in (ancount, nscount, arcount)]
    except (dns.exception.DNSException, ValueError, TypeError, struct.error) as exc:
        raise PacketRejected("malformed", str(exc) or type(exc).__name__) from exc
    return Packet(ident, flags, questions, sections[0], sections[1], sections[2])


def _question(parser: dns.wire.Parser, mdns: bool) -> Question:
    name = parser.get_name(None, True)
    rdtype, rdclass = parser.get_struct("!HH")
    if mdns:
        return Question(name, rdtype, rdclass & ~TOP_BIT, bool(rdclass & TOP_BIT))
    return Question(name, rdtype, rdclass)


def _section(parser: dns.wire.Parser, count: int, mdns: bool) -> tuple[Record, ...]:
    records: list[Record] = []
    for _ in range(count):
        name = parser.get_name(None, True)
        rdtype, rdclass, ttl, rdlen = parser.get_struct("!HHIH")
        if rdtype in _META_TYPES:
            parser.get_bytes(rdlen)
            continue
        flush = False
        if mdns:
            flush = bool(rdclass & TOP_BIT)
            rdclass &= ~TOP_BIT
        with parser.restrict_to(rdlen):
            rdata = dns.rdata.from_wire_parser(rdclass, rdtype, parser, None)
        records.append(Record(name, rdtype, rdclass, min(ttl, _MAX_TTL), rdata, flush))
    return tuple(records)


class Fit(enum.Enum):
    """What to do with records that do not fit one datagram.

    ``SPLIT``: more datagrams, each a complete message (mDNS responses, RFC 6762 17).
    ``CONTINUE``: more datagrams, TC set on all but the last (a query whose known answers go on
    in the next packets, RFC 6762 7.2). ``TRUNCATE``: one datagram with TC set when something was
    left out (legacy unicast and LLMNR over UDP, RFC 1035 4.2.1)."""

    SPLIT = "split"
    CONTINUE = "continue"
    TRUNCATE = "truncate"


@dataclass(frozen=True, slots=True)
class Encoded:
    """The datagrams, and how many records fit in none (too large alone: left out)."""

    datagrams: list[bytes]
    left_out: int


_ANSWER, _AUTHORITY, _ADDITIONAL = 1, 2, 3


class _Builder:
    """One message being rendered by dnspython; ``add`` reports whether the item fitted."""

    def __init__(self, ident: int, flags: int, max_size: int, mdns: bool) -> None:
        self._renderer = dns.renderer.Renderer(ident, flags, max_size)  # type: ignore[no-untyped-call]
        self._mdns = mdns
        self.flags = flags
        self.items = 0

    def add_question(self, question: Question) -> bool:
        rdclass = question.rdclass | (TOP_BIT if self._mdns and question.unicast else 0)
        try:
            self._renderer.add_question(question.name, question.rdtype, rdclass)  # type: ignore[no-untyped-call]
        except dns.exception.TooBig:
            return False
        self.items += 1
        return True

    def add_record(self, section: int, record: Record) -> bool:
        rdclass = record.rdclass | (TOP_BIT if self._mdns and record.cache_flush else 0)
        rdataset = dns.rdataset.from_rdata(record.ttl, record.rdata)
        try:
            self._renderer.add_rdataset(  # type: ignore[no-untyped-call]
                section, record.name, rdataset, override_rdclass=rdclass, want_shuffle=False
            )
        except dns.exception.TooBig:
            return False
        self.items += 1
        return True

    def wire(self, flags: int) -> bytes:
        self._renderer.flags = flags
        self._renderer.write_header()  # type: ignore[no-untyped-call]
        out: bytes = self._renderer.get_wire()  # type: ignore[no-untyped-call]
        return out


def encode(
    *,
    ident: int,
    flags: int,
    questions: Sequence[Question] = (),
    answers: Sequence[Record] = (),
    authorities: Sequence[Record] = (),
    additionals: Sequence[Record] = (),
    max_size: int,
    fit: Fit = Fit.SPLIT,
    mdns: bool = True,
) -> Encoded:
    """Render a message as one or more datagrams of at most ``max_size`` bytes.

    Questions go in the first datagram only (with ``SPLIT`` in each, as a legacy unicast reply
    repeats them: every datagram must stand alone). Records keep their order and section; one
    that does not fit even an otherwise empty datagram is left out and counted."""
    datagrams: list[bytes] = []
    left_out = 0
    truncated = False
    repeat_questions = fit is Fit.SPLIT

    def fresh(first: bool) -> _Builder:
        builder = _Builder(ident, flags, max_size, mdns)
        if first or repeat_questions:
            for question in questions:
                if not builder.add_question(question):
                    raise ValueError(f"questions alone exceed {max_size} bytes")
        return builder

    current = fresh(True)
    base_items = current.items
    items: list[tuple[int, Record]] = [
        *((_ANSWER, r) for r in answers),
        *((_AUTHORITY, r) for r in authorities),
        *((_ADDITIONAL, r) for r in additionals),
    ]
    for section, record in items:
        if current.add_record(section, record):
            continue
        if fit is Fit.TRUNCATE:
            truncated = True
            break
        if current.items == base_items:
            left_out += 1
            continue
        datagrams.append(current.wire(flags))
        current = fresh(False)
        base_items = current.items
        if not current.add_record(section, record):
            left_out += 1
    if current.items > base_items or not datagrams:
        datagrams.append(current.wire(flags | (FLAG_TC if truncated else 0)))
    if fit is Fit.CONTINUE and len(datagrams) > 1:
        # RFC 6762 7.2: every packet but the last says more known answers follow.
        datagrams = [_with_tc(d) for d in datagrams[:-1]] + [datagrams[-1]]
    return Encoded(datagrams, left_out)


def chunk_questions(questions: Sequence[Question], max_size: int) -> list[list[Question]]:
    """Questions in groups that each fit a datagram of ``max_size`` (sized uncompressed, so
    a group always fits however dnspython compresses it)."""
    chunks: list[list[Question]] = []
    current: list[Question] = []
    used = _HEADER.size
    for question in questions:
        size = len(question.name.to_wire() or b"") + _QUESTION_TAIL.size
        if current and used + size > max_size:
            chunks.append(current)
            current, used = [], _HEADER.size
        current.append(question)
        used += size
    if current:
        chunks.append(current)
    return chunks


def _with_tc(datagram: bytes) -> bytes:
    flags = struct.unpack_from("!H", datagram, 2)[0] | FLAG_TC
    return datagram[:2] + struct.pack("!H", flags) + datagram[4:]


# Typed constructors for the rdata the engines make. dnspython's rdata classes take their fields
# in unannotated __init__s, so the calls are untyped for mypy; they are made here once.


def a_rdata(address: IPv4Address | IPv6Address) -> dns.rdata.Rdata:
    """An A or AAAA rdata for ``address``."""
    if isinstance(address, IPv4Address):
        return dns.rdtypes.IN.A.A(dns.rdataclass.IN, dns.rdatatype.A, str(address))  # type: ignore[no-untyped-call]
    return dns.rdtypes.IN.AAAA.AAAA(dns.rdataclass.IN, dns.rdatatype.AAAA, str(address))  # type: ignore[no-untyped-call]


def ptr_rdata(target: dns.name.Name) -> dns.rdata.Rdata:
    return dns.rdtypes.ANY.PTR.PTR(dns.rdataclass.IN, dns.rdatatype.PTR, target)  # type: ignore[no-untyped-call]


def srv_rdata(
    port: int, target: dns.name.Name, priority: int = 0, weight: int = 0
) -> dns.rdata.Rdata:
    return dns.rdtypes.IN.SRV.SRV(  # type: ignore[no-untyped-call]
        dns.rdataclass.IN, dns.rdatatype.SRV, priority, weight, port, target
    )


def txt_rdata(strings: Iterable[bytes]) -> dns.rdata.Rdata:
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, list(strings))


def address_of(rdata: dns.rdata.Rdata) -> str | None:
    """The address text of an A or AAAA rdata (None for anything else, generic rdata too)."""
    if isinstance(rdata, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
        return str(rdata.address)
    return None


def rdata_target(rdata: dns.rdata.Rdata) -> dns.name.Name | None:
    """The name a PTR points at, or an SRV's target."""
    if isinstance(rdata, dns.rdtypes.ANY.PTR.PTR | dns.rdtypes.IN.SRV.SRV):
        target: dns.name.Name = rdata.target
        return target
    return None


def srv_fields(rdata: dns.rdata.Rdata) -> tuple[int, int, int, dns.name.Name] | None:
    """(priority, weight, port, target) of an SRV rdata."""
    if isinstance(rdata, dns.rdtypes.IN.SRV.SRV):
        return (int(rdata.priority), int(rdata.weight), int(rdata.port), rdata.target)
    return None


def txt_strings(rdata: dns.rdata.Rdata) -> tuple[bytes, ...] | None:
    """The character-strings of a TXT rdata."""
    if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
        return tuple(rdata.strings)
    return None
