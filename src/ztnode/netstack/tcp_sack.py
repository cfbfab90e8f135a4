"""The sender's SACK scoreboard (RFC 2018 section 4, RFC 6675 sections 4-5).

Split out of ``TcpConnection`` as aioquic keeps its sent-packet bookkeeping in ``recovery.py``:
the scoreboard owns the sorted, merged list of byte ranges above SND.UNA that the peer has
selectively acknowledged, and answers the questions loss recovery asks of it (how much is
SACKed, which holes count as lost, the RFC 6675 "pipe"). Sequence numbers are the connection's
unwrapped ones; the connection converts wire values before calling in, and keeps the
recovery *decisions* (when to enter and leave recovery, what to resend) to itself.
"""

from __future__ import annotations

import bisect
from typing import Final

__all__ = ["DUP_THRESH", "SackScoreboard"]

#: RFC 6675 section 5: DupThresh.
DUP_THRESH: Final = 3


def _first(t: tuple[int, int]) -> int:
    return t[0]


class SackScoreboard:
    """Sorted, disjoint, merged SACKed ranges ``(left, right)`` (right exclusive).

    ``blocks`` is one list for the life of the connection (never rebound), so the connection
    may keep a plain reference to it and test its truthiness on the header-prediction path.
    """

    __slots__ = ("blocks",)

    def __init__(self) -> None:
        self.blocks: list[tuple[int, int]] = []

    def add(self, left: int, right: int) -> None:
        """Merge one SACKed range (RFC 2018 section 4) into the scoreboard."""
        sb = self.blocks
        i = bisect.bisect_left(sb, left, key=_first)
        if i > 0 and sb[i - 1][1] >= left:
            i -= 1
        j = i
        while j < len(sb) and sb[j][0] <= right:
            left = min(left, sb[j][0])
            right = max(right, sb[j][1])
            j += 1
        sb[i:j] = [(left, right)]

    def acked_to(self, ack_u: int) -> None:
        """The cumulative ACK reached ``ack_u``: drop or trim the ranges it covers."""
        sb = self.blocks
        while sb and sb[0][1] <= ack_u:
            sb.pop(0)
        if sb and sb[0][0] < ack_u:
            sb[0] = (ack_u, sb[0][1])

    def forget_if_reneged(self, una: int) -> None:
        """After a timeout: a SACKed block at SND.UNA shows the peer reneged (RFC 2018
        section 8), and then nothing it SACKed can be trusted."""
        if self.blocks and self.blocks[0][0] <= una:
            self.blocks.clear()

    def clear(self) -> None:
        self.blocks.clear()

    def sacked_bytes(self) -> int:
        return sum(r - left for left, r in self.blocks)

    def sacked_below(self, seq_u: int) -> int:
        """SACKed bytes below ``seq_u`` (they are not in flight)."""
        return sum(min(r, seq_u) - left for left, r in self.blocks if left < seq_u)

    def lost_ranges(
        self, una: int, snd_max: int, lost_hint: int, mss: int
    ) -> list[tuple[int, int]]:
        """Holes deemed lost: RFC 6675 IsLost (un-SACKed bytes with at least DupThresh * SMSS
        SACKed above them, which tolerates mild reordering), plus everything below
        ``lost_hint`` (the segment at SND.UNA on entering recovery and, without SACK, after
        each partial ACK per RFC 6582)."""
        sack_limit = 0
        acc = 0
        for left, right in reversed(self.blocks):
            acc += right - left
            if acc >= DUP_THRESH * mss:
                sack_limit = left
                break
        limit = min(max(sack_limit, lost_hint), snd_max)
        holes: list[tuple[int, int]] = []
        pos = una
        for left, right in self.blocks:
            if left >= limit:
                break
            if left > pos:
                holes.append((pos, left))
            pos = max(pos, right)
        if pos < limit:
            holes.append((pos, limit))
        return holes

    @staticmethod
    def lost_not_retransmitted(holes: list[tuple[int, int]], high_rxt: int) -> int:
        """Bytes of ``holes`` above HighRxt: deemed lost and not yet resent (RFC 6675 pipe)."""
        total = 0
        for left, right in holes:
            lo = max(left, high_rxt)
            if right > lo:
                total += right - lo
        return total
