"""The querying side of mDNS: browses, one-shot host lookups, and reading services off the cache.

Why a module of its own: a browse is more than a repeated PTR query. RFC 6762 5.2 spaces the
queries out (20-120 ms, then 1 s, 2 s, 4 s... up to an hour), and RFC 6763 turns each PTR answer
into a chain of lookups (SRV and TXT of the instance, then the target's addresses) whose result
is only worth reporting once it can be reached. This module holds that state and derives a
:class:`~ztnode.names.events.ServiceInfo` from the cache; the engine sends the questions and
turns changes into events.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from ipaddress import ip_address

import dns.name

from ztnode.names.dnscodec import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_SRV,
    TYPE_TXT,
    address_of,
    srv_fields,
    txt_strings,
)
from ztnode.names.events import ServiceInfo
from ztnode.names.mdns_cache import CacheEntry, RecordCache
from ztnode.names.mdns_records import decode_txt, display_name, service_type_text

__all__ = [
    "FIRST_QUERY_DELAY_MS",
    "MAX_QUERY_INTERVAL_MS",
    "Browse",
    "HostQuery",
    "LookupTable",
    "Resolution",
    "resolve_instance",
    "sorted_addresses",
]

# RFC 6762 5.2: the first query of a continuous series after 20-120 ms, then intervals that at
# least double, from one second up to an hour.
FIRST_QUERY_DELAY_MS = (20, 120)
FIRST_QUERY_INTERVAL_MS = 1000
MAX_QUERY_INTERVAL_MS = 3_600_000
# How often a missing SRV/TXT/address is asked for before waiting for the PTR to be seen again:
# after 0, 1, 3 and 7 seconds (doubling, as continuous querying does).
LOOKUP_ATTEMPTS = 4
# RFC 6762 5.1/5.4: a one-shot lookup asks with the QU bit, and once more after a second.
ONE_SHOT_RETRY_MS = 1000


@dataclass(slots=True)
class Browse:
    """One ``browse(service_type)``: its query schedule and what it has reported."""

    id: int
    service_type: str
    type_name: dns.name.Name
    next_query: int
    interval: int = FIRST_QUERY_INTERVAL_MS
    reported: dict[dns.name.Name, ServiceInfo] = field(default_factory=dict)

    def queried(self, now: int) -> None:
        self.next_query = now + self.interval
        self.interval = min(self.interval * 2, MAX_QUERY_INTERVAL_MS)


@dataclass(slots=True)
class HostQuery:
    """One ``resolve_host``: the name, the address types asked, the retry and the deadline."""

    id: int
    text: str
    name: dns.name.Name
    rdtypes: tuple[int, ...]
    deadline: int
    next_send: int | None
    sends: int = 0

    def sent(self, now: int) -> None:
        self.sends += 1
        self.next_send = now + ONE_SHOT_RETRY_MS if self.sends < 2 else None


@dataclass(slots=True)
class _Lookup:
    next_at: int
    interval: int
    attempts: int = 0


class LookupTable:
    """The SRV, TXT and address questions browses need answered, with their retry schedule; at
    most ``limit`` (``counters["lookups_full"]`` counts the ones left out)."""

    def __init__(self, limit: int, counters: MutableMapping[str, int]) -> None:
        self.limit = limit
        self._table: dict[tuple[dns.name.Name, int], _Lookup] = {}
        self._counters = counters
        counters.setdefault("lookups_full", 0)

    def want(self, keys: set[tuple[dns.name.Name, int]], now: int) -> None:
        """Make the table exactly ``keys``: new ones are asked at the next poll, gone ones
        forgotten, the others keep their schedule."""
        for key in [k for k in self._table if k not in keys]:
            del self._table[key]
        for key in keys:
            if key in self._table:
                continue
            if len(self._table) >= self.limit:
                self._counters["lookups_full"] += 1
                continue
            self._table[key] = _Lookup(now, FIRST_QUERY_INTERVAL_MS)

    def due(self, now: int) -> list[tuple[dns.name.Name, int]]:
        out: list[tuple[dns.name.Name, int]] = []
        for key, lookup in self._table.items():
            if lookup.attempts < LOOKUP_ATTEMPTS and lookup.next_at <= now:
                out.append(key)
                lookup.attempts += 1
                lookup.next_at = now + lookup.interval
                lookup.interval *= 2
        return out

    def next_deadline(self) -> int | None:
        return min(
            (x.next_at for x in self._table.values() if x.attempts < LOOKUP_ATTEMPTS),
            default=None,
        )

    def __len__(self) -> int:
        return len(self._table)


def sorted_addresses(addresses: set[str]) -> list[str]:
    """IPv4 first, then IPv6, each in numeric order."""
    return sorted(addresses, key=lambda a: (ip_address(a).version, int(ip_address(a))))


def _prefer_live(entries: list[CacheEntry]) -> list[CacheEntry]:
    """Records a goodbye or a cache flush doomed still count for their last second (RFC 6762
    10.1), but not when a live record of the same rrset replaces them."""
    live = [e for e in entries if not e.doomed]
    return live or entries


@dataclass(frozen=True, slots=True)
class Resolution:
    """An instance read off the cache: ``info`` once it has an SRV and an address, and the
    questions whose answers are missing."""

    info: ServiceInfo | None
    missing: frozenset[tuple[dns.name.Name, int]]


def resolve_instance(
    cache: RecordCache, instance: dns.name.Name, type_name: dns.name.Name, now: int
) -> Resolution:
    missing: set[tuple[dns.name.Name, int]] = set()
    srvs = _prefer_live(cache.get(instance, TYPE_SRV, now))
    txts = _prefer_live(cache.get(instance, TYPE_TXT, now))
    if not srvs:
        missing.add((instance, TYPE_SRV))
    if not txts:
        missing.add((instance, TYPE_TXT))
    fields = srv_fields(srvs[0].record.rdata) if srvs else None
    if fields is None:
        return Resolution(None, frozenset(missing))
    _, _, port, target = fields
    v4 = _prefer_live(cache.get(target, TYPE_A, now))
    v6 = _prefer_live(cache.get(target, TYPE_AAAA, now))
    entries = _prefer_live(v4 + v6)
    addresses = {a for e in entries if (a := address_of(e.record.rdata)) is not None}
    if not addresses:
        missing.update({(target, TYPE_A), (target, TYPE_AAAA)})
        return Resolution(None, frozenset(missing))
    strings = txt_strings(txts[0].record.rdata) if txts else None
    info = ServiceInfo(
        instance=instance.labels[0].decode("utf-8", errors="replace"),
        service_type=service_type_text(type_name),
        name=display_name(instance),
        host=target.to_text(),
        addresses=sorted_addresses(addresses),
        port=port,
        txt=decode_txt(strings) if strings is not None else {},
    )
    return Resolution(info, frozenset(missing))
