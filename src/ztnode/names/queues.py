"""Bounded queues between a names engine and its adapter.

Why: whatever arrives from the link can make an engine queue events and replies, and a hostile
peer sends as fast as it likes. Each queue keeps what it already holds and drops (and counts)
what comes on top, so memory stays bounded between two drains however slow the adapter is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import MutableMapping
from typing import Generic, TypeVar

__all__ = ["BoundedQueue"]

T = TypeVar("T")


class BoundedQueue(Generic[T]):
    """A FIFO of at most ``limit`` items: the oldest are kept, a new item over the limit is
    dropped and ``counters[counter]`` goes up by one."""

    __slots__ = ("_counter", "_counters", "_items", "limit")

    def __init__(self, limit: int, counters: MutableMapping[str, int], counter: str) -> None:
        if limit < 1:
            raise ValueError(f"queue limit must be at least 1, not {limit}")
        self.limit = limit
        self._items: deque[T] = deque()
        self._counters = counters
        self._counter = counter
        counters.setdefault(counter, 0)

    def push(self, item: T) -> bool:
        """Queue ``item``; False (and counted) when the queue is full."""
        if len(self._items) >= self.limit:
            self._counters[self._counter] += 1
            return False
        self._items.append(item)
        return True

    def drain(self) -> list[T]:
        """Everything queued, oldest first; the queue is empty afterwards."""
        items = list(self._items)
        self._items.clear()
        return items

    def __len__(self) -> int:
        return len(self._items)
