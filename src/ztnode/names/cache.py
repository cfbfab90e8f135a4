"""Answers of the network's DNS servers kept for their TTL, bounded.

Why: a program connecting by name in a loop must not send a query per connection, and an
NXDOMAIN is worth remembering too (RFC 2308). The cache is per network (each network has its
own servers and domain), holds at most ``capacity`` names (least recently used leave first,
counted), caps TTLs so a server's typo (a week) cannot pin a stale address, and never returns
an expired entry.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["CachedAnswer", "DnsCache"]

#: Longest a positive answer is kept, whatever its TTL (ms).
MAX_TTL_MS = 86_400_000
#: Longest and default negative caching (RFC 2308 5: the SOA's minimum, bounded) (ms).
MAX_NEGATIVE_MS = 3_600_000
DEFAULT_NEGATIVE_MS = 30_000


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """Addresses (empty for a negative answer) and the DNS status that produced them:
    ``"ok"``, ``"nxdomain"`` or ``"nodata"``."""

    addresses: tuple[str, ...]
    status: str
    expires: int


class DnsCache:
    """(name, record type) -> answer, LRU-bounded (module docstring)."""

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 1:
            raise ValueError("cache capacity must be at least 1")
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, int], CachedAnswer] = OrderedDict()
        self.counters: dict[str, int] = {"hits": 0, "misses": 0, "evicted": 0, "expired": 0}

    def get(self, name: str, rdtype: int, now: int) -> CachedAnswer | None:
        key = (name, rdtype)
        entry = self._entries.get(key)
        if entry is None:
            self.counters["misses"] += 1
            return None
        if entry.expires <= now:
            del self._entries[key]
            self.counters["expired"] += 1
            self.counters["misses"] += 1
            return None
        self._entries.move_to_end(key)
        self.counters["hits"] += 1
        return entry

    def put_positive(
        self, name: str, rdtype: int, addresses: tuple[str, ...], ttl_s: int, now: int
    ) -> None:
        ttl = min(max(ttl_s, 0) * 1000, MAX_TTL_MS)
        if ttl == 0:
            return  # TTL 0: use once, never cache (RFC 1035 3.2.1)
        self._put((name, rdtype), CachedAnswer(addresses, "ok", now + ttl))

    def put_negative(
        self, name: str, rdtype: int, status: str, ttl_s: int | None, now: int
    ) -> None:
        ttl = DEFAULT_NEGATIVE_MS if ttl_s is None else min(max(ttl_s, 0) * 1000, MAX_NEGATIVE_MS)
        if ttl == 0:
            return
        self._put((name, rdtype), CachedAnswer((), status, now + ttl))

    def _put(self, key: tuple[str, int], entry: CachedAnswer) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self.counters["evicted"] += 1

    def clear(self) -> None:
        """Forget everything (the network's DNS servers or domain changed)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
