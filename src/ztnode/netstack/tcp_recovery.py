"""The TCP sender's loss recovery: fast retransmit and recovery (RFC 5681 section 3.2), NewReno's
partial ACKs (RFC 6582), SACK-based recovery (RFC 6675), limited transmit (RFC 3042), and what
a retransmission timeout does to all of them (RFC 5681 3.1, RFC 2018 section 8).

Split out of ``TcpConnection`` as aioquic keeps loss detection in ``recovery.py``: this object
owns the duplicate-ACK count, the recovery point ("recover"), HighRxt, the SACK scoreboard and
the congestion controller, and makes the decisions that tie them together: when recovery starts
and ends, which hole is resent next, how much the congestion window lets out. The connection
owns the sequence space (SND.UNA, SND.NXT, SND.MAX), decides which ACKs count as duplicates
(that needs the segment and the send window), converts wire sequence numbers, and passes
unwrapped ones in.

``active`` and ``blocks`` are plain attributes (``blocks`` is the scoreboard's own list, never
rebound) because the connection's header-prediction test reads both on every segment.
"""

from __future__ import annotations

from collections.abc import Iterable

from ztnode.netstack.tcp_cc import CongestionControl
from ztnode.netstack.tcp_sack import DUP_THRESH, SackScoreboard

__all__ = ["LossRecovery"]


class LossRecovery:
    """Recovery state and congestion control of one connection, for one negotiated MSS.

    ``sack`` says whether the peer agreed to SACK (RFC 2018 section 2); without it recovery is
    NewReno, where each duplicate ACK stands for one segment that left the network.
    """

    __slots__ = (
        "active",
        "blocks",
        "board",
        "cc",
        "dupacks",
        "force_rxt",
        "high_rxt",
        "lost_hint",
        "mss",
        "recover",
        "sack",
    )

    def __init__(self, cc: CongestionControl, mss: int, *, sack: bool) -> None:
        self.cc = cc
        self.mss = mss
        self.sack = sack
        self.board = SackScoreboard()
        self.blocks = self.board.blocks
        self.dupacks = 0
        #: In fast recovery (RFC 6675 section 5 / RFC 6582 section 3.2).
        self.active = False
        #: NewReno after a partial ACK: resend the first hole whatever the pipe says.
        self.force_rxt = False
        self.recover = 0
        self.high_rxt = 0
        #: Everything below this counts as lost (the segment at SND.UNA on entering recovery).
        self.lost_hint = 0

    def add_sack(self, una: int, snd_max: int, blocks: Iterable[tuple[int, int]]) -> None:
        """Merge the peer's SACK blocks (unwrapped) into the scoreboard; blocks outside
        SND.UNA..SND.MAX are D-SACKs (RFC 2883) or garbage and are ignored."""
        for left, right in blocks:
            if una <= left < right <= snd_max:
                self.board.add(left, right)

    def on_ack(
        self, una: int, acked: int, flight: int, snd_max: int, now: int, srtt: float | None
    ) -> None:
        """New data was acknowledged: ``una`` is the new SND.UNA, ``acked`` the bytes it
        covered out of ``flight`` before it."""
        if self.blocks:
            self.board.acked_to(una)
        if not self.active:
            self.dupacks = 0
            self.cc.on_ack(acked, flight, now, srtt)
        elif una >= self.recover:
            self.active = False
            self.dupacks = 0
            self.cc.on_recovery_exit(snd_max - una, now)
        else:
            # Partial ACK (RFC 6582 3.2 step 5): the next hole is lost too.
            self.high_rxt = max(self.high_rxt, una)
            if not self.sack:
                self.dupacks = 0
                self.lost_hint = una + self.mss
                self.force_rxt = True

    def on_duplicate(self, una: int, snd_max: int, now: int) -> bool:
        """Count one duplicate ACK (the connection has checked RFC 5681's definition); True
        when it starts fast retransmit."""
        self.dupacks += 1
        if self.active:
            return False
        # RFC 6675 section 5 step 4: DupThresh dupacks, or more than (DupThresh - 1) * SMSS
        # SACKed above SND.UNA; RFC 6582 step 1: not again before ``recover`` is acked.
        lost = self.dupacks >= DUP_THRESH or (
            self.sack and self.board.sacked_bytes() >= DUP_THRESH * self.mss
        )
        if not lost or una < self.recover:
            return False
        self.active = True  # RFC 6675 section 5 steps 4.1-4.3
        self.recover = snd_max
        self.high_rxt = una
        self.lost_hint = una + self.mss
        # Step 4.3 (and RFC 5681 3.2 step 2): the segment at SND.UNA goes out now, whatever
        # the pipe says; waiting for the pipe to drain below the halved cwnd would hold the
        # fast retransmit back by about half a window of further dupacks.
        self.force_rxt = True
        self.cc.on_loss(snd_max - una, now)
        return True

    def next_hole(self, una: int, snd_max: int) -> tuple[int, int, int]:
        """In recovery: ``(start, length, room)``, the next lost hole above HighRxt to resend
        if the pipe leaves room or NewReno forces it (RFC 6675 "NextSeg" rule 1, RFC 6582),
        with length 0 when none goes; ``room`` is what the congestion window leaves."""
        mss = self.mss
        holes = self.board.lost_ranges(una, snd_max, self.lost_hint, mss)
        room = self.cc.cwnd - self._pipe(holes, una, snd_max)
        if room >= mss or self.force_rxt:
            self.force_rxt = False
            high = self.high_rxt
            for left, right in holes:
                if right > high:
                    start = max(left, high)
                    n = min(mss, right - start)
                    self.high_rxt = start + n
                    return start, n, room
        return 0, 0, room

    def _pipe(self, holes: list[tuple[int, int]], una: int, snd_max: int) -> int:
        """RFC 6675 section 4 "pipe": outstanding bytes not SACKed and not deemed lost, plus
        retransmissions (those below HighRxt). Without SACK each dupack stands for one
        segment that left the network (RFC 5681 3.2)."""
        flight = snd_max - una
        sacked = self.board.sacked_bytes() if self.sack else min(self.dupacks * self.mss, flight)
        lost_not_rxt = self.board.lost_not_retransmitted(holes, self.high_rxt)
        return max(flight - sacked - lost_not_rxt, 0)

    def send_room(self, una: int, nxt: int, snd_max: int) -> int:
        """Outside recovery, the congestion-window room for the segment at ``nxt``. SACKed
        bytes below ``nxt`` are not in flight; limited transmit (RFC 3042) lets the first two
        dupacks each release one new segment, so a small window still produces DupThresh."""
        room = self.cc.cwnd - (nxt - una)
        if self.blocks:
            room += self.board.sacked_below(nxt)
        if nxt == snd_max and self.dupacks:
            room += min(self.dupacks, 2) * self.mss
        return room

    def skip_sacked(self, nxt: int, snd_max: int) -> tuple[int, int | None]:
        """Resending after a timeout with SACKed data outstanding: skip what the peer SACKed
        (as Linux's loss state does). Returns the new SND.NXT and where the next segment must
        stop (the next SACKed block), or None for no limit."""
        limit: int | None = None
        for left, right in self.blocks:
            if left <= nxt < right:
                nxt = right
            elif left > nxt:
                limit = left
                break
        if nxt >= snd_max:
            limit = None
        return nxt, limit

    def on_timeout(self, una: int, snd_max: int, now: int) -> None:
        """A retransmission timeout: collapse the window (RFC 5681 3.1) once data is in
        flight, leave recovery, and no fast retransmit before ``snd_max`` is acked. RFC 2018
        section 8 says to forget SACK state; like Linux we keep it while the peer has not
        reneged, which shows as a SACKed block at SND.UNA."""
        if una >= 1:
            self.cc.on_rto(snd_max - una, now)
        self.active = False
        self.recover = snd_max
        self.dupacks = 0
        self.board.forget_if_reneged(una)
