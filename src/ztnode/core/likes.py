"""Who is in which multicast group, with a bound: the LIKE tables.

A member's MULTICAST_LIKE names groups it has joined; a network remembers its members' (for our
multicasts) and a root remembers everyone's (to answer gathers), each entry for ten minutes.
An authenticated peer can still name as many groups as its packets hold, so the tables count
their (group, member) entries and refuse new ones past a bound; entries already held are
refreshed freely, and expiry makes room again. What is refused is counted by the caller.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["LikeTable"]

K = TypeVar("K", bound=Hashable)


class LikeTable(Generic[K]):
    """``group -> {member address: last LIKE time}`` with at most ``limit`` entries in all."""

    __slots__ = ("_groups", "entries", "limit")

    def __init__(self, limit: int) -> None:
        self._groups: dict[K, dict[int, int]] = {}
        self.limit = limit
        self.entries = 0

    def note(self, group: K, member: int, now: int) -> bool:
        """Remember (or refresh) a LIKE; False when the table is full and it is new."""
        held = self._groups.get(group)
        if held is not None and member in held:
            held[member] = now
            return True
        if self.entries >= self.limit:
            return False
        if held is None:
            held = self._groups[group] = {}
        held[member] = now
        self.entries += 1
        return True

    def members(self, group: K) -> dict[int, int]:
        """The members of a group with their LIKE times (empty when unknown); read-only."""
        return self._groups.get(group, {})

    def expire(self, now: int, max_age: int) -> None:
        """Forget LIKEs older than ``max_age`` ms and the groups they leave empty."""
        count = 0
        for group in list(self._groups):
            live = {a: t for a, t in self._groups[group].items() if now - t < max_age}
            if live:
                self._groups[group] = live
                count += len(live)
            else:
                del self._groups[group]
        self.entries = count

    def __contains__(self, group: object) -> bool:
        return group in self._groups

    def __len__(self) -> int:
        return len(self._groups)
