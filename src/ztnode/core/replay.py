"""Replay protection: a packet already accepted from a peer is not accepted again.

ZeroTier 1.x has none: a datagram captured on the wire and sent again (from anywhere: the
source address is not authenticated) passes the MAC check a second time and is delivered again.
Its packets carry no sequence number, only a 64-bit packet id that the sender draws at random
(Salsa20/Poly1305) or that is the first half of the SIV tag (AES-GMAC-SIV), so a replay is
recognised by its id having been seen before, and that needs memory per id.

:class:`ReplayWindow` (one per peer) keeps the ids of packets accepted recently, in two
generations of sets: a packet whose id is in either is a replay. The current generation is
retired when it is ``GENERATION_MS`` old or holds ``GENERATION_IDS`` ids, so a peer's window
spans at least ``GENERATION_MS`` or its last ``GENERATION_IDS`` packets, whichever is less, and
never holds more than ``2 * GENERATION_IDS`` ids (about 2 x 250 KB at the bound). Legitimate
traffic is never dropped by it: retransmissions at any layer are new packets with new ids (the
reference draws a fresh id for every packet it sends, relayed packets keep theirs and are
checked only by their destination), and two packets share an id only by a 1-in-2**64 accident;
the same packet arriving twice over two paths is a duplicate worth dropping.
"""

from __future__ import annotations

from typing import Final

__all__ = ["GENERATION_IDS", "GENERATION_MS", "ReplayWindow"]

#: A generation retires after this long (ms): replays are caught for at least this long
#: unless the peer sends more than GENERATION_IDS packets in that time.
GENERATION_MS: Final = 30_000
#: Ids per generation (the memory bound: two generations per peer).
GENERATION_IDS: Final = 4096


class ReplayWindow:
    """Recently accepted packet ids of one peer (see the module docstring)."""

    __slots__ = ("_current", "_previous", "_started")

    def __init__(self) -> None:
        self._current: set[int] = set()
        self._previous: set[int] = set()
        self._started = 0

    def accept(self, packet_id: int, now: int) -> bool:
        """True for an id not seen in the window (and remember it); False for a replay."""
        cur = self._current
        if packet_id in cur or packet_id in self._previous:
            return False
        if len(cur) >= GENERATION_IDS or now - self._started >= GENERATION_MS:
            self._previous = cur
            cur = self._current = set()
            self._started = now
        cur.add(packet_id)
        return True

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)
