"""Which member a foreign MAC sits behind: the routes learned from bridged traffic.

Why: a ZeroTier network may carry whole LANs, bridged onto it by members the controller marks
as active bridges. Frames from a host on such a LAN arrive from its bridge with the host's MAC
as their source (EXT_FRAME, or MULTICAST_FRAME with an explicit source); a frame back to that
MAC must go to that bridge (ZeroTierOne's Network::learnBridgeRoute, node/Network.cpp). A MAC
that moves (its host now behind another bridge) moves with the next frame it sends; a route
not refreshed for ``ROUTE_TTL`` ms is forgotten (then the frame goes to every bridge, which
is also what happens for a MAC never seen), where the reference keeps routes until it runs out
of room.

Bounded at ``max_routes`` (ZeroTierOne: 64 M); when full, the routes of the bridge that owns the
most are dropped, as the reference does, so one bridge flooding source MACs cannot push out
the others' routes; ``purged`` counts the routes so dropped.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

__all__ = ["MAX_BRIDGE_ROUTES", "ROUTE_TTL", "BridgeRoutes"]

#: Routes per network (the reference allows 64 M; a few bridged LANs need thousands).
MAX_BRIDGE_ROUTES: Final = 65_536
#: A route not refreshed for this long (ms) is forgotten (as a Linux bridge ages its FDB).
ROUTE_TTL: Final = 300_000


class BridgeRoutes:
    """MAC -> (bridge address, last seen) for one network (module docstring)."""

    __slots__ = ("_owners", "_routes", "max_routes", "purged")

    def __init__(self, max_routes: int = MAX_BRIDGE_ROUTES) -> None:
        self.max_routes = max_routes
        self._routes: dict[int, tuple[int, int]] = {}
        self._owners: Counter[int] = Counter()
        self.purged = 0

    def __len__(self) -> int:
        return len(self._routes)

    def learn(self, mac: int, bridge: int, now: int) -> None:
        """``mac`` was just seen as the source of a frame ``bridge`` carried."""
        old = self._routes.get(mac)
        if old is not None and old[0] != bridge:
            self._owners[old[0]] -= 1
        elif old is None and len(self._routes) >= self.max_routes:
            self._purge_heaviest()
        if old is None or old[0] != bridge:
            self._owners[bridge] += 1
        self._routes[mac] = (bridge, now)

    def lookup(self, mac: int, now: int) -> int | None:
        """The bridge ``mac`` sits behind, if seen within ``ROUTE_TTL``."""
        entry = self._routes.get(mac)
        if entry is None:
            return None
        bridge, seen = entry
        if now - seen >= ROUTE_TTL:
            self._drop(mac, bridge)
            return None
        return bridge

    def forget_bridge(self, bridge: int) -> None:
        """A member is no longer an active bridge: nothing is routed through it."""
        for mac in [m for m, (b, _) in self._routes.items() if b == bridge]:
            self._drop(mac, bridge)

    def prune(self, now: int) -> None:
        """Forget routes older than ``ROUTE_TTL`` (housekeeping)."""
        for mac, (bridge, seen) in list(self._routes.items()):
            if now - seen >= ROUTE_TTL:
                self._drop(mac, bridge)

    def macs_behind(self, bridge: int) -> list[int]:
        return [m for m, (b, _) in self._routes.items() if b == bridge]

    def _drop(self, mac: int, bridge: int) -> None:
        del self._routes[mac]
        self._owners[bridge] -= 1
        if self._owners[bridge] <= 0:
            del self._owners[bridge]

    def _purge_heaviest(self) -> None:
        heaviest, count = self._owners.most_common(1)[0]
        self.forget_bridge(heaviest)
        self.purged += count
