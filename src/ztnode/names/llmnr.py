"""The LLMNR engine of one joined network (RFC 4795), sans I/O: responder and querier.

Why: Windows hosts (and systemd-resolved) look single-label names up with LLMNR rather than
mDNS, so a member that should be reachable by name from them answers LLMNR queries for its host
name; and an application on a member can ask LLMNR in turn. The engine verifies the name is
unique on the link before answering without the tentative bit (RFC 4795 4.1), answers by unicast
from our address of the querier's family, and runs one-shot lookups that collect every answer
until LLMNR_TIMEOUT, with one retransmission, and a hand-over to TCP for truncated answers.
Everything a remote host can make it hold is bounded by :class:`LlmnrLimits`, each bound with a
counter.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address

import dns.name

from ztnode.budget import SecondBudget
from ztnode.errors import LocalProtocolError
from ztnode.names.datagram import Datagram
from ztnode.names.dnscodec import (
    CLASS_ANY,
    CLASS_IN,
    FLAG_QR,
    FLAG_TC,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    Fit,
    Packet,
    PacketRejected,
    Question,
    Record,
    a_rdata,
    address_of,
    decode,
    encode,
)
from ztnode.names.events import HostConflict, HostNotFound, HostResolved, LlmnrEvent, RetryOverTcp
from ztnode.names.hostaddrs import check_positive_ints, checked_addresses, rdtype_of, rdtypes_for
from ztnode.names.mdns_browse import sorted_addresses
from ztnode.names.queues import BoundedQueue

__all__ = [
    "FLAG_C",
    "FLAG_T",
    "FLAG_TC",
    "LLMNR_GROUP_V4",
    "LLMNR_GROUP_V6",
    "LLMNR_PORT",
    "LLMNR_TIMEOUT_MS",
    "LlmnrEngine",
    "LlmnrLimits",
    "validate_label",
]

# RFC 4795 2 and 7: the port, the groups, LLMNR_TIMEOUT (one second on non-wireless links),
# JITTER_INTERVAL (100 ms before the first query of a uniqueness check) and the default TTL.
LLMNR_PORT = 5355
LLMNR_GROUP_V4 = "224.0.0.252"
LLMNR_GROUP_V6 = "ff02::1:3"
LLMNR_TIMEOUT_MS = 1000
JITTER_INTERVAL_MS = 100
DEFAULT_TTL = 30
# RFC 4795 2.1.1: the conflict and tentative bits (where DNS has AA and RD).
FLAG_C = 0x0400
FLAG_T = 0x0100
# RFC 1035 4.2.1: a UDP answer without EDNS is at most 512 bytes; over TCP, what two length bytes
# can say.
UDP_PAYLOAD = 512
TCP_PAYLOAD = 65535
# One retransmission (RFC 4795 2.7), for lookups and for the uniqueness check (4.1).
SENDS = 2

_COUNTERS = (
    "received",
    "oversize",
    "too_many_questions",
    "too_many_records",
    "malformed",
    "bad_opcode",
    "bad_query",
    "not_ours",
    "own_packet",
    "answered",
    "unicast_rate_limited",
    "unmatched_response",
    "tentative_discarded",
    "rcode_error",
    "conflicts",
    "conflict_notices",
    "truncated_responses",
    "tcp_answers",
    "tcp_bad",
    "responders_full",
    "queries_sent",
    "queries_full",
)


@dataclass(frozen=True, slots=True)
class LlmnrLimits:
    """Every bound of an :class:`LlmnrEngine` and the counter of what it refused.

    ``max_queries`` pending lookups (``queries_full``; ``resolve`` raises), ``max_responders``
    distinct responders kept per lookup (``responders_full``), ``max_events`` (oldest kept;
    ``events_dropped``), ``max_outgoing`` datagrams queued between polls (``outgoing_full``),
    ``max_packet_bytes``/``max_questions``/``max_records`` (dropped unread: ``oversize``,
    ``too_many_questions``, ``too_many_records``), ``max_replies_per_second`` answers sent (so
    spoofed queries cannot make us a reflector: ``unicast_rate_limited``), ``udp_payload`` the
    largest UDP answer (TC set beyond), ``ttl`` of our records (seconds), ``max_addresses``."""

    max_queries: int = 256
    max_responders: int = 16
    max_events: int = 4096
    max_outgoing: int = 256
    max_packet_bytes: int = 9000
    max_questions: int = 64
    max_records: int = 256
    max_replies_per_second: int = 50
    udp_payload: int = UDP_PAYLOAD
    ttl: int = DEFAULT_TTL
    max_addresses: int = 32

    def __post_init__(self) -> None:
        check_positive_ints(self)
        if not 512 <= self.udp_payload <= 9000:
            raise ValueError(f"udp_payload must be 512-9000 bytes, not {self.udp_payload}")


class _NameState(enum.Enum):
    IDLE = "idle"
    VERIFYING = "verifying"
    UNIQUE = "unique"
    CONFLICT = "conflict"


@dataclass(slots=True)
class _Lookup:
    """One ``resolve``: a wire query per address type, the answers collected so far."""

    id: int
    text: str
    qname: dns.name.Name
    wire_ids: dict[int, int]  # wire id -> rdtype
    timeout_ms: int
    deadline: int
    next_send: int | None
    sends: int = 0
    addresses: set[str] = field(default_factory=set)
    ttl_ms: int | None = None
    responders: dict[str, frozenset[str]] = field(default_factory=dict)
    tcp_extended: bool = False


def validate_label(name: str) -> str:
    """A single-label name (RFC 4795 2: LLMNR is for names without dots), as compared."""
    text = name.strip().rstrip(".") if isinstance(name, str) else ""
    if not 1 <= len(text.encode()) <= 63 or "." in text or any(ord(c) < 0x20 for c in text):
        raise ValueError(f"{name!r} is not a single-label name of 1-63 bytes (RFC 4795 2)")
    return text


def _label_of(name: dns.name.Name) -> bytes | None:
    """The one label of a single-label absolute name, lowercased (ASCII case folding)."""
    if len(name.labels) != 2 or name.labels[1] != b"":
        return None
    return name.labels[0].lower()


class LlmnrEngine:
    """LLMNR for one link: answer for our host name, look names up. Every method takes
    ``now`` in ms; ``rng`` makes query ids and the uniqueness check's jitter."""

    def __init__(
        self, hostname: str, *, rng: random.Random, limits: LlmnrLimits | None = None
    ) -> None:
        self._limits = limits or LlmnrLimits()
        self._rng = rng
        self.counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self._events: BoundedQueue[LlmnrEvent] = BoundedQueue(
            self._limits.max_events, self.counters, "events_dropped"
        )
        self._outbox: BoundedQueue[Datagram] = BoundedQueue(
            self._limits.max_outgoing, self.counters, "outgoing_full"
        )
        self._hostname = validate_label(hostname)
        self._state = _NameState.IDLE
        self._verify_ids: set[int] = set()
        self._verify_next: int | None = None
        self._verify_sends = 0
        self._addresses: tuple[IPv4Address | IPv6Address, ...] = ()
        self._started = False
        self._closed = False
        self._now = 0
        self._lookups: dict[int, _Lookup] = {}
        self._by_wire_id: dict[int, int] = {}
        self._next_id = 1
        self._budget = SecondBudget()

    # ----------------------------------------------------------------- public: our name

    @property
    def hostname(self) -> str:
        return self._hostname

    @property
    def unique(self) -> bool:
        """The uniqueness check passed: answers go out without the tentative bit."""
        return self._state is _NameState.UNIQUE

    @property
    def conflicted(self) -> bool:
        """Someone else answers for our name; we stay silent until ``set_hostname``."""
        return self._state is _NameState.CONFLICT

    def set_addresses(self, addresses: Sequence[IPv4Address | IPv6Address], now: int) -> None:
        """Our addresses on this network: what A/AAAA answers say, and where answers come from."""
        self._check_open()
        new = checked_addresses(addresses, self._limits.max_addresses)
        self._now = max(self._now, now)
        self._addresses = tuple(new)
        if self._started and self._state is _NameState.IDLE:
            self._verify(now)

    def start(self, now: int) -> None:
        """Verify our name is unique (RFC 4795 4.1) and answer for it; call once."""
        self._check_open()
        if self._started:
            raise LocalProtocolError("LlmnrEngine.start() was already called")
        self._started = True
        self._now = max(self._now, now)
        self._verify(now)

    def set_hostname(self, hostname: str, now: int) -> None:
        """Answer for another name (after a ``HostConflict``): verified afresh."""
        self._check_open()
        self._hostname = validate_label(hostname)
        self._now = max(self._now, now)
        self._state = _NameState.IDLE
        if self._started:
            self._verify(now)

    # ----------------------------------------------------------------- public: lookups

    def resolve(
        self, name: str, now: int, timeout_ms: int = LLMNR_TIMEOUT_MS, family: int = 0
    ) -> int:
        """Look a single-label ``name`` up: a multicast query per address type, answers collected
        until ``timeout_ms``, one retransmission if none came (RFC 4795 2.7); then
        ``HostResolved`` or ``HostNotFound`` (and ``RetryOverTcp`` for truncated answers)."""
        self._check_open()
        text = validate_label(name)
        rdtypes = rdtypes_for(family)
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be a positive int, not {timeout_ms!r}")
        self._now = max(self._now, now)
        query_id = self._next_id
        if text.lower() == self._hostname.lower() and self._state is not _NameState.CONFLICT:
            mine = {str(a) for a in self._addresses if rdtype_of(a) in rdtypes}
            if mine:
                self._events.push(
                    HostResolved(
                        query_id, text, sorted_addresses(mine), self._limits.ttl * 1000, "llmnr"
                    )
                )
                self._next_id += 1
                return query_id
        if len(self._lookups) >= self._limits.max_queries:
            self.counters["queries_full"] += 1
            raise LocalProtocolError(
                f"{self._limits.max_queries} lookups are pending (LlmnrLimits.max_queries)"
            )
        self._next_id += 1
        wire_ids = {self._new_wire_id(): rdtype for rdtype in rdtypes}
        lookup = _Lookup(
            query_id,
            text,
            dns.name.Name([text.encode(), b""]),
            wire_ids,
            timeout_ms,
            now + timeout_ms,
            now,
        )
        self._lookups[query_id] = lookup
        for wire_id in wire_ids:
            self._by_wire_id[wire_id] = query_id
        return query_id

    def cancel(self, query_id: int) -> None:
        """Forget a pending lookup (an unknown or finished id is ignored)."""
        lookup = self._lookups.pop(query_id, None)
        if lookup is not None:
            for wire_id in lookup.wire_ids:
                self._by_wire_id.pop(wire_id, None)

    # ----------------------------------------------------------------- public: driving

    def receive(self, data: bytes, src: tuple[str, int], now: int) -> None:
        """One datagram from UDP 5355. Never raises on any bytes: bad input is a counted drop."""
        if self._closed:
            return
        self._now = max(self._now, now)
        self.counters["received"] += 1
        packet = self._decode(data)
        if packet is None:
            return
        if packet.is_response:
            self._on_response(packet, src, now)
        else:
            reply = self._answer(packet, src, now, self._limits.udp_payload)
            if reply is not None:
                if not self._budget.take(now, self._limits.max_replies_per_second):
                    self.counters["unicast_rate_limited"] += 1
                    return
                self._outbox.push(Datagram(reply, (src[0], src[1]), self._source_for(src[0])))

    def answer_tcp(self, data: bytes, src: tuple[str, int]) -> bytes | None:
        """The answer to one query received over TCP (one message without TCP's length prefix),
        or None when we do not answer it. Keeps no state."""
        if self._closed:
            return None
        packet = self._decode(data)
        if packet is None or packet.is_response:
            return None
        return self._answer(packet, src, self._now, TCP_PAYLOAD)

    def receive_tcp_answer(self, query_id: int, data: bytes, now: int) -> None:
        """The TCP answer to a ``RetryOverTcp``; merged into the lookup if it still waits."""
        self._now = max(self._now, now)
        lookup = self._lookups.get(query_id)
        packet = self._decode(data, TCP_PAYLOAD)
        if lookup is None or packet is None or not packet.is_response:
            self.counters["tcp_bad"] += 1
            return
        if packet.id not in lookup.wire_ids:
            self.counters["tcp_bad"] += 1
            return
        self.counters["tcp_answers"] += 1
        self._collect(lookup, packet, None, now)

    def poll(self, now: int) -> list[Datagram]:
        """What is due at ``now``: answers, the uniqueness check, lookups' queries."""
        if self._closed:
            return []
        self._now = max(self._now, now)
        out = self._outbox.drain()
        out += self._run_verification(now)
        for lookup in list(self._lookups.values()):
            if lookup.deadline <= now:
                if lookup.addresses or lookup.sends >= SENDS:
                    self._finish(lookup)
                    continue
                lookup.next_send = now
                lookup.deadline = now + lookup.timeout_ms
            if lookup.next_send is not None and lookup.next_send <= now:
                out += self._send_lookup(lookup)
                lookup.sends += 1
                lookup.next_send = None
        return out

    def next_deadline(self) -> int | None:
        if self._closed:
            return None
        if len(self._outbox):
            return self._now
        times: list[int | None] = [self._verify_next]
        for lookup in self._lookups.values():
            times += [lookup.deadline, lookup.next_send]
        return min((t for t in times if t is not None), default=None)

    def events(self) -> list[LlmnrEvent]:
        return self._events.drain()

    def close(self, now: int) -> list[Datagram]:
        """What was still queued; the engine is finished afterwards."""
        if self._closed:
            return []
        self._now = max(self._now, now)
        out = self._outbox.drain()
        self._closed = True
        self._lookups.clear()
        self._by_wire_id.clear()
        return out

    # ----------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise LocalProtocolError("this LlmnrEngine is closed")

    def _decode(self, data: bytes, max_bytes: int | None = None) -> Packet | None:
        try:
            packet = decode(
                bytes(data),
                max_bytes=max_bytes or self._limits.max_packet_bytes,
                max_questions=self._limits.max_questions,
                max_records=self._limits.max_records,
                mdns=False,
            )
        except PacketRejected as exc:
            self.counters[exc.reason] += 1
            return None
        if packet.opcode != 0:
            self.counters["bad_opcode"] += 1
            return None
        return packet

    def _new_wire_id(self) -> int:
        while True:
            wire_id = self._rng.getrandbits(16)
            if wire_id not in self._by_wire_id and wire_id not in self._verify_ids:
                return wire_id

    def _groups(self) -> list[tuple[str, int]]:
        groups: list[tuple[str, int]] = []
        if any(isinstance(a, IPv4Address) for a in self._addresses):
            groups.append((LLMNR_GROUP_V4, LLMNR_PORT))
        if any(isinstance(a, IPv6Address) for a in self._addresses):
            groups.append((LLMNR_GROUP_V6, LLMNR_PORT))
        return groups

    def _is_own(self, ip: str) -> bool:
        try:
            address = ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        return address in self._addresses

    def _source_for(self, ip: str) -> str | None:
        """RFC 4795 2.3: answer from our address of the querier's family."""
        try:
            version = ip_address(ip.split("%", 1)[0]).version
        except ValueError:
            return None
        return next((str(a) for a in self._addresses if a.version == version), None)

    def _records(self, name: dns.name.Name, rdtype: int) -> list[Record]:
        return [
            Record(name, rdtype_of(a), CLASS_IN, self._limits.ttl, a_rdata(a))
            for a in self._addresses
            if rdtype in (rdtype_of(a), TYPE_ANY)
        ]

    def _answer(
        self, packet: Packet, src: tuple[str, int], now: int, max_size: int
    ) -> bytes | None:
        """RFC 4795 2.1.1 and 2.3: one question, no answer or authority records, our name only;
        an A/AAAA/ANY question gets our addresses of that type (none: an empty answer, so the
        asker learns the name exists), with T set until our name is verified."""
        if len(packet.questions) != 1 or packet.answers or packet.authorities:
            self.counters["bad_query"] += 1
            return None
        if self._is_own(src[0]):
            self.counters["own_packet"] += 1
            return None
        question = packet.questions[0]
        if _label_of(question.name) != self._hostname.lower().encode():
            self.counters["not_ours"] += 1
            return None
        if self._state in (_NameState.IDLE, _NameState.CONFLICT) or not self._addresses:
            self.counters["not_ours"] += 1
            return None
        if packet.flags & FLAG_C:
            # RFC 4795 4.2: a querier saw several answers for our name. We do not answer; we
            # check the name again, and a reply from someone else is a conflict.
            self.counters["conflict_notices"] += 1
            if self._state is _NameState.UNIQUE:
                self._verify(now)
            return None
        if question.rdclass not in (CLASS_IN, CLASS_ANY) or question.rdtype not in (
            TYPE_A,
            TYPE_AAAA,
            TYPE_ANY,
        ):
            self.counters["not_ours"] += 1
            return None
        flags = FLAG_QR | (FLAG_T if self._state is _NameState.VERIFYING else 0)
        encoded = encode(
            ident=packet.id,
            flags=flags,
            questions=[question],
            answers=self._records(question.name, question.rdtype),
            max_size=max_size,
            fit=Fit.TRUNCATE,
            mdns=False,
        )
        self.counters["answered"] += 1
        return encoded.datagrams[0]

    # uniqueness check (RFC 4795 4.1)

    def _verify(self, now: int) -> None:
        if not self._addresses:
            return
        self._state = _NameState.VERIFYING
        self._verify_sends = 0
        self._verify_ids = set()
        self._verify_next = now + self._rng.randint(0, JITTER_INTERVAL_MS)

    def _run_verification(self, now: int) -> list[Datagram]:
        if self._state is not _NameState.VERIFYING or self._verify_next is None:
            return []
        if self._verify_next > now:
            return []
        if self._verify_sends >= SENDS:
            self._state = _NameState.UNIQUE
            self._verify_next = None
            self._verify_ids = set()
            return []
        self._verify_sends += 1
        self._verify_next = now + LLMNR_TIMEOUT_MS
        qname = dns.name.Name([self._hostname.encode(), b""])
        out: list[Datagram] = []
        for rdtype in sorted({rdtype_of(a) for a in self._addresses}):
            wire_id = self._new_wire_id()
            self._verify_ids.add(wire_id)
            out += self._multicast_query(wire_id, Question(qname, rdtype))
        return out

    def _multicast_query(self, wire_id: int, question: Question, flags: int = 0) -> list[Datagram]:
        encoded = encode(
            ident=wire_id, flags=flags, questions=[question], max_size=UDP_PAYLOAD, mdns=False
        )
        self.counters["queries_sent"] += 1
        return [Datagram(d, g) for d in encoded.datagrams for g in self._groups()]

    # lookups

    def _send_lookup(self, lookup: _Lookup) -> list[Datagram]:
        out: list[Datagram] = []
        for wire_id, rdtype in lookup.wire_ids.items():
            out += self._multicast_query(wire_id, Question(lookup.qname, rdtype))
        return out

    def _on_response(self, packet: Packet, src: tuple[str, int], now: int) -> None:
        if self._is_own(src[0]):
            self.counters["own_packet"] += 1
            return
        if packet.id in self._verify_ids and self._state is _NameState.VERIFYING:
            if self._matches(packet, dns.name.Name([self._hostname.encode(), b""])):
                # RFC 4795 4.1: any answer for our name from another host, tentative or not.
                self.counters["conflicts"] += 1
                self._state = _NameState.CONFLICT
                self._verify_next = None
                self._verify_ids = set()
                self._events.push(HostConflict(self._hostname))
            return
        query_id = self._by_wire_id.get(packet.id)
        lookup = self._lookups.get(query_id) if query_id is not None else None
        if lookup is None or not self._matches(packet, lookup.qname):
            self.counters["unmatched_response"] += 1
            return
        if packet.flags & FLAG_T:
            # RFC 4795 2.1.1: a tentative answer is discarded by an ordinary querier.
            self.counters["tentative_discarded"] += 1
            return
        if packet.rcode != 0:
            self.counters["rcode_error"] += 1
            return
        if packet.truncated:
            self.counters["truncated_responses"] += 1
            retry = encode(
                ident=packet.id,
                flags=0,
                questions=[Question(lookup.qname, lookup.wire_ids[packet.id])],
                max_size=UDP_PAYLOAD,
                mdns=False,
            )
            self._events.push(RetryOverTcp(lookup.id, src[0], retry.datagrams[0]))
            if not lookup.tcp_extended:
                lookup.tcp_extended = True
                lookup.deadline = max(lookup.deadline, now + lookup.timeout_ms)
        self._collect(lookup, packet, src[0], now)

    @staticmethod
    def _matches(packet: Packet, qname: dns.name.Name) -> bool:
        return len(packet.questions) == 1 and packet.questions[0].name == qname

    def _collect(self, lookup: _Lookup, packet: Packet, responder: str | None, now: int) -> None:
        found: set[str] = set()
        ttl_ms: int | None = None
        wanted = lookup.wire_ids.get(packet.id)
        for record in packet.answers:
            if record.name != lookup.qname or wanted not in (record.rdtype, TYPE_ANY):
                continue
            address = address_of(record.rdata)
            if address is None:
                continue
            found.add(address)
            ttl_ms = record.ttl * 1000 if ttl_ms is None else min(ttl_ms, record.ttl * 1000)
        if responder is not None:
            if responder not in lookup.responders and len(lookup.responders) >= (
                self._limits.max_responders
            ):
                self.counters["responders_full"] += 1
                return
            lookup.responders[responder] = lookup.responders.get(responder, frozenset()) | found
        lookup.addresses |= found
        if ttl_ms is not None:
            lookup.ttl_ms = ttl_ms if lookup.ttl_ms is None else min(lookup.ttl_ms, ttl_ms)

    def _finish(self, lookup: _Lookup) -> None:
        self.cancel(lookup.id)
        if lookup.addresses:
            self._events.push(
                HostResolved(
                    lookup.id,
                    lookup.text,
                    sorted_addresses(lookup.addresses),
                    lookup.ttl_ms or 0,
                    "llmnr",
                )
            )
        else:
            self._events.push(HostNotFound(lookup.id, lookup.text, "llmnr"))
        answering = [ip for ip, found in lookup.responders.items() if found]
        distinct = {found for found in lookup.responders.values() if found}
        if len(distinct) > 1:
            # RFC 4795 4.2: several hosts answered for one name; tell each, with the C bit.
            # Answers from several addresses with the same data are one host answering the
            # query on each of its families' groups (our queries go to both), not a conflict.
            for ip in answering:
                for wire_id, rdtype in lookup.wire_ids.items():
                    encoded = encode(
                        ident=wire_id,
                        flags=FLAG_C,
                        questions=[Question(lookup.qname, rdtype)],
                        max_size=UDP_PAYLOAD,
                        mdns=False,
                    )
                    self._outbox.push(Datagram(encoded.datagrams[0], (ip, LLMNR_PORT)))
