"""Claiming a unique name on the link: probing, announcing, tie-breaking, the conflict limit.

Why a module of its own: the host name and every service instance go through the same life
(RFC 6762 8: wait 0-250 ms, three probes 250 ms apart, then announcements one second apart;
9: back to probing on a conflict; 8.2: simultaneous probes decided by comparing the proposed
records; 9.2: a host that keeps losing slows down). :class:`Claim` is that schedule for one
name, with no knowledge of records or packets, so the engine asks it only "what is due now".
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Sequence

from ztnode.names.dnscodec import Record

__all__ = [
    "ANNOUNCE_COUNT",
    "ANNOUNCE_INTERVAL_MS",
    "PROBE_COUNT",
    "PROBE_INTERVAL_MS",
    "PROBE_WAIT_MAX_MS",
    "TIEBREAK_DEFER_MS",
    "Claim",
    "ClaimAction",
    "ClaimState",
    "ConflictLimiter",
    "compare_probes",
]

# RFC 6762 8.1: a random 0-250 ms before the first probe, three probes 250 ms apart, and the
# name is ours 250 ms after the third if nobody objected.
PROBE_WAIT_MAX_MS = 250
PROBE_INTERVAL_MS = 250
PROBE_COUNT = 3
# RFC 6762 8.3: at least two unsolicited announcements, one second apart.
ANNOUNCE_COUNT = 2
ANNOUNCE_INTERVAL_MS = 1000
# RFC 6762 8.2: the loser of a simultaneous probe waits one second and probes again.
TIEBREAK_DEFER_MS = 1000
# RFC 6762 9.2: after fifteen conflicts within ten seconds, five seconds before each new probe.
CONFLICT_BURST = 15
CONFLICT_WINDOW_MS = 10_000
CONFLICT_BACKOFF_MS = 5000


class ClaimState(enum.Enum):
    IDLE = "idle"
    PROBING = "probing"
    ANNOUNCING = "announcing"
    ESTABLISHED = "established"


class ClaimAction(enum.Enum):
    PROBE = "probe"
    WON = "won"
    ANNOUNCE = "announce"


class Claim:
    """The probe and announcement schedule of one unique name."""

    __slots__ = ("next_at", "sent", "state")

    def __init__(self) -> None:
        self.state = ClaimState.IDLE
        self.next_at: int | None = None
        self.sent = 0

    @property
    def owned(self) -> bool:
        """The probes are won: we answer for the name (announcing or established)."""
        return self.state in (ClaimState.ANNOUNCING, ClaimState.ESTABLISHED)

    def probe(self, now: int, delay: int) -> None:
        """(Re)start probing in ``delay`` ms."""
        self.state = ClaimState.PROBING
        self.sent = 0
        self.next_at = now + delay

    def announce(self, now: int) -> None:
        """Announce again from now (the records changed, RFC 6762 8.4)."""
        self.state = ClaimState.ANNOUNCING
        self.sent = 0
        self.next_at = now

    def stop(self) -> None:
        self.state = ClaimState.IDLE
        self.next_at = None
        self.sent = 0

    def due(self, now: int) -> ClaimAction | None:
        if self.next_at is None or self.next_at > now:
            return None
        if self.state is ClaimState.PROBING:
            return ClaimAction.WON if self.sent >= PROBE_COUNT else ClaimAction.PROBE
        if self.state is ClaimState.ANNOUNCING:
            return ClaimAction.ANNOUNCE
        return None

    def probed(self, now: int) -> None:
        self.sent += 1
        self.next_at = now + PROBE_INTERVAL_MS

    def won(self, now: int) -> None:
        self.announce(now)

    def announced(self, now: int) -> None:
        self.sent += 1
        if self.sent >= ANNOUNCE_COUNT:
            self.state = ClaimState.ESTABLISHED
            self.next_at = None
        else:
            self.next_at = now + ANNOUNCE_INTERVAL_MS


class ConflictLimiter:
    """RFC 6762 9.2's brake: the delay before a new probe series after a conflict."""

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: deque[int] = deque(maxlen=CONFLICT_BURST)

    def conflict(self, now: int) -> None:
        self._times.append(now)

    def probe_delay(self, now: int, rng: random.Random) -> int:
        if len(self._times) == CONFLICT_BURST and now - self._times[0] < CONFLICT_WINDOW_MS:
            return CONFLICT_BACKOFF_MS
        return rng.randint(0, PROBE_WAIT_MAX_MS)


def _sort_key(record: Record) -> tuple[int, int, bytes]:
    return (record.rdclass, record.rdtype, record.raw_rdata())


def compare_probes(ours: Sequence[Record], theirs: Sequence[Record]) -> int:
    """RFC 6762 8.2: both sides' proposed records for one name, each sorted by class, type and
    raw rdata, compared pair by pair (the first difference decides; a list that runs out first is
    the earlier). Negative: ours is earlier (we lose); zero: identical (no conflict)."""
    a = sorted(_sort_key(r) for r in ours)
    b = sorted(_sort_key(r) for r in theirs)
    for x, y in zip(a, b, strict=False):
        if x != y:
            return -1 if x < y else 1
    return (len(a) > len(b)) - (len(a) < len(b))
