"""Unicast FRAME routes remembered for a moment, so a small segment does not pay the lookup.

Why: the host's offload asks :meth:`ztnode.core.frames.FramePath.frame_route` once per outgoing TCP
segment. For a bulk burst of 16 pieces the lookup (member for the MAC, the rules' verdict on
batching, the peer, its best path, the credentials' schedule, the packet header) is spread
thin; for the 1-byte segment of a request/response exchange it cost about what building the
segment in Python did, so sending those through C gained nothing. A route is a pure function
of state that rarely changes, so it is kept per ``(network, destination MAC)`` and reused
while that state is the same:

* the network's config object (a new config, new rules, a new MTU: a new object),
* the peer object and its key (a peer forgotten and met again, a rekey),
* the node's physical-path config (trusted paths, per-network MTUs),
* no bonds anywhere (a bond chooses a path per flow and per packet count),
* at most :data:`ROUTE_TTL_MS` old: the best path, the upstream a relayed peer goes through
  and the credentials' push schedule (minutes) are judged again that often. A path learned
  (a peer reached through an upstream is now direct, maybe over a trusted path) or taken away
  (expired, replaced, refused by ``local.conf``) empties the cache at once (:meth:`clear`).

Bounded by :data:`ROUTE_CACHE_LIMIT` entries; when full it is emptied and counted
(``route_cache_full``), since entries only save work and a full table means a flood of
destinations no cache would help.
"""

from __future__ import annotations

from typing import Final

from ztnode.core.peer import Peer
from ztnode.core.records import FrameRoute
from ztnode.crypto.keys import SymmetricKey

#: How long a remembered route is used before it is looked up again (ms).
ROUTE_TTL_MS: Final = 250
#: Entries kept at most (one per destination MAC per network).
ROUTE_CACHE_LIMIT: Final = 4096


class _Entry:
    """One remembered route and the objects it was made under (compared by identity). A plain
    slotted class, not a NamedTuple: mypyc compiles it to a native one (see ztnode._compiled)."""

    __slots__ = ("config", "expires", "key", "peer", "physical", "route")

    def __init__(
        self,
        expires: int,
        config: object,
        peer: Peer,
        key: SymmetricKey,
        physical: object,
        route: FrameRoute,
    ) -> None:
        self.expires = expires
        self.config = config
        self.peer = peer
        self.key = key
        self.physical = physical
        self.route = route


class RouteCache:
    """See the module docstring."""

    __slots__ = ("_entries", "hits", "overflows")

    def __init__(self) -> None:
        self._entries: dict[tuple[int, int], _Entry] = {}
        self.hits = 0
        self.overflows = 0

    def get(
        self,
        network_id: int,
        dest_mac: int,
        now: int,
        config: object,
        peers: dict[int, Peer],
        physical: object,
    ) -> FrameRoute | None:
        """The remembered route, if every condition it was made under still holds."""
        e = self._entries.get((network_id, dest_mac))
        if (
            e is None
            or now >= e.expires
            or e.config is not config
            or e.physical is not physical
            or e.peer.key is not e.key
            or peers.get(e.peer.address) is not e.peer
        ):
            return None
        self.hits += 1
        return e.route

    def put(
        self,
        network_id: int,
        dest_mac: int,
        now: int,
        config: object,
        peer: Peer,
        physical: object,
        route: FrameRoute,
    ) -> bool:
        """Remember ``route``; False when the table was full and had to be emptied first."""
        entries = self._entries
        full = len(entries) >= ROUTE_CACHE_LIMIT and (network_id, dest_mac) not in entries
        if full:
            entries.clear()
            self.overflows += 1
        entries[(network_id, dest_mac)] = _Entry(
            now + ROUTE_TTL_MS, config, peer, route.key, physical, route
        )
        return not full

    def clear(self) -> None:
        """Forget every route (a path was taken away)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["ROUTE_CACHE_LIMIT", "ROUTE_TTL_MS", "RouteCache"]
