"""The worlds we live in: the planet, the moons we orbit, and the roots they name.

Rules follow ZeroTierOne 1.14.1 ``node/Topology.cpp`` (protocol-core.md section 12): upstreams are
every planet and moon root except ourselves; a replacement world must be newer and signed by the
key the current one names; a brand-new moon is taken only from ``moons.d`` or from one of its own
roots that we asked for it by orbiting (a "seed").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ztnode.identity import Identity
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import World, WorldType, should_replace


@dataclass
class Topology:
    me: int
    planet: World
    moons: dict[int, World] = field(default_factory=dict)
    seeds: dict[int, int] = field(default_factory=dict)  # moon world id -> seed address

    def __post_init__(self) -> None:
        self._memo()

    def _memo(self) -> None:
        roots: dict[int, Identity] = {}
        endpoints: dict[int, list[InetAddress]] = {}
        for w in (self.planet, *self.moons.values()):
            for r in w.roots:
                a = r.identity.address
                roots.setdefault(a, r.identity)
                endpoints.setdefault(a, []).extend(r.endpoints)
        self.am_upstream = self.me in roots
        self.planet_roots = frozenset(r.identity.address for r in self.planet.roots)
        self.upstream_identities = {a: i for a, i in sorted(roots.items()) if a != self.me}
        self.stable_endpoints = {a: tuple(e) for a, e in endpoints.items() if a != self.me}

    @property
    def upstreams(self) -> list[int]:
        return list(self.upstream_identities)

    def is_upstream(self, address: int) -> bool:
        return address in self.upstream_identities

    def role(self, address: int) -> str:
        """PLANET, MOON or LEAF, as ZeroTierOne reports peers in ``/peer``."""
        if address in self.planet_roots:
            return "PLANET"
        if address in self.upstream_identities:
            return "MOON"
        return "LEAF"

    def always_contact(self) -> list[int]:
        """Upstreams plus moon seeds we still wait on: the peers we keep pinging regardless."""
        extra = [s for wid, s in self.seeds.items() if wid not in self.moons]
        return [*self.upstreams, *[s for s in extra if s not in self.upstream_identities]]

    def should_accept_world_from(self, sender: int) -> bool:
        return sender in self.upstream_identities or sender in self.seeds.values()

    def worlds(self) -> list[World]:
        return [self.planet, *self.moons.values()]

    def is_prohibited_endpoint(self, address: int, ip: str) -> bool:
        """A root with stable endpoints may only be reached at those IPs (ports may differ)."""
        eps = self.stable_endpoints.get(address)
        if not eps:
            return False
        return all(str(e.ip) != ip for e in eps)

    def add_world(self, world: World, always_accept_new: bool, via: int | None = None) -> bool:
        """Apply the update rules; True if the world was taken (the caller persists it)."""
        if world.type == WorldType.PLANET:
            if not should_replace(self.planet, world):
                return False
            self.planet = world
        elif world.type == WorldType.MOON:
            current = self.moons.get(world.id)
            if current is not None:
                if not should_replace(current, world):
                    return False
            else:
                seed = self.seeds.get(world.id)
                seeded = (
                    seed is not None
                    and via is not None
                    and via == seed
                    and any(r.identity.address == via for r in world.roots)
                )
                if not (always_accept_new or seeded):
                    return False
            self.moons[world.id] = world
        else:
            return False
        self._memo()
        return True

    def orbit(self, world_id: int, seed: int) -> None:
        self.seeds[world_id] = seed
        self._memo()

    def deorbit(self, world_id: int) -> bool:
        gone = self.moons.pop(world_id, None) is not None
        gone = self.seeds.pop(world_id, None) is not None or gone
        self._memo()
        return gone
