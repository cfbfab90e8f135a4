"""A virtual clock and an in-memory UDP network with seeded loss, duplication and reordering.

Any sans-I/O object with the five verbs (``receive_datagram``, ``datagrams_to_send``,
``get_timer``, ``handle_timer``, ``next_event``) can be attached at one or more addresses; the
network then drives them all in virtual time. Everything is deterministic for a given seed, so a
failure reproduces exactly, and hours of protocol time run in milliseconds.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Addr = tuple[str, int]


class SansIO(Protocol):
    """What the fake network needs from a participant. ``now`` is in milliseconds."""

    def receive_datagram(self, data: bytes, local: Addr, remote: Addr, now: int) -> None: ...

    def datagrams_to_send(self, now: int) -> Sequence[tuple[Any, ...]]:
        """Tuples starting (local address, remote address, payload); extra fields (a TTL) are
        ignored here."""
        ...

    def get_timer(self) -> int | None: ...

    def handle_timer(self, now: int) -> None: ...

    def next_event(self) -> Any | None: ...


@dataclass
class LinkProfile:
    """Impairments applied to each datagram independently, from the network's seeded RNG."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0  # probability that a datagram gets extra delay (so others pass it)
    latency_ms: int = 1
    jitter_ms: int = 0
    reorder_extra_ms: int = 20


@dataclass(order=True)
class _Delivery:
    at: int
    seq: int
    local: Addr = field(compare=False)
    remote: Addr = field(compare=False)
    data: bytes = field(compare=False)


@dataclass
class Stats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    unroutable: int = 0
    blocked: int = 0


class FakeNetwork:
    """Routes datagrams between attached participants by destination address."""

    def __init__(self, seed: int = 0, profile: LinkProfile | None = None, start: int = 0) -> None:
        self.now = start
        self.rng = random.Random(seed)
        self.default_profile = profile or LinkProfile()
        self.profiles: dict[tuple[Addr, Addr], LinkProfile] = {}
        self.blocked: set[tuple[str, str]] = set()
        self.owners: dict[Addr, SansIO] = {}
        self.participants: list[SansIO] = []
        self.events: dict[int, list[Any]] = {}
        self.stats = Stats()
        self.taps: list[Callable[[Addr, Addr, bytes], None]] = []
        self._queue: list[_Delivery] = []
        self._seq = itertools.count()

    def attach(self, participant: SansIO, *addresses: Addr) -> None:
        for a in addresses:
            if a in self.owners:
                raise ValueError(f"address {a} is already attached")
            self.owners[a] = participant
        if participant not in self.participants:
            self.participants.append(participant)
            self.events[id(participant)] = []

    def detach_address(self, address: Addr) -> None:
        self.owners.pop(address, None)

    def detach(self, participant: SansIO) -> list[Addr]:
        """Take a participant off the network (its addresses, its turns, its uncollected
        events); returns the addresses it had, so something else can take its place."""
        had = [a for a, p in self.owners.items() if p is participant]
        for a in had:
            del self.owners[a]
        if participant in self.participants:
            self.participants.remove(participant)
            self.events.pop(id(participant), None)
        return had

    def set_profile(self, a: Addr, b: Addr, profile: LinkProfile) -> None:
        """Impair the link between two addresses in both directions."""
        self.profiles[(a, b)] = profile
        self.profiles[(b, a)] = profile

    def block(self, ip_a: str, ip_b: str) -> None:
        """Drop everything between two hosts (a cut cable or a strict firewall)."""
        self.blocked.add((ip_a, ip_b))
        self.blocked.add((ip_b, ip_a))

    def unblock(self, ip_a: str, ip_b: str) -> None:
        self.blocked.discard((ip_a, ip_b))
        self.blocked.discard((ip_b, ip_a))

    def _send(self, local: Addr, remote: Addr, data: bytes) -> None:
        self.stats.sent += 1
        for tap in self.taps:
            tap(local, remote, data)
        if (local[0], remote[0]) in self.blocked:
            self.stats.blocked += 1
            return
        prof = self.profiles.get((local, remote), self.default_profile)
        if prof.loss and self.rng.random() < prof.loss:
            self.stats.lost += 1
            return
        copies = 1
        if prof.duplicate and self.rng.random() < prof.duplicate:
            copies = 2
            self.stats.duplicated += 1
        for _ in range(copies):
            delay = prof.latency_ms
            if prof.jitter_ms:
                delay += self.rng.randint(0, prof.jitter_ms)
            if prof.reorder and self.rng.random() < prof.reorder:
                delay += prof.reorder_extra_ms
            heapq.heappush(
                self._queue, _Delivery(self.now + delay, next(self._seq), remote, local, data)
            )

    def _flush(self) -> None:
        """Collect output and events from every participant until all are quiet."""
        for p in self.participants:
            for out in p.datagrams_to_send(self.now):
                self._send(out[0], out[1], bytes(out[2]))
            evs = self.events[id(p)]
            while (ev := p.next_event()) is not None:
                evs.append(ev)

    def step(self) -> bool:
        """Advance to the next delivery or timer and process it. False when nothing is pending."""
        self._flush()
        next_at: int | None = self._queue[0].at if self._queue else None
        for p in self.participants:
            t = p.get_timer()
            if t is not None and (next_at is None or t < next_at):
                next_at = t
        if next_at is None:
            return False
        self.now = max(self.now, next_at)
        while self._queue and self._queue[0].at <= self.now:
            d = heapq.heappop(self._queue)
            owner = self.owners.get(d.local)
            if owner is None:
                self.stats.unroutable += 1
                continue
            self.stats.delivered += 1
            owner.receive_datagram(d.data, d.local, d.remote, self.now)
        for p in self.participants:
            t = p.get_timer()
            if t is not None and t <= self.now:
                p.handle_timer(self.now)
        self._flush()
        return True

    def run_until(self, deadline: int, max_steps: int = 10_000_000) -> None:
        """Run until virtual time reaches ``deadline`` (bounded in steps, never loops forever)."""
        for _ in range(max_steps):
            if not self._has_work_before(deadline) or not self.step():
                break
        else:
            raise RuntimeError(f"run_until({deadline}) exceeded {max_steps} steps")
        self.now = max(self.now, deadline)

    def run_for(self, ms: int) -> None:
        self.run_until(self.now + ms)

    def run_until_true(self, cond: Callable[[], bool], timeout_ms: int) -> bool:
        """Step until ``cond()`` holds or ``timeout_ms`` of virtual time pass; returns cond()."""
        deadline = self.now + timeout_ms
        for _ in range(10_000_000):
            if cond():
                return True
            if not self._has_work_before(deadline) or not self.step():
                break
        self.now = max(self.now, min(deadline, self.now))
        return cond()

    def _has_work_before(self, deadline: int) -> bool:
        self._flush()
        if self._queue and self._queue[0].at <= deadline:
            return True
        for p in self.participants:
            t = p.get_timer()
            if t is not None and t <= deadline:
                return True
        return False

    def take_events(self, participant: SansIO) -> list[Any]:
        """Events the participant emitted since the last call."""
        evs = self.events[id(participant)]
        out = list(evs)
        evs.clear()
        return out
