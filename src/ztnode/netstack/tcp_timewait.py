"""TIME-WAIT in a few hundred bytes: what a closed connection must still do for 2*MSL.

Why its own record: a connection in TIME-WAIT has nothing left to send or deliver, yet a busy
server keeps one for every connection it closed in the last minute (60 000 at 1 000 connections
per second). A full :class:`~ztnode.netstack.tcp.TcpConnection` with its sender, receive queue,
timers, config and the application's objects costs kilobytes; Linux keeps a small
``tcp_timewait_sock`` instead, and so do we. :class:`TimeWait` answers arriving segments exactly
as the full connection does in TIME-WAIT (RFC 9293 3.10.7.4 with RFC 5961's hardening:
``tests/netstack/test_timewait.py`` checks the two against each other on arbitrary segments);
a newer SYN may end it early (RFC 6191, :meth:`TimeWait.reopened_by`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ztnode.budget import SecondBudget
from ztnode.netstack.tcp import TcpState
from ztnode.netstack.tcp_rcvwnd import acceptable, trim
from ztnode.netstack.tcp_seq import SEQ_MASK, seq_diff
from ztnode.netstack.tcpwire import ACK, FIN, RST, SYN

if TYPE_CHECKING:
    from ztnode.netstack.tcp import Segment, TcpConnection

__all__ = ["TimeWait", "Verdict"]


def _ignore(_reason: str) -> None:
    pass


#: Where RCV.NXT sits on the unwrapped line the window tests work on (any value far from 0).
_BASE: Final = 1 << 40


class Verdict:
    """What a segment did to a TIME-WAIT record."""

    KEEP: Final = 0
    ACK: Final = 1
    CLOSE: Final = 2


class TimeWait:
    """The state TIME-WAIT needs, taken from a connection as it enters it.

    Sequence numbers are kept on the wire (32-bit): nothing is sent but ACKs at ``snd_nxt``
    acknowledging ``rcv_nxt``, so nothing needs unwrapping beyond the arithmetic of
    acceptability."""

    __slots__ = (
        "challenge_limit",
        "challenges",
        "deadline",
        "key",
        "last_ack_sent",
        "max_wnd",
        "msl2",
        "rcv_nxt",
        "snd_max",
        "snd_nxt",
        "ts_enabled",
        "ts_offset",
        "ts_recent",
        "window_field",
        "wnd",
    )

    def __init__(self, conn: TcpConnection, key: tuple[bytes, int, bytes, int]) -> None:
        self.key = key
        deadline = conn.timers.time_wait
        self.msl2 = 2 * conn.config.msl_ms
        self.deadline: int = deadline if deadline is not None else 0
        self.rcv_nxt = (conn.irs + conn.rcv_nxt) & SEQ_MASK
        self.snd_nxt = conn.snd.wire(conn.snd.nxt)
        self.snd_max = conn.snd.wire(conn.snd.max)
        self.max_wnd = conn.snd.max_wnd
        self.wnd = conn.rwnd.room(conn.rcv_nxt)
        self.window_field = conn.rwnd.field(conn.rcv_nxt, conn.readable)
        self.ts_enabled = conn.ts.enabled
        self.ts_offset = conn.ts.offset
        self.ts_recent = conn.ts.recent
        self.last_ack_sent = (conn.irs + conn._last_ack_sent) & SEQ_MASK
        self.challenge_limit = conn.config.challenge_ack_limit
        self.challenges: SecondBudget | None = None  # made on the first challenge

    @property
    def began(self) -> int:
        """When the wait began, or a retransmitted FIN last restarted it (ms): the time of the
        last segment that mattered, which a takeover by a new connect must be a second past."""
        return self.deadline - self.msl2

    @staticmethod
    def suits(conn: TcpConnection) -> bool:
        """Whether ``conn`` can become a record now: in TIME-WAIT with nothing owed (no ACK
        or control segment pending, no out-of-order data, nothing unread)."""
        return (
            conn.state is TcpState.TIME_WAIT
            and conn.timers.time_wait is not None
            and not conn.wants_output
            and not conn.rxq.ooo
            and not conn.readable
            and conn.snd.una == conn.snd.max
        )

    def reopened_by(self, seg: Segment) -> bool:
        """The RFC 6191 test, as :meth:`TcpConnection.reopened_by`."""
        if seg.flags & (SYN | ACK | RST) != SYN:
            return False
        if self.ts_enabled and seg.ts is not None:
            return seq_diff(seg.ts[0], self.ts_recent) > 0
        return seq_diff(seg.seq, self.rcv_nxt) > 0

    def receive(self, seg: Segment, now: int, count: Callable[[str], None] = _ignore) -> int:
        """One arriving segment: :data:`Verdict.ACK` (send :meth:`ack`), ``CLOSE`` (forget
        the record) or ``KEEP``; ``count`` hears the reasons the full connection counts.
        Sequence numbers are placed on an unwrapped line at :data:`_BASE` (RCV.NXT) so the
        window tests are the full connection's own functions."""
        fl = seg.flags
        nxt = _BASE
        seq_u = nxt + seq_diff(seg.seq, self.rcv_nxt) + (1 if fl & SYN else 0)
        payload = seg.payload
        plen = len(payload) + (1 if fl & FIN else 0)
        wnd = self.wnd
        if self.ts_enabled and seg.ts is not None and not fl & (RST | SYN):
            last_ack = nxt + seq_diff(self.last_ack_sent, self.rcv_nxt)
            if seq_u <= last_ack and seq_diff(seg.ts[0], self.ts_recent) >= 0:
                self.ts_recent = seg.ts[0]
        if fl & RST:
            if seq_u == nxt:
                return Verdict.CLOSE
            if nxt < seq_u < nxt + max(wnd, 1):
                return self._challenge("challenge_rst", now, count)
            count("rst_out_of_window")
            return Verdict.KEEP
        if not acceptable(seq_u, plen, nxt, wnd):
            count("unacceptable")
            if fl & FIN:
                self.deadline = now + self.msl2
            return Verdict.ACK
        if fl & SYN:
            return self._challenge("challenge_syn", now, count)
        if not fl & ACK:
            count("no_ack")
            return Verdict.KEEP
        acked = seq_diff(seg.ack, self.snd_max)  # everything we sent is acknowledged
        if acked > 0:
            count("ack_of_unsent")
            return Verdict.ACK
        if acked < -max(self.max_wnd, 1):
            return self._challenge("challenge_old_ack", now, count)
        verdict = Verdict.KEEP
        if payload or fl & FIN:
            first, last, fin = trim(seq_u, len(payload), nxt, wnd)
            kept = last - first
            if kept:
                count("text_after_fin")  # text after the peer's FIN is ignored
                verdict = Verdict.ACK
            elif payload:
                verdict = Verdict.ACK  # duplicate or out-of-window text: ACK it
            if fin and fl & FIN:
                fin_at = seq_u + first + kept
                if fin_at != nxt:
                    if not (kept and seq_u + first > nxt):
                        verdict = Verdict.ACK
                else:  # the peer's FIN again, at RCV.NXT: ACK it and wait again
                    self.deadline = now + self.msl2
                    verdict = Verdict.ACK
        return verdict

    def ack(self, now: int) -> tuple[int, int, int, int, tuple[int, int] | None]:
        """The ACK to send: (seq, ack, flags, window, timestamps)."""
        self.last_ack_sent = self.rcv_nxt
        ts = ((now + self.ts_offset) & SEQ_MASK, self.ts_recent) if self.ts_enabled else None
        return (self.snd_nxt, self.rcv_nxt, ACK, self.window_field, ts)

    def _challenge(self, reason: str, now: int, count: Callable[[str], None]) -> int:
        count(reason)
        if self.challenges is None:
            self.challenges = SecondBudget()
        if self.challenges.take(now, self.challenge_limit):
            return Verdict.ACK
        count("challenge_ack_limited")
        return Verdict.KEEP
