"""The stack's tables of bound sockets (TCP listeners, UDP sockets), keyed by
``(ipv6, packed address or b"" for the wildcard, port)``, with a count of holders per
``(ipv6, port)`` kept in step.

Why: "is this port bound?" is asked on every ``listen``/``bind`` (an exclusive claim) and for every
candidate port of every connect's ephemeral draw. Scanning the table answers it in O(bound
sockets), which a node with thousands of listeners pays on every connect; the count answers it
in O(1). Keeping the count inside the table, beside the only writes that can change it, is what
keeps the two from drifting apart: the stack has no other way to add or remove a holder.

Bound: one entry per bound socket; the stack's own limits on sockets bound it.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, ValuesView
from typing import Generic, TypeVar

T = TypeVar("T")

#: ``(ipv6, packed address, or b"" for the family's wildcard, port)``
BoundKey = tuple[bool, bytes, int]


class PortTable(Generic[T]):
    """A mapping of :data:`BoundKey` to sockets that also knows, in O(1), whether any socket of
    a family holds a port."""

    __slots__ = ("_by_key", "_holders")

    def __init__(self) -> None:
        self._by_key: dict[BoundKey, T] = {}
        self._holders: dict[tuple[bool, int], int] = {}

    def __setitem__(self, key: BoundKey, value: T) -> None:
        if key not in self._by_key:
            fam = (key[0], key[2])
            self._holders[fam] = self._holders.get(fam, 0) + 1
        self._by_key[key] = value

    def __getitem__(self, key: BoundKey) -> T:
        return self._by_key[key]

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[BoundKey]:
        return iter(self._by_key)

    def get(self, key: BoundKey) -> T | None:
        return self._by_key.get(key)

    def pop(self, key: BoundKey) -> T | None:
        """Remove ``key``'s socket and return it (None when there was none)."""
        value = self._by_key.pop(key, None)
        if value is not None:
            fam = (key[0], key[2])
            n = self._holders.get(fam, 0)
            if n <= 1:
                self._holders.pop(fam, None)
            else:
                self._holders[fam] = n - 1
        return value

    def values(self) -> ValuesView[T]:
        return self._by_key.values()

    def items(self) -> ItemsView[BoundKey, T]:
        return self._by_key.items()

    def holds(self, port: int, ipv6: bool | None = None) -> bool:
        """Whether a socket of the family (either family for None) holds ``port``."""
        if ipv6 is None:
            return (False, port) in self._holders or (True, port) in self._holders
        return (ipv6, port) in self._holders


__all__ = ["BoundKey", "PortTable"]
