"""Moons (orbiting through a seed) and the loopback-path rule, in memory."""

from __future__ import annotations

import random

from tests.helpers.data import test_identities
from ztnode.core import events as ev
from ztnode.core.node import Node, NodeConfig
from ztnode.crypto import c25519_generate
from ztnode.testing.fakenet import FakeNetwork
from ztnode.testing.world import START_MS, LocalWorld, seeded_random_bytes
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import Root, World, WorldType

IDS = test_identities()


def _moon_for(node: Node, addr: tuple[str, int], ts: int, seed: int = 5) -> World:
    rng = random.Random(seed)
    pub, priv = c25519_generate(rng.randbytes)
    root = Root(node.identity.public(), (InetAddress.parse(f"{addr[0]}/{addr[1]}"),))
    return World.make(WorldType.MOON, node.address, ts, pub, (root,), priv)


def test_leaf_orbits_a_moon_through_its_seed() -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=2)
    assert w.run_until(w.all_online, 15_000)
    moon_node, leaf = w.leaves
    moon = _moon_for(moon_node, w.addresses[moon_node.address], START_MS + 1)
    assert moon_node.add_world(moon)
    assert moon_node.topology.am_upstream
    leaf.orbit(moon.id, moon_node.address, w.net.now)
    assert w.run_until(lambda: moon.id in leaf.topology.moons, 120_000)
    assert leaf.topology.is_upstream(moon_node.address)
    assert leaf.topology.role(moon_node.address) == "MOON"
    updates = [e for e in w.events(leaf) if isinstance(e, ev.WorldUpdated)]
    assert [u.world_id for u in updates] == [moon.id]
    assert updates[0].world_type == WorldType.MOON
    # A moon root relays like a planet root: it is an upstream, so it may.
    assert leaf.deorbit(moon.id)
    assert moon.id not in leaf.topology.moons and not leaf.topology.is_upstream(moon_node.address)


def test_unsolicited_moon_is_refused() -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=2)
    assert w.run_until(w.all_online, 15_000)
    moon_node, leaf = w.leaves
    moon = _moon_for(moon_node, w.addresses[moon_node.address], START_MS + 1)
    # Not orbiting: a moon offered by anyone is not taken.
    assert not leaf.topology.add_world(moon, always_accept_new=False, via=moon_node.address)
    # Orbiting, but offered by someone who is not one of its roots: refused too.
    leaf.topology.orbit(moon.id, moon_node.address)
    assert not leaf.topology.add_world(moon, always_accept_new=False, via=w.roots[0].address)
    assert leaf.topology.add_world(moon, always_accept_new=False, via=moon_node.address)
    # A newer revision must be signed by the moon's update key.
    pub, priv = c25519_generate(random.Random(9).randbytes)
    forged = World.make(WorldType.MOON, moon.id, moon.timestamp + 1, pub, moon.roots, priv)
    assert not leaf.topology.add_world(forged, always_accept_new=False, via=moon_node.address)


def _loopback_pair(allow: bool) -> tuple[FakeNetwork, Node, Node]:
    net = FakeNetwork(seed=3, start=START_MS)
    root_id, leaf_id = IDS[0], IDS[1]
    root_addr, leaf_addr = ("127.0.0.1", 9993), ("127.0.0.1", 9994)
    pub, priv = c25519_generate(random.Random(1).randbytes)
    planet = World.make(
        WorldType.PLANET,
        77,
        START_MS,
        pub,
        (Root(root_id.public(), (InetAddress.parse("127.0.0.1/9993"),)),),
        priv,
    )
    cfg = NodeConfig(allow_loopback=allow, identity_validation_interval=0)
    nodes = []
    for ident, addr, seed in ((root_id, root_addr, 1), (leaf_id, leaf_addr, 2)):
        n = Node(
            ident,
            planet,
            now=net.now,
            random_bytes=seeded_random_bytes(seed),
            local_addresses=[addr],
            config=cfg,
        )
        net.attach(n, addr)
        nodes.append(n)
    return net, nodes[0], nodes[1]


def test_loopback_paths_refused_unless_allowed() -> None:
    net, root, leaf = _loopback_pair(allow=False)
    net.run_for(30_000)
    # Packets flow (the root answers the leaf's HELLOs), but neither side ever learns a
    # loopback path, so nothing can be routed back to the leaf.
    for a, b in ((leaf, root), (root, leaf)):
        peer = a.peer(b.address)
        assert peer is None or peer.paths == []
        assert not [e for e in net.take_events(a) if isinstance(e, ev.PathUp)]
    net, root, leaf = _loopback_pair(allow=True)
    assert net.run_until_true(lambda: leaf.online, 30_000)
    peer = leaf.peer(root.address)
    assert peer is not None and [s.path.remote for s in peer.paths] == [("127.0.0.1", 9993)]


def test_root_keeps_multicast_subscriptions_and_answers_gathers() -> None:
    from ztnode.wire.constants import Verb
    from ztnode.wire.verbs import MulticastGather, MulticastLike, MulticastSubscription

    w = LocalWorld.build(IDS, roots=1, leaves=2)
    assert w.run_until(w.all_online, 15_000)
    root = w.roots[0]
    a, b = w.leaves
    nwid, mac, adi = 0x8056C2E21C000001, 0xFFFFFFFFFFFF, 0x0A000001
    like = MulticastLike((MulticastSubscription(nwid, mac, adi),)).encode()
    a.switch.send(root.address, Verb.MULTICAST_LIKE, like, w.net.now, compress=True)
    assert w.run_until(
        lambda: root.multicast_subscribers(nwid, mac, adi, w.net.now) == [a.address], 5_000
    )
    oks = b.counters.verbs_in["OK"]
    gather = MulticastGather.create(nwid, mac, adi, 16).encode()
    b.switch.send(root.address, Verb.MULTICAST_GATHER, gather, w.net.now)
    assert w.run_until(lambda: b.counters.verbs_in["OK"] > oks, 5_000)
    # Subscriptions expire after 10 minutes without a renewed LIKE.
    w.run_for(610_000)
    assert root.multicast_subscribers(nwid, mac, adi, w.net.now) == []


def test_the_peer_table_is_bounded_and_says_so() -> None:
    """Past ``max_peers`` a new identity is refused and counted; roots are always admitted."""
    w = LocalWorld.build(test_identities(), roots=1, leaves=3)
    assert w.run_until(w.all_online, 15_000)  # the root is a peer of every leaf
    a, b, c = w.leaves
    a.config = NodeConfig(identity_validation_interval=0, max_peers=2)
    a.send_echo(b.address, b"one", w.net.now)
    assert w.run_until(lambda: a.peer(b.address) is not None and b.peer(a.address), 30_000)
    assert len(a.peers) == 2
    a.send_echo(c.address, b"two", w.net.now)  # c's identity comes back: no room for it
    w.run_for(10_000)
    assert a.peer(c.address) is None
    assert a.counters.drops["peer_table_full"] > 0
    assert len(a.peers) == 2
