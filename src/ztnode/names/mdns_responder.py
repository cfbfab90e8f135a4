"""Answering for the records we own: which records answer a question, and when they may go out.

Why a module of its own: RFC 6762 puts a handful of independent rules on every answer: match by
name, type and class with ANY for both (6), additional records a querier will want next
(RFC 6763 12, RFC 6762 6.2), a shared answer waits 20-120 ms so several responders do not collide
and answers aggregate, a record is multicast at most once a second (6; 250 ms when defending a
probed name), known answers and other responders' identical answers cancel ours (7.1, 7.4).
:class:`OwnRecords` is the first two, :class:`MulticastScheduler` the timing; the engine glues
them to packets.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass

import dns.name

from ztnode.names.dnscodec import (
    CLASS_ANY,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_PTR,
    TYPE_SRV,
    TYPE_TXT,
    Question,
    Record,
    RecordKey,
    rdata_target,
)

__all__ = [
    "DEFENCE_INTERVAL_MS",
    "MULTICAST_INTERVAL_MS",
    "SHARED_DELAY_MS",
    "MulticastScheduler",
    "OwnRecords",
]

# RFC 6762 6: a record is multicast at most once per second, except when defending a unique
# record against a probe (every 250 ms); shared answers wait 20-120 ms.
MULTICAST_INTERVAL_MS = 1000
DEFENCE_INTERVAL_MS = 250
SHARED_DELAY_MS = (20, 120)


class OwnRecords:
    """The records we currently answer for (the host's once its name is won, and each service's
    once its instance name is won), indexed by owner name. ``cache_flush`` marks unique ones."""

    def __init__(self, records: Iterable[Record]) -> None:
        self._by_name: dict[dns.name.Name, list[Record]] = {}
        self._by_key: dict[RecordKey, Record] = {}
        for record in records:
            if record.key in self._by_key:
                continue
            self._by_key[record.key] = record
            self._by_name.setdefault(record.name, []).append(record)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def get(self, key: RecordKey) -> Record | None:
        return self._by_key.get(key)

    def keys(self) -> set[RecordKey]:
        return set(self._by_key)

    def owns(self, name: dns.name.Name) -> bool:
        return name in self._by_name

    def answers(self, question: Question) -> list[Record]:
        """Our records answering ``question`` (type and class ANY match everything)."""
        return [
            r
            for r in self._by_name.get(question.name, ())
            if question.rdtype in (r.rdtype, TYPE_ANY)
            and question.rdclass in (r.rdclass, CLASS_ANY)
        ]

    def additionals(self, answers: Sequence[Record]) -> list[Record]:
        """What a querier will ask next (RFC 6763 12.1-12.2: SRV, TXT and addresses with a PTR,
        addresses with an SRV; RFC 6762 6.2: the other address family with an address),
        without what already answers."""
        seen = {r.key for r in answers}
        extra: list[Record] = []

        def add(name: dns.name.Name, types: tuple[int, ...]) -> None:
            for record in self._by_name.get(name, ()):
                if record.rdtype in types and record.key not in seen:
                    seen.add(record.key)
                    extra.append(record)

        for record in answers:
            target = rdata_target(record.rdata)
            if record.rdtype == TYPE_PTR and target is not None:
                add(target, (TYPE_SRV, TYPE_TXT))
                for srv in self._by_name.get(target, ()):
                    srv_target = rdata_target(srv.rdata) if srv.rdtype == TYPE_SRV else None
                    if srv_target is not None:
                        add(srv_target, (TYPE_A, TYPE_AAAA))
            elif record.rdtype == TYPE_SRV and target is not None:
                add(target, (TYPE_A, TYPE_AAAA))
            elif record.rdtype in (TYPE_A, TYPE_AAAA):
                add(record.name, (TYPE_A, TYPE_AAAA))
        return extra


@dataclass(slots=True)
class _Pending:
    due: int
    defence: bool


class MulticastScheduler:
    """Our records waiting to be multicast as answers, and when each was last multicast.

    Both tables hold only keys of records we own (``prune`` drops the rest when what we own
    changes), so their size is bounded by our own registrations, not by what the link sends."""

    def __init__(self, counters: MutableMapping[str, int]) -> None:
        self._pending: dict[RecordKey, _Pending] = {}
        self._last: dict[RecordKey, int] = {}
        self._counters = counters
        for name in ("rate_limited", "duplicate_suppressed"):
            counters.setdefault(name, 0)

    def schedule(self, key: RecordKey, due: int, defence: bool = False) -> None:
        """Multicast ``key`` at ``due`` (an earlier time already planned stands)."""
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = _Pending(due, defence)
        else:
            pending.due = min(pending.due, due)
            pending.defence = pending.defence or defence

    def multicast_within(self, key: RecordKey, now: int, window_ms: int) -> bool:
        last = self._last.get(key)
        return last is not None and now - last < window_ms

    def cancel(self, key: RecordKey) -> bool:
        """Drop a planned answer someone else gave (7.4) or the querier knows (7.1/7.2)."""
        return self._pending.pop(key, None) is not None

    def sent(self, keys: Iterable[RecordKey], now: int) -> None:
        for key in keys:
            self._last[key] = now

    def forget(self, keys: Iterable[RecordKey]) -> None:
        """Records said goodbye to: nothing planned, no rate-limit memory."""
        for key in keys:
            self._pending.pop(key, None)
            self._last.pop(key, None)

    def prune(self, owned: set[RecordKey]) -> None:
        for table in (self._pending, self._last):
            for key in [k for k in table if k not in owned]:
                del table[key]

    def take_due(self, now: int) -> list[RecordKey]:
        """The planned answers whose time has come, minus those multicast too recently (RFC 6762
        6: once a second, 250 ms for probe defence), which are dropped and counted: every
        listener got the record moments ago."""
        due = [k for k, p in self._pending.items() if p.due <= now]
        out: list[RecordKey] = []
        for key in due:
            pending = self._pending.pop(key)
            window = DEFENCE_INTERVAL_MS if pending.defence else MULTICAST_INTERVAL_MS
            if self.multicast_within(key, now, window):
                self._counters["rate_limited"] += 1
                continue
            out.append(key)
        return out

    def next_deadline(self) -> int | None:
        return min((p.due for p in self._pending.values()), default=None)

    def __len__(self) -> int:
        return len(self._pending)
