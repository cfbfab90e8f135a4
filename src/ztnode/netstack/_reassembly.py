"""The bounded, sans-I/O fragment reassembly engine shared by IPv4 and IPv6.

RFC 815's hole list exists to avoid storing fragments twice; here each datagram keeps its
fragments in a dict keyed by offset and a running byte count instead. Because overlapping
fragments are refused (below), the fragments never share a byte, so the datagram is complete
exactly when the final fragment has fixed the total length and the byte count reaches it: an
O(1) test per fragment with no hole bookkeeping.

Safety rules (RFC 5722 for IPv6, applied to IPv4 too since overlap games are how IDS evasion and
"teardrop" attacks work):

* an exact duplicate (same offset, same bytes) is ignored, as retransmission or duplication by
  the network is legitimate;
* any other overlap, a second final fragment with a different end, or a fragment past the end
  the final fragment fixed, discards the whole datagram. Its key stays "poisoned" until the
  timeout so the remaining fragments do not start a fresh (and bogus) reassembly.

Bounds: at most ``max_datagrams`` in progress, ``max_bytes`` of fragment data in total,
``max_fragments`` per datagram, and a datagram older than ``timeout_ms`` (from its first
fragment) is dropped. When a bound would be exceeded the oldest datagrams are evicted, so a
flood of junk fragments can delay but not wedge reassembly. Time is the ``now`` (milliseconds)
the caller passes; nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from ztnode.errors import DecodeError

K = TypeVar("K", bound=Hashable)
M = TypeVar("M")


class _Datagram(Generic[M]):
    __slots__ = ("deadline", "frags", "max_end", "meta", "poisoned", "size", "total")

    def __init__(self, deadline: int) -> None:
        self.deadline = deadline
        self.frags: dict[int, bytes] = {}
        self.size = 0
        self.total = -1
        self.max_end = 0
        self.meta: M | None = None
        self.poisoned = False


class Reassembler(Generic[K, M]):
    """Collects fragments per key until a datagram is whole.

    ``meta`` is whatever the protocol needs from the offset-0 fragment (its header); it is
    returned with the payload. Counters (``completed``, ``timed_out``, ``evicted``,
    ``overlaps``, ``duplicates``, ``dropped``) are for the stack's drop statistics.
    """

    def __init__(
        self,
        *,
        max_datagrams: int = 64,
        max_bytes: int = 1 << 20,
        timeout_ms: int = 30_000,
        max_fragments: int = 256,
        max_size: int = 65535,
    ) -> None:
        if max_datagrams < 1 or max_bytes < 1 or timeout_ms < 1 or max_fragments < 1:
            raise ValueError("reassembly bounds must be positive")
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.timeout_ms = timeout_ms
        self.max_fragments = max_fragments
        self.max_size = max_size
        # Insertion order is arrival order of first fragments, so the oldest is first.
        self._dgrams: dict[K, _Datagram[M]] = {}
        self._bytes = 0
        # Set when ``now`` went backwards: deadlines are then no longer in insertion order.
        self._disordered = False
        self._last_now = 0
        self.completed = 0
        self.timed_out = 0
        self.evicted = 0
        self.overlaps = 0
        self.duplicates = 0
        self.dropped = 0

    def __len__(self) -> int:
        """Datagrams in progress (poisoned ones included until they time out)."""
        return len(self._dgrams)

    @property
    def buffered_bytes(self) -> int:
        """Fragment payload bytes currently held."""
        return self._bytes

    def expire(self, now: int) -> int:
        """Drop every datagram whose deadline has passed; returns how many."""
        n = 0
        dgrams = self._dgrams
        if self._disordered:
            # ``now`` went backwards at some point: deadlines are not sorted, scan them all.
            for key in [k for k, d in dgrams.items() if d.deadline <= now]:
                self._remove(key)
                n += 1
            if not dgrams:
                self._disordered = False
        else:
            # Deadlines grow with insertion order, so only the front can have expired.
            while dgrams:
                key = next(iter(dgrams))
                if dgrams[key].deadline > now:
                    break
                self._remove(key)
                n += 1
        self.timed_out += n
        return n

    def next_deadline(self) -> int | None:
        """The earliest time :meth:`expire` has work to do (for the stack's timer wheel)."""
        if not self._dgrams:  # the usual case, asked on every pump
            return None
        return min(d.deadline for d in self._dgrams.values())

    def _remove(self, key: K) -> None:
        d = self._dgrams.pop(key)
        self._bytes -= d.size

    def _poison(self, key: K, d: _Datagram[M]) -> None:
        self._bytes -= d.size
        d.frags.clear()
        d.size = 0
        d.poisoned = True

    def add(
        self, key: K, offset: int, data: bytes, more: bool, now: int, meta: M | None
    ) -> tuple[M, bytes] | None:
        """Add one fragment; returns ``(meta, payload)`` when the datagram completes.

        ``meta`` should be given for the offset-0 fragment (it is ignored for the others).
        Raises :class:`DecodeError` for a fragment that no datagram could contain (past
        ``max_size``, or a non-final fragment not a multiple of 8 bytes); policy drops return
        ``None`` and bump a counter.
        """
        n = len(data)
        end = offset + n
        if end > self.max_size:
            raise DecodeError(f"fragment ends at {end}, past the {self.max_size}-byte maximum")
        if more and (n == 0 or n & 7):
            raise DecodeError(f"non-final fragment of {n} bytes is not a positive multiple of 8")
        if now < self._last_now and self._dgrams:
            self._disordered = True
        self._last_now = now
        self.expire(now)
        dgrams = self._dgrams
        d = dgrams.get(key)
        if d is None:
            while len(dgrams) >= self.max_datagrams:
                self._remove(next(iter(dgrams)))
                self.evicted += 1
            d = _Datagram(now + self.timeout_ms)
            dgrams[key] = d
        if d.poisoned:
            self.dropped += 1
            return None
        frags = d.frags
        old = frags.get(offset)
        if old is not None and old == data:
            self.duplicates += 1
            return None
        total = d.total
        if not more:
            if (total >= 0 and total != end) or d.max_end > end:
                self.overlaps += 1
                self._poison(key, d)
                return None
            total = end
        elif total >= 0 and end > total:
            self.overlaps += 1
            self._poison(key, d)
            return None
        if old is not None or any(o < end and offset < o + len(f) for o, f in frags.items()):
            self.overlaps += 1
            self._poison(key, d)
            return None
        if len(frags) >= self.max_fragments:
            self.dropped += 1
            self._poison(key, d)
            return None
        if self._bytes + n > self.max_bytes and not self._make_room(key, n):
            return None
        frags[offset] = data
        d.size += n
        d.total = total
        d.max_end = max(d.max_end, end)
        self._bytes += n
        if offset == 0:
            d.meta = meta
        if total >= 0 and d.size == total and d.meta is not None:
            self._remove(key)
            self.completed += 1
            payload = b"".join(frags[o] for o in sorted(frags))
            return d.meta, payload
        return None

    def _make_room(self, key: K, n: int) -> bool:
        """Free room for ``n`` more bytes by evicting the oldest other datagrams; if this one
        alone is too big, drop it (False)."""
        dgrams = self._dgrams
        for other in list(dgrams):
            if self._bytes + n <= self.max_bytes:
                break
            if other != key and dgrams[other].size:
                # Poisoned (empty) entries free nothing; keep them blocking their key.
                self._remove(other)
                self.evicted += 1
        if self._bytes + n > self.max_bytes:
            self.dropped += 1
            self._remove(key)
            return False
        return True


__all__ = ["Reassembler"]
