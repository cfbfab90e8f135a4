"""The receive side's data queues of a TCP connection: in-order bytes and the out-of-order queue.

Split out of ``TcpConnection`` as aioquic keeps stream reassembly in ``stream.py``: the queue
owns the bytes delivered in order and not yet read, the bounded out-of-order queue (sorted,
disjoint, first copy wins), and the memory of which out-of-order blocks changed most recently,
from which SACK blocks are chosen (RFC 2018 section 4). It knows nothing of windows, ACK timing
or states; the connection decides what is acceptable and when to acknowledge. Sequence numbers
are the connection's unwrapped ones.

``buf`` and ``ooo`` are created once and only mutated in place, so the connection keeps plain
references to them for its header-prediction test and its in-order append.
"""

from __future__ import annotations

import bisect
from typing import Final

__all__ = ["ReceiveQueue"]

#: At most this many out-of-order pieces are held, whatever their total size.
MAX_OOO_PIECES: Final = 4096
#: How many recently changed out-of-order block starts are remembered for SACK.
RECENT_BLOCKS: Final = 16


def _first(t: tuple[int, bytes]) -> int:
    return t[0]


class ReceiveQueue:
    """In-order receive buffer plus out-of-order queue with SACK-block memory."""

    __slots__ = ("buf", "ooo", "ooo_bytes", "recent")

    def __init__(self) -> None:
        self.buf = bytearray()
        #: Sorted, disjoint ``(start, data)`` pieces, every start above RCV.NXT.
        self.ooo: list[tuple[int, bytes]] = []
        self.ooo_bytes = 0
        #: Starts of out-of-order blocks, most recently changed first.
        self.recent: list[int] = []

    def read(self, max_bytes: int) -> bytes:
        """Take up to ``max_bytes`` of in-order data."""
        out = bytes(self.buf[:max_bytes])
        del self.buf[:max_bytes]
        return out

    def drain(self, rcv_nxt: int) -> int:
        """Move whatever the out-of-order queue now continues into ``buf``; returns the new
        RCV.NXT. Forgets SACK memory of blocks that are now in order."""
        q = self.ooo
        while q and q[0][0] <= rcv_nxt:
            start, chunk = q.pop(0)
            self.ooo_bytes -= len(chunk)
            end = start + len(chunk)
            if end > rcv_nxt:
                self.buf += chunk[rcv_nxt - start :]
                rcv_nxt = end
        self.recent = [s for s in self.recent if s > rcv_nxt]
        return rcv_nxt

    def insert(self, start: int, data: bytes, limit: int) -> bool:
        """Queue out-of-order data, trimming overlaps (the first copy wins). False when it
        would take the queue over ``limit`` bytes (the connection's configured bound, which
        may change) or over its piece bound."""
        end = start + len(data)
        q = self.ooo
        i = bisect.bisect_left(q, start, key=_first)
        pieces: list[tuple[int, bytes]] = []
        pos = start
        for s, d in q[max(i - 1, 0) :]:
            e = s + len(d)
            if s >= end:
                break
            if e <= pos:
                continue
            if s > pos:
                pieces.append((pos, data[pos - start : s - start]))
            pos = max(pos, e)
        if pos < end:
            pieces.append((pos, data[pos - start :]))
        if not pieces:
            self._touch(start)
            return True
        total = sum(len(d) for _, d in pieces)
        if self.ooo_bytes + total > limit or len(q) + len(pieces) > MAX_OOO_PIECES:
            return False
        for piece in pieces:
            bisect.insort(q, piece, key=_first)
        self.ooo_bytes += total
        self._touch(pieces[0][0])
        return True

    def _touch(self, start: int) -> None:
        if start in self.recent:
            self.recent.remove(start)
        self.recent.insert(0, start)
        del self.recent[RECENT_BLOCKS:]

    def sack_runs(self, max_blocks: int) -> list[tuple[int, int]]:
        """RFC 2018 section 4: up to ``max_blocks`` maximal contiguous out-of-order runs, the
        one holding the most recently received segment first, then recently reported ones."""
        runs: list[tuple[int, int]] = []
        for s, d in self.ooo:
            e = s + len(d)
            if runs and runs[-1][1] == s:
                runs[-1] = (runs[-1][0], e)
            else:
                runs.append((s, e))
        chosen: list[tuple[int, int]] = []
        for s in self.recent:
            for run in runs:
                if run[0] <= s < run[1] and run not in chosen:
                    chosen.append(run)
                    break
            if len(chosen) == max_blocks:
                break
        for run in runs:
            if len(chosen) == max_blocks:
                break
            if run not in chosen:
                chosen.append(run)
        return chosen
