"""The mDNS record cache: what other hosts told us, with its lifetimes and refresh times.

Why a class of its own: RFC 6762 gives cached records a life of their own. They expire at their
TTL, are refreshed by queries at 80, 85, 90 and 95 % of it (5.2), go away one second after a
goodbye (10.1) or after a cache-flush announcement that does not repeat them (10.2), and serve as
known answers while more than half their TTL is left (7.1). The browser and the one-shot lookups
read it; only the engine decides what may enter it (solicited records only), and this class
enforces the size bound whatever the engine lets through.
"""

from __future__ import annotations

import random
from collections.abc import MutableMapping
from dataclasses import dataclass, field

import dns.name

from ztnode.names.dnscodec import Record, RecordKey

__all__ = ["GOODBYE_GRACE_MS", "CacheEntry", "RecordCache"]

# RFC 6762 10.1 and 10.2: a record said goodbye to, or flushed, lives one more second.
GOODBYE_GRACE_MS = 1000
# RFC 6762 5.2: refresh queries at 80, 85, 90 and 95 % of the TTL, each plus 0-2 % at random.
REFRESH_PERCENTS = (80, 85, 90, 95)
REFRESH_JITTER_PERCENT = 2.0


@dataclass(slots=True)
class CacheEntry:
    """One cached record; ``record.ttl`` is the TTL it came with (seconds)."""

    record: Record
    received: int
    expires: int
    refresh_at: list[int] = field(default_factory=list)
    doomed: bool = False

    def remaining_ms(self, now: int) -> int:
        return max(0, self.expires - now)

    def good_known_answer(self, now: int) -> bool:
        """RFC 7.1: include as a known answer only with more than half the TTL left."""
        return not self.doomed and self.remaining_ms(now) * 2 > self.record.ttl * 1000


class RecordCache:
    """At most ``limit`` records, looked up by (name, type); a record over the limit is not
    cached and ``counters["cache_full"]`` counts it."""

    def __init__(self, limit: int, rng: random.Random, counters: MutableMapping[str, int]) -> None:
        if limit < 1:
            raise ValueError(f"cache limit must be at least 1, not {limit}")
        self.limit = limit
        self._rng = rng
        self._counters = counters
        counters.setdefault("cache_full", 0)
        self._by_rrset: dict[tuple[dns.name.Name, int], dict[RecordKey, CacheEntry]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, record: Record, now: int) -> bool:
        """Store or renew ``record`` (a TTL of 0 is a goodbye: the cached copy, if any, dies in
        one second). True when the cache changed in a way a browser may see."""
        rrset = self._by_rrset.get((record.name, record.rdtype))
        entry = rrset.get(record.key) if rrset is not None else None
        if record.ttl == 0:
            if entry is None or entry.doomed:
                return False
            entry.doomed = True
            entry.expires = min(entry.expires, now + GOODBYE_GRACE_MS)
            entry.refresh_at.clear()
            return True
        if entry is not None:
            changed = entry.doomed or entry.record.rdata != record.rdata
            entry.record = record
            self._renew(entry, now)
            return changed
        if self._size >= self.limit:
            self._counters["cache_full"] += 1
            return False
        if rrset is None:
            rrset = self._by_rrset[(record.name, record.rdtype)] = {}
        entry = CacheEntry(record, now, now)
        self._renew(entry, now)
        rrset[record.key] = entry
        self._size += 1
        return True

    def _renew(self, entry: CacheEntry, now: int) -> None:
        ttl_ms = entry.record.ttl * 1000
        entry.received = now
        entry.expires = now + ttl_ms
        entry.doomed = False
        entry.refresh_at = [
            now + int(ttl_ms * (p + self._rng.uniform(0.0, REFRESH_JITTER_PERCENT)) / 100)
            for p in REFRESH_PERCENTS
        ]

    def flush_others(
        self, name: dns.name.Name, rdtype: int, keep: set[RecordKey], now: int
    ) -> bool:
        """RFC 6762 10.2: a cache-flush record makes every other record of its rrset that was
        received more than a second ago expire in one second. True when something was doomed."""
        rrset = self._by_rrset.get((name, rdtype))
        if not rrset:
            return False
        changed = False
        for key, entry in rrset.items():
            if key in keep or entry.doomed or entry.received >= now - GOODBYE_GRACE_MS:
                continue
            entry.doomed = True
            entry.expires = min(entry.expires, now + GOODBYE_GRACE_MS)
            entry.refresh_at.clear()
            changed = True
        return changed

    def get(self, name: dns.name.Name, rdtype: int, now: int) -> list[CacheEntry]:
        """The unexpired records of one rrset, most recently received first."""
        rrset = self._by_rrset.get((name, rdtype))
        if not rrset:
            return []
        live = [e for e in rrset.values() if e.expires > now]
        live.sort(key=lambda e: e.received, reverse=True)
        return live

    def has_rrset(self, name: dns.name.Name, rdtype: int) -> bool:
        return bool(self._by_rrset.get((name, rdtype)))

    def expire(self, now: int) -> list[Record]:
        """Drop what reached its end of life; returns the records dropped."""
        gone: list[Record] = []
        for rrkey in list(self._by_rrset):
            rrset = self._by_rrset[rrkey]
            for key in [k for k, e in rrset.items() if e.expires <= now]:
                gone.append(rrset.pop(key).record)
            if not rrset:
                del self._by_rrset[rrkey]
        self._size -= len(gone)
        return gone

    def due_refreshes(self, now: int) -> list[CacheEntry]:
        """Entries one of whose refresh times (RFC 6762 5.2) has come; those times are used up."""
        due: list[CacheEntry] = []
        for rrset in self._by_rrset.values():
            for entry in rrset.values():
                if entry.refresh_at and entry.refresh_at[0] <= now:
                    while entry.refresh_at and entry.refresh_at[0] <= now:
                        entry.refresh_at.pop(0)
                    due.append(entry)
        return due

    def next_deadline(self) -> int | None:
        """The earliest expiry or refresh time in the cache."""
        best: int | None = None
        for rrset in self._by_rrset.values():
            for entry in rrset.values():
                t = entry.refresh_at[0] if entry.refresh_at else entry.expires
                t = min(t, entry.expires)
                if best is None or t < best:
                    best = t
        return best
