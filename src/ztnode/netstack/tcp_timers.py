"""The deadlines of a TCP connection and the counting state of its probing timers.

Split out of ``TcpConnection`` as Linux keeps them in ``tcp_timer.c``: this object holds every
deadline the connection can have (retransmission, delayed ACK, persist, keepalive, TIME-WAIT,
FIN-WAIT-2), answers "when must ``handle_timer`` run next", and owns the backoff and the
counters of the two timers that probe the peer: persist (zero-window probes, RFC 9293 3.8.6.1,
RFC 1122 4.2.2.17) and keepalive (RFC 1122 4.2.3.6). It decides when a prober gives up; the
connection decides what a probe is and what giving up does (a reset and ``TimedOutEvent``).
Deadlines are plain attributes (``None`` when off) because the send and receive paths set
``rto``, ``delack`` and ``persist`` for nearly every segment.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["PersistAction", "TcpTimers"]


class PersistAction(Enum):
    """What a fired persist timer asks of the connection."""

    #: The window is open but small, and SWS avoidance refused to fill it: send into it anyway
    #: (RFC 9293 3.8.6.2.1, the "override timeout").
    OVERRIDE = "override"
    #: The window is still zero: send a probe and re-arm with backoff.
    PROBE = "probe"
    #: Too many probes went unanswered: time the connection out.
    GIVE_UP = "give up"


class TcpTimers:
    """Every deadline (ms, ``None`` when off) plus persist and keepalive state."""

    __slots__ = (
        "delack",
        "fin_wait_2",
        "ka_last",
        "ka_sent",
        "last_heard",
        "persist",
        "persist_backoff",
        "probes_unanswered",
        "rto",
        "time_wait",
    )

    def __init__(self) -> None:
        self.rto: int | None = None
        self.delack: int | None = None
        self.persist: int | None = None
        self.time_wait: int | None = None
        self.fin_wait_2: int | None = None
        self.persist_backoff = 0
        self.probes_unanswered = 0
        #: When the peer was last heard from (an acceptable segment), for keepalive.
        self.last_heard = 0
        self.ka_sent = 0
        self.ka_last = 0

    def earliest(self, keepalive: int | None) -> int | None:
        """The first deadline due, counting the keepalive deadline the connection computed."""
        best: int | None = None
        for d in (self.rto, self.delack, self.persist, keepalive, self.time_wait, self.fin_wait_2):
            if d is not None and (best is None or d < best):
                best = d
        return best

    def stop_all(self) -> None:
        """CLOSED: nothing more is due."""
        self.rto = self.delack = self.persist = self.time_wait = self.fin_wait_2 = None

    def heard(self, now: int) -> None:
        """An acceptable segment arrived: the peer is alive, keepalive starts over."""
        self.last_heard = now
        self.ka_sent = 0

    # --- persist ------------------------------------------------------------------------------

    def arm_persist(self, now: int, rto: int, min_rto: int, max_rto: int) -> None:
        """Start the persist timer unless it runs: the RTO with exponential backoff, clamped
        to ``[min_rto, max_rto]`` (RFC 1122 4.2.2.17)."""
        if self.persist is None:
            t = max(rto, min_rto) << min(self.persist_backoff, 10)
            self.persist = now + min(t, max_rto)

    def persist_fired(self, snd_wnd: int, max_probes: int) -> PersistAction:
        """The persist deadline passed: keep probing while the receiver answers; give up
        after ``max_probes`` unanswered probes."""
        self.persist = None
        if snd_wnd > 0:
            return PersistAction.OVERRIDE
        self.probes_unanswered += 1
        if self.probes_unanswered > max_probes:
            return PersistAction.GIVE_UP
        self.persist_backoff += 1
        return PersistAction.PROBE

    # --- keepalive ----------------------------------------------------------------------------

    def keepalive_deadline(self, idle_ms: int, interval_ms: int) -> int:
        """When the next keepalive probe is due, the connection being idle and eligible."""
        if self.ka_sent == 0:
            return self.last_heard + idle_ms
        return self.ka_last + interval_ms

    def keepalive_fired(self, now: int, count: int) -> bool:
        """The keepalive deadline passed: True to give up after ``count`` silent probes,
        else one more probe is counted and is due now."""
        if self.ka_sent >= count:
            return True
        self.ka_sent += 1
        self.ka_last = now
        return False
