"""A count of events per one-second window: the one small rate limiter every layer shares.

Why its own module: the TCP challenge-ACK limit (RFC 5961 section 7), the log lines about
frames the rules drop, and the local API's request and wrong-token limits are the same
mechanism, and a limiter written three times drifts three ways. Time is passed in (ms), so
sans-I/O code stays testable under a virtual clock.
"""

from __future__ import annotations

__all__ = ["SecondBudget"]


class SecondBudget:
    """At most ``limit`` events in each one-second window; the window opens at its first
    event, so a burst is never split across two budgets by a clock tick."""

    __slots__ = ("start", "used")

    def __init__(self) -> None:
        self.start = 0
        self.used = 0

    def take(self, now: int, limit: int) -> bool:
        """Spend one event at ``now`` (ms); False when this second's budget is gone."""
        if now - self.start >= 1000:
            self.start = now
            self.used = 0
        if self.used >= limit:
            return False
        self.used += 1
        return True
