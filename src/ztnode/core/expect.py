"""Which OK replies we are willing to accept.

A ZeroTier node processes an OK only if its in-re packet ID is one it recently sent expecting a
reply (``node/Node.hpp:206-235``); anything else is dropped before it can even refresh the peer,
which blunts replayed or forged OKs. Like the reference, only the upper 32 bits of each wire ID
are kept, in 256 buckets of 32 slots filled in ring order, so memory is fixed.
"""

from __future__ import annotations

from typing import Final

BUCKETS: Final = 256
SLOTS: Final = 32


class ExpectedReplies:
    __slots__ = ("_next", "_table")

    def __init__(self) -> None:
        self._table = [[0] * SLOTS for _ in range(BUCKETS)]
        self._next = [0] * BUCKETS

    def expect(self, packet_id: int) -> None:
        hi = (packet_id >> 32) & 0xFFFFFFFF
        b = hi & (BUCKETS - 1)
        i = self._next[b]
        self._table[b][i] = hi
        self._next[b] = (i + 1) % SLOTS

    def expecting(self, packet_id: int) -> bool:
        hi = (packet_id >> 32) & 0xFFFFFFFF
        return hi != 0 and hi in self._table[hi & (BUCKETS - 1)]
