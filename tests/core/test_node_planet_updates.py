"""Planet updates as they arrive over the wire, in OK(HELLO) (protocol-core.md 10.2 and 12).

A root answers a HELLO that names an older revision of its planet with the newer one in the
OK. The node takes it only from an upstream, only if it is newer and only if it is signed with
the key the current planet names (``updates_must_be_signed_by``). Here the root's own planet is
swapped behind its back (as a compromised or misconfigured root would serve it), so the update
really travels in an OK(HELLO) and meets the node's checks there.
"""

from __future__ import annotations

from dataclasses import replace

from tests.helpers.data import test_identities
from ztnode.core import events as ev
from ztnode.core.node import Node
from ztnode.crypto import c25519_generate
from ztnode.testing.world import LocalWorld
from ztnode.wire import packet as pk
from ztnode.wire.constants import IDX_PAYLOAD, Verb
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.verbs import OkHello, decode_ok
from ztnode.wire.world import Root, World, WorldType

IDS = test_identities()


def worlds_delivered(w: LocalWorld, sender: Node, receiver: Node) -> list[bytes]:
    """World bytes carried by every OK(HELLO) ``sender`` puts on the wire to ``receiver``."""
    got: list[bytes] = []
    src, dst = w.addresses[sender.address], w.addresses[receiver.address]

    def tap(local: tuple[str, int], remote: tuple[str, int], data: bytes) -> None:
        peer = receiver.peer(sender.address)
        if (local, remote) != (src, dst) or peer is None or len(data) <= IDX_PAYLOAD:
            return
        buf = bytearray(data)
        if not pk.dearmor(buf, peer.key):
            return
        pk.decompress(buf)
        if buf[27] & 0x1F == Verb.OK:
            ok = decode_ok(bytes(buf[IDX_PAYLOAD:]))
            if isinstance(ok, OkHello) and ok.worlds:
                got.append(ok.worlds)

    w.net.taps.append(tap)
    return got


def online_world() -> tuple[LocalWorld, Node, Node]:
    w = LocalWorld.build(IDS, roots=1, leaves=2)
    assert w.run_until(w.all_online, 15_000)
    return w, w.roots[0], w.leaves[0]


def world_updates(w: LocalWorld, node: Node) -> list[ev.WorldUpdated]:
    return [e for e in w.net.events[id(node)] if isinstance(e, ev.WorldUpdated)]


def serve(root: Node, planet: World) -> None:
    """Make the root hand out ``planet`` without checking it (its roots are unchanged)."""
    assert [r.identity for r in planet.roots] == [r.identity for r in root.topology.planet.roots]
    root.topology.planet = planet


def test_badly_signed_planets_in_ok_hello_are_refused() -> None:
    w, root, leaf = online_world()
    old = w.planet
    _pub, priv = w.signing_key
    seen = worlds_delivered(w, root, leaf)
    fpub, fpriv = c25519_generate()
    # Newer, but signed by a key the current planet does not name.
    forged = World.make(WorldType.PLANET, old.id, old.timestamp + 10, fpub, old.roots, fpriv)
    # Newer and signed with the right key, then altered: a root endpoint moved after signing.
    genuine = World.make(WorldType.PLANET, old.id, old.timestamp + 20, _pub, old.roots, priv)
    moved = Root(old.roots[0].identity, (InetAddress.parse("198.51.100.7/9993"),))
    tampered = replace(genuine, roots=(moved,))
    assert not tampered.verify_signature(_pub)
    for bad in (forged, tampered):
        serve(root, bad)
        n = len(seen)
        assert w.run_until(lambda n=n: len(seen) > n, 400_000), "the root never sent it"
        assert seen[-1] == bad.to_bytes()
        w.run_for(100)
        assert leaf.topology.planet == old
        assert world_updates(w, leaf) == []
    # The leaf still uses the genuine root endpoint.
    assert leaf.topology.stable_endpoints[root.address] == old.roots[0].endpoints


def test_correctly_signed_planet_in_ok_hello_is_taken() -> None:
    w, root, leaf = online_world()
    old = w.planet
    pub, priv = w.signing_key
    npub, _npriv = c25519_generate()
    good = World.make(WorldType.PLANET, old.id, old.timestamp + 20, npub, old.roots, priv)
    seen = worlds_delivered(w, root, leaf)
    serve(root, good)
    assert w.run_until(lambda: leaf.topology.planet == good, 400_000)
    assert seen and seen[-1] == good.to_bytes()
    [update] = world_updates(w, leaf)
    assert (update.world_id, update.timestamp, update.world) == (
        old.id,
        good.timestamp,
        good.to_bytes(),
    )
    # The next revision must now be signed with the rotated key: the old one no longer works.
    stale = World.make(WorldType.PLANET, old.id, old.timestamp + 30, pub, old.roots, priv)
    serve(root, stale)
    n = len(seen)
    assert w.run_until(lambda: len(seen) > n, 400_000)
    w.run_for(100)
    assert leaf.topology.planet == good


def test_planet_updates_from_a_non_root_are_ignored() -> None:
    w, _root, leaf = online_world()
    other = w.leaves[1]
    old = w.planet
    _pub, priv = w.signing_key
    good = World.make(WorldType.PLANET, old.id, old.timestamp + 20, _pub, old.roots, priv)
    assert other.add_world(good)  # a leaf that holds a newer, valid planet
    seen = worlds_delivered(w, other, leaf)
    # Keep the two talking until other answers one of leaf's HELLOs with the update.
    for _ in range(100):
        if seen:
            break
        other.send_echo(leaf.address, b"hi", w.net.now)
        w.run_for(10_000)
    assert seen and seen[-1] == good.to_bytes()
    w.run_for(100)
    assert leaf.topology.planet == old
    assert world_updates(w, leaf) == []
