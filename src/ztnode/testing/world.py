"""A whole ZeroTier world in memory: a planet with its roots and any number of leaf nodes.

``LocalWorld.build(identities, roots=1, leaves=3)`` signs a planet naming the first identities as
roots (each at ``10.0.0.<n>:9993``), starts every node on a :class:`FakeNetwork`, and gives tests
helpers to run virtual time and query state. Identities are passed in because generating them is
the one expensive step (about a second each); tests keep a fixed set in ``tests/data``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ztnode.core.node import Node, NodeConfig
from ztnode.crypto import c25519_generate
from ztnode.identity import Identity
from ztnode.netstack.host import Host
from ztnode.testing.fakenet import Addr, FakeNetwork, LinkProfile
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import Root, World, WorldType

WORLD_ID = 0x7A7E57
START_MS = 1_700_000_000_000


def seeded_random_bytes(seed: int) -> Callable[[int], bytes]:
    """Deterministic "randomness" for a node under test (never use outside tests)."""
    rng = random.Random(seed)
    return rng.randbytes


def address_for(index: int) -> Addr:
    return (f"10.0.{index // 250}.{index % 250 + 1}", 9993)


@dataclass
class LocalWorld:
    net: FakeNetwork
    planet: World
    signing_key: tuple[bytes, bytes]
    roots: list[Node] = field(default_factory=list)
    leaves: list[Node] = field(default_factory=list)
    hosts: dict[int, Host] = field(default_factory=dict)
    """With ``ip_stacks``: each leaf's :class:`Host` (node plus IP stacks), by address."""
    addresses: dict[int, Addr] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        identities: Sequence[Identity],
        *,
        roots: int = 1,
        leaves: int = 2,
        seed: int = 1,
        profile: LinkProfile | None = None,
        config: NodeConfig | None = None,
        ip_stacks: bool = False,
    ) -> LocalWorld:
        if len(identities) < roots + leaves:
            raise ValueError(f"need {roots + leaves} identities, got {len(identities)}")
        net = FakeNetwork(seed=seed, profile=profile or LinkProfile(latency_ms=2), start=START_MS)
        keygen = random.Random(seed)
        pub, priv = c25519_generate(keygen.randbytes)
        root_specs = []
        addrs: dict[int, Addr] = {}
        for i in range(roots):
            ident = identities[i]
            a = address_for(i)
            addrs[ident.address] = a
            root_specs.append(Root(ident.public(), (InetAddress.parse(f"{a[0]}/{a[1]}"),)))
        planet = World.make(WorldType.PLANET, WORLD_ID, START_MS, pub, tuple(root_specs), priv)
        world = cls(net, planet, (pub, priv), addresses=addrs)
        cfg = config or NodeConfig(identity_validation_interval=0)
        for i in range(roots + leaves):
            ident = identities[i]
            a = address_for(i)
            addrs[ident.address] = a
            node = Node(
                ident,
                planet,
                now=net.now,
                random_bytes=seeded_random_bytes(seed * 1000 + i),
                local_addresses=[a],
                config=cfg,
            )
            if ip_stacks and i >= roots:
                host = Host(node)
                world.hosts[node.address] = host
                net.attach(host, a)
            else:
                net.attach(node, a)
            (world.roots if i < roots else world.leaves).append(node)
        return world

    @property
    def nodes(self) -> list[Node]:
        return [*self.roots, *self.leaves]

    def run_for(self, ms: int) -> None:
        self.net.run_for(ms)

    def run_until(self, cond: Callable[[], bool], timeout_ms: int) -> bool:
        return self.net.run_until_true(cond, timeout_ms)

    def all_online(self) -> bool:
        return all(n.online for n in self.leaves)

    def direct(self, a: Node, b: Node) -> bool:
        """True if ``a`` has an unexpired direct path to ``b``."""
        p = a.peer(b.address)
        return (
            p is not None
            and p.best_path(self.net.now) is not None
            and any(s.path.remote == self.addresses[b.address] for s in p.paths)
        )

    def events(self, node: Node) -> list[object]:
        host = self.hosts.get(node.address)
        return self.net.take_events(node if host is None else host)
