"""The mDNS/DNS-SD engine of one joined network (RFC 6762, RFC 6763), sans I/O.

Why: a ZeroTier network is one link, and members find each other's names and services on it
with multicast DNS. The engine is fed every datagram from UDP 5353 with ``receive`` and the
clock with ``poll``, and returns the datagrams to send; it owns the host name and the services
we publish (probing, announcing, defending, goodbyes), answers queries, and browses and resolves
for the application. The adapter (``ztnode.sockets``) only moves bytes and drains ``events()``.

Everything a remote host can make it hold is bounded by :class:`MdnsLimits`, and each bound has
a counter when it bites: the cache, the event and outgoing queues, the lookups, the size of what
is accepted. Records nobody of ours asked for are not cached at all.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

import dns.name

from ztnode.budget import SecondBudget
from ztnode.errors import LocalProtocolError
from ztnode.names.datagram import Datagram
from ztnode.names.dnscodec import (
    CLASS_IN,
    FLAG_AA,
    FLAG_QR,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_PTR,
    TYPE_SRV,
    TYPE_TXT,
    Encoded,
    Fit,
    Packet,
    PacketRejected,
    Question,
    Record,
    RecordKey,
    address_of,
    chunk_questions,
    decode,
    encode,
    owner_key,
    rdata_target,
)
from ztnode.names.events import (
    HostNotFound,
    HostRegistered,
    HostRenamed,
    HostResolved,
    MdnsEvent,
    ServiceFound,
    ServiceLost,
    ServiceRegistered,
    ServiceRenamed,
    ServiceUpdated,
)
from ztnode.names.hostaddrs import check_positive_ints, checked_addresses, rdtype_of, rdtypes_for
from ztnode.names.labels import normalize_name
from ztnode.names.mdns_browse import (
    FIRST_QUERY_DELAY_MS,
    Browse,
    HostQuery,
    LookupTable,
    resolve_instance,
    sorted_addresses,
)
from ztnode.names.mdns_cache import RecordCache
from ztnode.names.mdns_probe import (
    TIEBREAK_DEFER_MS,
    Claim,
    ClaimAction,
    ClaimState,
    ConflictLimiter,
    compare_probes,
)
from ztnode.names.mdns_records import (
    HOST_TTL,
    SERVICES_NAME,
    ServiceRecords,
    ServiceSpec,
    display_name,
    host_name,
    host_records,
    instance_name,
    normalize_service_type,
    numbered_host,
    numbered_instance,
    service_records,
    service_type_name,
    validate_hostname,
)
from ztnode.names.mdns_responder import SHARED_DELAY_MS, MulticastScheduler, OwnRecords
from ztnode.names.queues import BoundedQueue

__all__ = ["MDNS_GROUP_V4", "MDNS_GROUP_V6", "MDNS_PORT", "MdnsEngine", "MdnsLimits"]

# RFC 6762 3 / 22: the port and the link-local groups.
MDNS_PORT = 5353
MDNS_GROUP_V4 = "224.0.0.251"
MDNS_GROUP_V6 = "ff02::fb"
# RFC 6762 6.7: answers to legacy (non-5353) queriers carry TTLs of at most ten seconds.
LEGACY_TTL_CAP = 10
# RFC 6762 7.2: a responder waits 400-500 ms for the rest of a truncated query's known answers.
TRUNCATED_QUERY_DELAY_MS = (400, 500)

_COUNTERS = (
    "received",
    "oversize",
    "too_many_questions",
    "too_many_records",
    "malformed",
    "bad_opcode",
    "bad_source_port",
    "unsolicited",
    "known_answer_suppressed",
    "unicast_rate_limited",
    "services_full",
    "browses_full",
    "queries_full",
    "conflicts",
    "tiebreak_lost",
    "probes_sent",
    "announcements_sent",
    "responses_sent",
    "unicast_responses_sent",
    "legacy_responses_sent",
    "queries_sent",
    "goodbyes_sent",
    "no_address",
    "left_out",
)


@dataclass(frozen=True, slots=True)
class MdnsLimits:
    """Every bound of an :class:`MdnsEngine` (and the counter that counts what it refused).

    - ``max_cache_entries`` records cached (``cache_full``);
    - ``max_services`` registrations (``services_full``; ``register`` raises);
    - ``max_browses`` active browses (``browses_full``; ``browse`` raises);
    - ``max_queries`` pending one-shot lookups (``queries_full``; ``resolve_host`` raises);
    - ``max_lookups`` SRV/TXT/address questions browses wait on (``lookups_full``);
    - ``max_events`` events between two ``events()`` (oldest kept; ``events_dropped``);
    - ``max_outgoing`` datagrams queued between two ``poll()`` (unicast replies, goodbyes;
      ``outgoing_full``);
    - ``max_packet_bytes``, ``max_questions``, ``max_records``: a datagram over any is dropped
      unread (``oversize``, ``too_many_questions``, ``too_many_records``);
    - ``max_payload``: the largest datagram sent; longer answers are split (RFC 6762 17 allows
      9000 bytes, ZeroTier's MTU makes 1440 the safe default);
    - ``max_unicast_replies_per_second``: replies sent to a querier's own address (legacy and QU)
      per second, so spoofed queries cannot turn us into a reflector (``unicast_rate_limited``);
    - ``max_addresses``: host addresses ``set_addresses`` accepts.
    """

    max_cache_entries: int = 1024
    max_services: int = 256
    max_browses: int = 64
    max_queries: int = 256
    max_lookups: int = 1024
    max_events: int = 4096
    max_outgoing: int = 256
    max_packet_bytes: int = 9000
    max_questions: int = 64
    max_records: int = 256
    max_payload: int = 1440
    max_unicast_replies_per_second: int = 50
    max_addresses: int = 32

    def __post_init__(self) -> None:
        check_positive_ints(self)
        if not 512 <= self.max_payload <= 9000:
            raise ValueError(
                f"max_payload must be 512-9000 bytes (RFC 6762 17), not {self.max_payload}"
            )


#: The host name, the addresses, its ``dns.name.Name``, canonical form and unique records.
_HostMemo = tuple[
    str, tuple[IPv4Address | IPv6Address, ...], dns.name.Name, bytes, tuple[Record, ...]
]


@dataclass(slots=True)
class _Service:
    key: int
    spec: ServiceSpec
    number: int = 1
    claim: Claim = field(default_factory=Claim)
    registered_as: str | None = None
    records: ServiceRecords | None = None

    @property
    def instance(self) -> str:
        return numbered_instance(self.spec.instance, self.number)

    @property
    def name(self) -> dns.name.Name:
        return instance_name(self.instance, self.spec.service_type)


class MdnsEngine:
    """Multicast DNS for one link: publish the host name and services, answer, browse, resolve.

    Every method takes ``now`` in integer milliseconds; randomness (RFC 6762's delays) comes
    from ``rng``. ``poll(now)`` returns what is due, ``next_deadline()`` says when to poll next,
    ``events()`` drains what happened. ``receive`` never raises on any bytes."""

    def __init__(
        self, hostname: str, *, rng: random.Random, limits: MdnsLimits | None = None
    ) -> None:
        self._limits = limits or MdnsLimits()
        self._rng = rng
        self.counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self._events: BoundedQueue[MdnsEvent] = BoundedQueue(
            self._limits.max_events, self.counters, "events_dropped"
        )
        self._outbox: BoundedQueue[Datagram] = BoundedQueue(
            self._limits.max_outgoing, self.counters, "outgoing_full"
        )
        self._host_base = validate_hostname(hostname)
        self._host_number = 1
        self._host_memo: _HostMemo | None = None
        self._host_claim = Claim()
        self._host_registered_as: str | None = None
        self._addresses: tuple[IPv4Address | IPv6Address, ...] = ()
        self._started = False
        self._closed = False
        self._now = 0
        self._services: dict[int, _Service] = {}
        self._next_key = 1
        self._next_id = 1
        self._limiter = ConflictLimiter()
        self._scheduler = MulticastScheduler(self.counters)
        self._own: OwnRecords | None = None
        self._cache = RecordCache(self._limits.max_cache_entries, rng, self.counters)
        self._browses: dict[int, Browse] = {}
        self._browse_types: dict[dns.name.Name, int] = {}
        self._queries: dict[int, HostQuery] = {}
        self._lookups = LookupTable(self._limits.max_lookups, self.counters)
        self._unicast_budget = SecondBudget()

    # ----------------------------------------------------------------- public: the host

    @property
    def hostname(self) -> str:
        """The single label we serve as ``<hostname>.local.`` (changes after a conflict)."""
        return numbered_host(self._host_base, self._host_number)

    @property
    def addresses(self) -> tuple[IPv4Address | IPv6Address, ...]:
        return self._addresses

    def start(self, now: int) -> None:
        """Begin claiming the host name (and services registered so far) once there are
        addresses to send from. Call once."""
        self._check_open()
        if self._started:
            raise LocalProtocolError("MdnsEngine.start() was already called")
        self._started = True
        self._now = max(self._now, now)
        self._start_claims(now)

    def set_addresses(self, addresses: Sequence[IPv4Address | IPv6Address], now: int) -> None:
        """The host's addresses on this network: its A/AAAA records. A change is announced
        (RFC 6762 8.4) with goodbyes for the addresses that went away."""
        self._check_open()
        new = checked_addresses(addresses, self._limits.max_addresses)
        if set(new) == set(self._addresses):
            return
        self._now = max(self._now, now)
        old_records = host_records(self.hostname, self._addresses)
        groups_before = self._groups()
        self._addresses = tuple(new)
        self._own = None
        if self._host_claim.owned:
            kept = {r.key for r in host_records(self.hostname, self._addresses)}
            gone = [r for r in old_records if r.key not in kept]
            if gone:
                self._queue_goodbye(gone, groups_before)
            if self._addresses:
                self._host_claim.announce(now)
        self._start_claims(now)

    # ----------------------------------------------------------------- public: services

    def register(self, service: ServiceSpec, now: int) -> int:
        """Publish ``service``; returns its key. It is probed (RFC 6762 8.1), renamed on a
        conflict (``ServiceRenamed``), then announced (``ServiceRegistered``)."""
        self._check_open()
        if not isinstance(service, ServiceSpec):
            raise ValueError(f"register() takes a ServiceSpec, not {type(service).__name__}")
        if len(self._services) >= self._limits.max_services:
            self.counters["services_full"] += 1
            raise LocalProtocolError(
                f"{self._limits.max_services} services are registered (MdnsLimits.max_services)"
            )
        self._now = max(self._now, now)
        svc = _Service(self._next_key, service)
        self._next_key += 1
        taken = {s.name for s in self._services.values()}
        first = display_name(svc.name)
        while svc.name in taken:
            svc.number += 1
        if svc.number > 1:
            self._emit(ServiceRenamed(svc.key, first, display_name(svc.name)))
        self._services[svc.key] = svc
        self._start_claims(now)
        return svc.key

    def unregister(self, key: int, now: int) -> None:
        """Withdraw service ``key``: goodbyes (TTL 0, RFC 6762 10.1) if it was announced."""
        self._check_open()
        svc = self._services.pop(key, None)
        if svc is None:
            raise LocalProtocolError(f"no registered service has key {key}")
        self._now = max(self._now, now)
        if svc.claim.owned:
            self._queue_goodbye(self._goodbye_records([svc]), self._groups())
        self._own = None

    def close(self, now: int) -> list[Datagram]:
        """Goodbyes for everything we announced, and whatever was still queued; the engine is
        finished afterwards (``receive`` ignores input, ``poll`` returns nothing)."""
        if self._closed:
            return []
        self._now = max(self._now, now)
        owned = [s for s in self._services.values() if s.claim.owned]
        records = self._goodbye_records(owned)
        if self._host_claim.owned:
            records = list(host_records(self.hostname, self._addresses)) + records
        if records:
            self._queue_goodbye(records, self._groups())
        out = self._outbox.drain()
        self._closed = True
        self._services.clear()
        self._browses.clear()
        self._queries.clear()
        return out

    # ----------------------------------------------------------------- public: browsing

    def browse(self, service_type: str, now: int) -> int:
        """Browse for ``service_type`` (``_http._tcp``); returns the browse id of the
        ``ServiceFound``/``ServiceUpdated``/``ServiceLost`` events."""
        self._check_open()
        normalized = normalize_service_type(service_type)
        if len(self._browses) >= self._limits.max_browses:
            self.counters["browses_full"] += 1
            raise LocalProtocolError(
                f"{self._limits.max_browses} browses are active (MdnsLimits.max_browses)"
            )
        self._now = max(self._now, now)
        type_name = service_type_name(normalized)
        browse_id = self._take_id()
        delay = self._rng.randint(*FIRST_QUERY_DELAY_MS)
        self._browses[browse_id] = Browse(browse_id, normalized, type_name, now + delay)
        self._browse_types[type_name] = self._browse_types.get(type_name, 0) + 1
        self._reconcile(now)
        return browse_id

    def stop_browse(self, browse_id: int) -> None:
        """Stop a browse (an unknown or stopped id is ignored)."""
        browse = self._browses.pop(browse_id, None)
        if browse is None:
            return
        count = self._browse_types.get(browse.type_name, 0) - 1
        if count <= 0:
            self._browse_types.pop(browse.type_name, None)
        else:
            self._browse_types[browse.type_name] = count
        self._reconcile(self._now)

    def resolve_host(self, name: str, now: int, timeout_ms: int = 2000, family: int = 0) -> int:
        """Look up ``name`` (``x`` or ``x.local``) once (RFC 6762 5.1): answered at once from
        the cache or our own records, else a QU query and one retry after a second; then
        ``HostResolved`` or, at ``timeout_ms``, ``HostNotFound``. ``family`` is 0 (both),
        ``socket.AF_INET`` or ``socket.AF_INET6``."""
        self._check_open()
        text = normalize_name(name) if isinstance(name, str) else ""
        if text and "." not in text:
            text += ".local"
        labels = text.split(".")
        if (
            len(labels) < 2
            or labels[-1] != "local"
            or any(not 1 <= len(x.encode()) <= 63 for x in labels)
            or len(text) > 253
        ):
            raise ValueError(f"{name!r} is not a host name under .local (RFC 6762 3)")
        rdtypes = rdtypes_for(family)
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be a positive int, not {timeout_ms!r}")
        self._now = max(self._now, now)
        query_id = self._take_id()
        qname = dns.name.Name([*(x.encode() for x in labels), b""])
        if self._host_claim.owned and qname == self._host()[0]:
            mine = [str(a) for a in self._addresses if rdtype_of(a) in rdtypes]
            if mine:
                self._emit(
                    HostResolved(
                        query_id, text, sorted_addresses(set(mine)), HOST_TTL * 1000, "mdns"
                    )
                )
                return query_id
        query = HostQuery(query_id, text, qname, rdtypes, now + timeout_ms, now)
        if self._answer_query(query, now):
            return query_id
        if len(self._queries) >= self._limits.max_queries:
            self.counters["queries_full"] += 1
            raise LocalProtocolError(
                f"{self._limits.max_queries} lookups are pending (MdnsLimits.max_queries)"
            )
        self._queries[query_id] = query
        return query_id

    def cancel(self, query_id: int) -> None:
        """Forget a pending lookup (an unknown or finished id is ignored)."""
        self._queries.pop(query_id, None)

    # ----------------------------------------------------------------- public: driving

    def receive(self, data: bytes, src: tuple[str, int], now: int) -> None:
        """One datagram from UDP 5353 (``src`` is the sender's (ip, port)). Malformed, oversized
        or unexpected input is a counted drop; this never raises on any bytes."""
        if self._closed:
            return
        self._now = max(self._now, now)
        self.counters["received"] += 1
        try:
            packet = decode(
                bytes(data),
                max_bytes=self._limits.max_packet_bytes,
                max_questions=self._limits.max_questions,
                max_records=self._limits.max_records,
                mdns=True,
            )
        except PacketRejected as exc:
            self.counters[exc.reason] += 1
            return
        # RFC 6762 18.3 and 18.11: other opcodes and non-zero rcodes are silently ignored.
        if packet.opcode != 0 or packet.rcode != 0:
            self.counters["bad_opcode"] += 1
            return
        if packet.is_response:
            self._on_response(packet, src, now)
        else:
            self._on_query(packet, src, now)

    def poll(self, now: int) -> list[Datagram]:
        """Everything due at ``now``: replies, probes, announcements, answers, queries."""
        if self._closed:
            return []
        self._now = max(self._now, now)
        out = self._outbox.drain()
        if self._cache.expire(now):
            self._reconcile(now)
        for query in [q for q in self._queries.values() if q.deadline <= now]:
            del self._queries[query.id]
            self._emit(HostNotFound(query.id, query.text, "mdns"))
        out += self._run_claims(now)
        keys = self._scheduler.take_due(now)
        own = self._own_records()
        answers = [r for k in keys if (r := own.get(k)) is not None]
        if answers:
            out += self._send_response(answers, now, with_additionals=True)
        out += self._send_queries(now)
        return out

    def next_deadline(self) -> int | None:
        """When ``poll`` has something to do next (ms), or None."""
        if self._closed:
            return None
        if len(self._outbox):
            return self._now
        times = [
            self._host_claim.next_at,
            self._scheduler.next_deadline(),
            self._cache.next_deadline(),
            self._lookups.next_deadline(),
        ]
        times += [s.claim.next_at for s in self._services.values()]
        times += [b.next_query for b in self._browses.values()]
        for query in self._queries.values():
            times += [query.deadline, query.next_send]
        return min((t for t in times if t is not None), default=None)

    def events(self) -> list[MdnsEvent]:
        """What happened since the last call, oldest first."""
        return self._events.drain()

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    @property
    def pending_lookups(self) -> int:
        return len(self._lookups)

    # ----------------------------------------------------------------- internals: records

    def _check_open(self) -> None:
        if self._closed:
            raise LocalProtocolError("this MdnsEngine is closed")

    def _take_id(self) -> int:
        value = self._next_id
        self._next_id += 1
        return value

    def _emit(self, event: MdnsEvent) -> None:
        self._events.push(event)

    def _groups(self) -> list[tuple[str, int]]:
        groups: list[tuple[str, int]] = []
        if any(isinstance(a, IPv4Address) for a in self._addresses):
            groups.append((MDNS_GROUP_V4, MDNS_PORT))
        if any(isinstance(a, IPv6Address) for a in self._addresses):
            groups.append((MDNS_GROUP_V6, MDNS_PORT))
        return groups

    def _host(self) -> tuple[dns.name.Name, bytes, tuple[Record, ...]]:
        """Our host name, its canonical wire form and its unique records, made again only when
        the name or the addresses change: every response heard is checked against them."""
        hostname, addresses = self.hostname, self._addresses
        memo = self._host_memo
        if memo is None or memo[0] != hostname or memo[1] != addresses:
            name = host_name(hostname)
            memo = (hostname, addresses, name, owner_key(name), host_records(hostname, addresses))
            self._host_memo = memo
        return memo[2], memo[3], memo[4]

    def _host_unique(self) -> tuple[Record, ...]:
        return self._host()[2]

    def _service_records(self, svc: _Service) -> ServiceRecords:
        if svc.records is None:
            svc.records = service_records(svc.spec, svc.instance, self.hostname)
        return svc.records

    def _own_records(self) -> OwnRecords:
        """What we answer for: records of names whose probes we won (RFC 6762 8.1)."""
        if self._own is None:
            records: list[Record] = []
            if self._host_claim.owned:
                records += self._host_unique()
            for svc in self._services.values():
                if svc.claim.owned:
                    records += self._service_records(svc).all()
            self._own = OwnRecords(records)
            self._scheduler.prune(self._own.keys())
        return self._own

    def _goodbye_records(self, services: Iterable[_Service]) -> list[Record]:
        """The records of ``services`` to say goodbye to; a type enumeration PTR stays while
        another announced service of ours has the same type (RFC 6763 9)."""
        leaving = list(services)
        leaving_keys = {s.key for s in leaving}
        staying_types = {
            s.spec.service_type.lower()
            for s in self._services.values()
            if s.key not in leaving_keys and s.claim.owned
        }
        records: list[Record] = []
        for svc in leaving:
            for record in self._service_records(svc).all():
                if record.name == SERVICES_NAME and svc.spec.service_type.lower() in staying_types:
                    continue
                records.append(record)
        return records

    def _start_claims(self, now: int) -> None:
        """Probing starts once ``start`` was called and there is an address to send from."""
        if not self._started or not self._addresses:
            return
        if self._host_claim.state is ClaimState.IDLE:
            self._host_claim.probe(now, self._limiter.probe_delay(now, self._rng))
        for svc in self._services.values():
            if svc.claim.state is ClaimState.IDLE:
                svc.claim.probe(now, self._limiter.probe_delay(now, self._rng))

    # ----------------------------------------------------------------- internals: sending

    def _multicast(
        self, encoded: Encoded, groups: list[tuple[str, int]] | None = None
    ) -> list[Datagram]:
        self.counters["left_out"] += encoded.left_out
        targets = self._groups() if groups is None else groups
        if not targets:
            self.counters["no_address"] += len(encoded.datagrams)
            return []
        return [Datagram(d, g) for d in encoded.datagrams for g in targets]

    def _queue_goodbye(self, records: Sequence[Record], groups: list[tuple[str, int]]) -> None:
        # RFC 6762 10.1: the same records with TTL 0. No cache-flush bit: on a goodbye it would
        # tell caches to drop our other, still valid, records of the same rrset too.
        unique = list({r.key: r.with_ttl(0).with_flush(False) for r in records}.values())
        encoded = encode(
            ident=0,
            flags=FLAG_QR | FLAG_AA,
            answers=unique,
            max_size=self._limits.max_payload,
        )
        for datagram in self._multicast(encoded, groups):
            self._outbox.push(datagram)
        self.counters["goodbyes_sent"] += len(encoded.datagrams)
        self._scheduler.forget(r.key for r in records)

    def _send_response(
        self, records: Sequence[Record], now: int, *, with_additionals: bool
    ) -> list[Datagram]:
        answers = list({r.key: r for r in records}.values())
        additionals = self._own_records().additionals(answers) if with_additionals else []
        encoded = encode(
            ident=0,
            flags=FLAG_QR | FLAG_AA,
            answers=answers,
            additionals=additionals,
            max_size=self._limits.max_payload,
        )
        out = self._multicast(encoded)
        if out:
            self._scheduler.sent([r.key for r in answers + additionals], now)
        self.counters["responses_sent"] += len(encoded.datagrams)
        return out

    def _run_claims(self, now: int) -> list[Datagram]:
        out: list[Datagram] = []
        announce: list[Record] = []
        entities: list[tuple[Claim, _Service | None]] = [(self._host_claim, None)]
        entities += [(s.claim, s) for s in self._services.values()]
        for claim, svc in entities:
            action = claim.due(now)
            if action is ClaimAction.WON:
                claim.won(now)
                self._own = None
                self._won(svc)
                action = claim.due(now)
            if action is ClaimAction.PROBE:
                out += self._send_probe(svc)
                claim.probed(now)
            elif action is ClaimAction.ANNOUNCE:
                if svc is None:
                    announce += self._host_unique()
                else:
                    announce += self._service_records(svc).all()
                claim.announced(now)
        if announce:
            self.counters["announcements_sent"] += 1
            out += self._send_response(announce, now, with_additionals=True)
        return out

    def _won(self, svc: _Service | None) -> None:
        if svc is None:
            if self._host_registered_as != self.hostname:
                self._host_registered_as = self.hostname
                self._emit(HostRegistered(self.hostname))
            return
        name = display_name(svc.name)
        if svc.registered_as != name:
            svc.registered_as = name
            self._emit(ServiceRegistered(svc.key, name))

    def _send_probe(self, svc: _Service | None) -> list[Datagram]:
        """RFC 6762 8.1: a QU query for the name, type ANY, the proposed records in the authority
        section (without the cache-flush bit, which is for answers)."""
        if svc is None:
            name, _, records = self._host()
        else:
            name, records = svc.name, self._service_records(svc).unique
        encoded = encode(
            ident=0,
            flags=0,
            questions=[Question(name, TYPE_ANY, CLASS_IN, unicast=True)],
            authorities=[r.with_flush(False) for r in records],
            max_size=self._limits.max_payload,
        )
        self.counters["probes_sent"] += len(encoded.datagrams)
        return self._multicast(encoded)

    def _send_queries(self, now: int) -> list[Datagram]:
        questions: dict[tuple[dns.name.Name, int], Question] = {}

        def ask(name: dns.name.Name, rdtype: int, unicast: bool = False) -> None:
            questions.setdefault((name, rdtype), Question(name, rdtype, CLASS_IN, unicast))

        for browse in self._browses.values():
            if browse.next_query <= now:
                ask(browse.type_name, TYPE_PTR)
                browse.queried(now)
        for name, rdtype in self._lookups.due(now):
            ask(name, rdtype)
        interest = self._interest(now)
        for entry in self._cache.due_refreshes(now):
            if self._wanted(entry.record, interest):
                ask(entry.record.name, entry.record.rdtype)
        for query in self._queries.values():
            if query.next_send is not None and query.next_send <= now:
                for rdtype in query.rdtypes:
                    ask(query.name, rdtype, unicast=query.sends == 0)
                query.sent(now)
        if not questions:
            return []
        known: list[Record] = []
        for name, rdtype in questions:
            for entry in self._cache.get(name, rdtype, now):
                if entry.good_known_answer(now):
                    # RFC 6762 7.1: the remaining TTL; 10.2: never the cache-flush bit here.
                    ttl = entry.remaining_ms(now) // 1000
                    known.append(entry.record.with_ttl(ttl).with_flush(False))
        out: list[Datagram] = []
        for chunk in chunk_questions(list(questions.values()), self._limits.max_payload):
            asked = {(q.name, q.rdtype) for q in chunk}
            encoded = encode(
                ident=0,
                flags=0,
                questions=chunk,
                answers=[r for r in known if (r.name, r.rdtype) in asked],
                max_size=self._limits.max_payload,
                fit=Fit.CONTINUE,
            )
            self.counters["queries_sent"] += len(encoded.datagrams)
            out += self._multicast(encoded)
        return out

    def _reply_unicast(
        self, packet: Packet, answers: list[Record], src: tuple[str, int], now: int, legacy: bool
    ) -> None:
        if not self._unicast_budget.take(now, self._limits.max_unicast_replies_per_second):
            self.counters["unicast_rate_limited"] += 1
            return
        answers = list({r.key: r for r in answers}.values())
        additionals = self._own_records().additionals(answers)
        if legacy:
            # RFC 6762 6.7: the query's id, its question repeated, no cache-flush bits, TTLs of
            # at most ten seconds, in one datagram (TC set if it does not fit).
            def legacy_form(r: Record) -> Record:
                return r.with_flush(False).with_ttl(min(r.ttl, LEGACY_TTL_CAP))

            try:
                encoded = encode(
                    ident=packet.id,
                    flags=FLAG_QR | FLAG_AA,
                    questions=[Question(q.name, q.rdtype, q.rdclass) for q in packet.questions],
                    answers=[legacy_form(r) for r in answers],
                    additionals=[legacy_form(r) for r in additionals],
                    max_size=self._limits.max_payload,
                    fit=Fit.TRUNCATE,
                )
            except ValueError:  # the questions alone do not fit one datagram
                self.counters["left_out"] += len(answers)
                return
            self.counters["legacy_responses_sent"] += 1
        else:
            encoded = encode(
                ident=0,
                flags=FLAG_QR | FLAG_AA,
                answers=answers,
                additionals=additionals,
                max_size=self._limits.max_payload,
            )
            self.counters["unicast_responses_sent"] += len(encoded.datagrams)
        self.counters["left_out"] += encoded.left_out
        for datagram in encoded.datagrams:
            self._outbox.push(Datagram(datagram, (src[0], src[1])))

    # ----------------------------------------------------------------- internals: queries in

    def _on_query(self, packet: Packet, src: tuple[str, int], now: int) -> None:
        legacy = src[1] != MDNS_PORT
        if not legacy:
            self._tiebreak(packet, now)
        own = self._own_records()
        known = {r.key: r for r in packet.answers}
        if not packet.questions:
            # RFC 6762 7.2: the rest of a truncated query's known answers.
            for record in packet.answers:
                mine = own.get(record.key)
                if (
                    mine is not None
                    and record.ttl * 2 >= mine.ttl
                    and self._scheduler.cancel(record.key)
                ):
                    self.counters["known_answer_suppressed"] += 1
            return
        probed = {r.name for r in packet.authorities}
        unicast: list[Record] = []
        # One delay for the whole answer, so its records leave together (RFC 6762 6.4).
        if packet.truncated:
            shared_delay = self._rng.randint(*TRUNCATED_QUERY_DELAY_MS)
        else:
            shared_delay = self._rng.randint(*SHARED_DELAY_MS)
        for question in packet.questions:
            answers = own.answers(question)
            if not answers:
                continue
            defence = question.name in probed
            shared = any(not r.cache_flush for r in answers)
            for record in answers:
                seen = known.get(record.key)
                if seen is not None and seen.ttl * 2 >= record.ttl:
                    # RFC 6762 7.1: the querier has it with at least half its TTL left.
                    self.counters["known_answer_suppressed"] += 1
                    continue
                if legacy:
                    unicast.append(record)
                    continue
                # RFC 6762 5.4: a QU question gets a unicast reply, unless the record was not
                # multicast within a quarter of its TTL (then everyone may as well hear it).
                if question.unicast and self._scheduler.multicast_within(
                    record.key, now, record.ttl * 1000 // 4
                ):
                    unicast.append(record)
                    continue
                # Unique answers and probe defences go at once, unless known answers follow.
                prompt = (defence or not shared) and not packet.truncated
                delay = 0 if prompt else shared_delay
                self._scheduler.schedule(record.key, now + delay, defence)
        if unicast:
            self._reply_unicast(packet, unicast, src, now, legacy)

    def _tiebreak(self, packet: Packet, now: int) -> None:
        """RFC 6762 8.2: someone probes a name we are probing. The records sorted and compared:
        if theirs are later we wait a second and probe again; ours later, we carry on."""
        if not packet.authorities:
            return
        asked = {q.name for q in packet.questions}
        for claim, svc in self._entities():
            if claim.state is not ClaimState.PROBING:
                continue
            if svc is None:
                name, _, ours = self._host()
            else:
                name, ours = svc.name, self._service_records(svc).unique
            if name not in asked:
                continue
            theirs = [r for r in packet.authorities if r.name == name]
            if theirs and compare_probes(ours, theirs) < 0:
                self.counters["tiebreak_lost"] += 1
                claim.probe(now, TIEBREAK_DEFER_MS)

    def _entities(self) -> list[tuple[Claim, _Service | None]]:
        return [(self._host_claim, None), *((s.claim, s) for s in self._services.values())]

    # ----------------------------------------------------------------- internals: responses in

    def _on_response(self, packet: Packet, src: tuple[str, int], now: int) -> None:
        # RFC 6762 6: responses not from port 5353 are not mDNS responses.
        if src[1] != MDNS_PORT:
            self.counters["bad_source_port"] += 1
            return
        records = packet.records()
        self._check_conflicts(records, now)
        own = self._own_records()
        for record in records:
            mine = own.get(record.key)
            # RFC 6762 7.4: someone else just multicast our planned answer.
            if (
                mine is not None
                and record.ttl * 2 >= mine.ttl
                and self._scheduler.cancel(record.key)
            ):
                self.counters["duplicate_suppressed"] += 1
        self._cache_records(records, now)

    def _check_conflicts(self, records: Sequence[Record], now: int) -> None:
        """RFC 6762 8.1 (while probing: any other record for the name) and 9 (once owned: a
        record of one of our unique rrsets with other rdata)."""
        for claim, svc in self._entities():
            if claim.state is ClaimState.IDLE:
                continue
            if claim.state is ClaimState.PROBING and claim.sent == 0:
                continue  # 8.1: before our first probe, nothing conflicts yet
            if svc is None:
                _, owner, ours = self._host()
            else:
                owner, ours = owner_key(svc.name), self._service_records(svc).unique
            # Names compared in canonical wire form (each record's is part of its key, made
            # once): dnspython's own comparison walks the labels on every call.
            theirs = [
                r for r in records if r.key[0] == owner and r.ttl > 0 and r.rdclass == CLASS_IN
            ]
            if not theirs:
                continue
            keys = {r.key for r in ours}
            types = {r.rdtype for r in ours}
            if claim.state is ClaimState.PROBING:
                conflict = any(r.key not in keys for r in theirs)
            else:
                conflict = any(r.rdtype in types and r.key not in keys for r in theirs)
            if conflict:
                self._conflict(claim, svc, now)

    def _conflict(self, claim: Claim, svc: _Service | None, now: int) -> None:
        self.counters["conflicts"] += 1
        self._limiter.conflict(now)
        if claim.state is ClaimState.PROBING:
            # RFC 6762 9 / RFC 6763 appendix D: someone owns the name; pick the next one.
            if svc is None:
                old = self.hostname
                self._host_number += 1
                self._emit(HostRenamed(old, self.hostname))
                for other in self._services.values():
                    other.records = None
                    if other.claim.owned:
                        other.claim.announce(now)  # the SRV target changed
            else:
                old_name = display_name(svc.name)
                svc.number += 1
                svc.records = None
                self._emit(ServiceRenamed(svc.key, old_name, display_name(svc.name)))
        claim.probe(now, self._limiter.probe_delay(now, self._rng))
        self._own = None

    # ----------------------------------------------------------------- internals: the cache

    def _interest(
        self, now: int
    ) -> tuple[set[dns.name.Name], set[dns.name.Name], set[dns.name.Name]]:
        """(service types browsed, instances found under them, hosts to resolve): the names
        whose records we cache."""
        types = set(self._browse_types)
        instances: set[dns.name.Name] = set()
        for type_name in types:
            instances.update(self._instances_of(type_name, now))
        hosts = {q.name for q in self._queries.values()}
        for instance in instances:
            for entry in self._cache.get(instance, TYPE_SRV, now):
                target = rdata_target(entry.record.rdata)
                if target is not None:
                    hosts.add(target)
        return types, instances, hosts

    def _instances_of(self, type_name: dns.name.Name, now: int) -> list[dns.name.Name]:
        found: list[dns.name.Name] = []
        for entry in self._cache.get(type_name, TYPE_PTR, now):
            target = rdata_target(entry.record.rdata)
            if target is not None and target.parent() == type_name and target not in found:
                found.append(target)
        return found

    @staticmethod
    def _wanted(
        record: Record,
        interest: tuple[set[dns.name.Name], set[dns.name.Name], set[dns.name.Name]],
    ) -> bool:
        types, instances, hosts = interest
        if record.rdclass != CLASS_IN:
            return False
        if record.rdtype == TYPE_PTR:
            target = rdata_target(record.rdata)
            return record.name in types and target is not None and target.parent() == record.name
        if record.rdtype in (TYPE_SRV, TYPE_TXT):
            return record.name in instances
        if record.rdtype in (TYPE_A, TYPE_AAAA):
            return record.name in hosts
        return False

    def _cache_records(self, records: Sequence[Record], now: int) -> None:
        """Cache what a browse or lookup of ours asked for, PTRs first so the SRVs and addresses
        they lead to in the same packet are wanted too; the rest is counted ``unsolicited``."""
        changed = False
        flushed: dict[tuple[dns.name.Name, int], set[RecordKey]] = {}
        done: set[int] = set()
        for types in ((TYPE_PTR,), (TYPE_SRV, TYPE_TXT), (TYPE_A, TYPE_AAAA)):
            interest = self._interest(now)
            for index, record in enumerate(records):
                if record.rdtype not in types:
                    continue
                done.add(index)
                if not self._wanted(record, interest):
                    self.counters["unsolicited"] += 1
                    continue
                if self._cache.add(record, now):
                    changed = True
                if record.cache_flush and record.ttl > 0:
                    flushed.setdefault((record.name, record.rdtype), set()).add(record.key)
        self.counters["unsolicited"] += len(records) - len(done)
        for (name, rdtype), keep in flushed.items():
            # RFC 6762 10.2: the rest of the rrset, if older than a second, goes in a second.
            if self._cache.flush_others(name, rdtype, keep, now):
                changed = True
        if changed:
            self._reconcile(now)

    def _reconcile(self, now: int) -> None:
        """Browse results and pending lookups against the cache: events for what changed."""
        needed: set[tuple[dns.name.Name, int]] = set()
        for browse in self._browses.values():
            current = {}
            for instance in self._instances_of(browse.type_name, now):
                resolution = resolve_instance(self._cache, instance, browse.type_name, now)
                needed |= resolution.missing
                if resolution.info is not None:
                    current[instance] = resolution.info
            for instance, info in current.items():
                before = browse.reported.get(instance)
                if before is None:
                    self._emit(ServiceFound(browse.id, info))
                elif before != info:
                    self._emit(ServiceUpdated(browse.id, info))
            for instance in browse.reported:
                if instance not in current:
                    self._emit(ServiceLost(browse.id, display_name(instance)))
            browse.reported = current
        self._lookups.want(needed, now)
        for query in list(self._queries.values()):
            if self._answer_query(query, now):
                del self._queries[query.id]

    def _answer_query(self, query: HostQuery, now: int) -> bool:
        entries = [
            e for t in query.rdtypes for e in self._cache.get(query.name, t, now) if not e.doomed
        ]
        addresses = {a for e in entries if (a := address_of(e.record.rdata)) is not None}
        if not addresses:
            return False
        ttl_ms = min(e.remaining_ms(now) for e in entries)
        self._emit(HostResolved(query.id, query.text, sorted_addresses(addresses), ttl_ms, "mdns"))
        return True
