"""A root and several nodes in memory, under virtual time, with seeded impairments.

These are the behaviours issue 3 asks for: everyone comes online; two nodes behind a root find a
direct path; a dead direct path falls back to the root and recovers; planet updates are accepted
only when properly signed; an identity collision is reported.
"""

from __future__ import annotations

import pytest

from tests.helpers.data import test_identities
from ztnode.core import events as ev
from ztnode.core.node import Node
from ztnode.crypto import c25519_generate
from ztnode.testing.fakenet import LinkProfile
from ztnode.testing.world import LocalWorld
from ztnode.wire import packet as pk
from ztnode.wire.constants import Cipher
from ztnode.wire.world import World, WorldType

IDS = test_identities()


def of_type(events: list[object], kind: type) -> list[object]:
    return [e for e in events if isinstance(e, kind)]


def echo(
    world: LocalWorld, a: Node, b: Node, payload: bytes = b"hi", timeout: int = 20_000
) -> bool:
    """Send ECHO a -> b and run until its reply event arrives (other events stay queued)."""
    rid = a.send_echo(b.address, payload, world.net.now)
    pending = world.net.events[id(a)]

    def done() -> bool:
        return any(
            isinstance(e, ev.EchoReply) and e.request_id == rid and e.payload == payload
            for e in pending
        )

    return world.run_until(done, timeout)


def test_world_comes_online() -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=4)
    assert w.run_until(w.all_online, 15_000)
    for n in w.leaves:
        assert ev.NodeOnline() in w.events(n)
        root_peer = n.peer(w.roots[0].address)
        assert root_peer is not None and root_peer.version[0] == 12
        assert root_peer.best_path(w.net.now) is not None
    # The root learned every leaf and validated them.
    assert {n.address for n in w.leaves} <= set(w.roots[0].peers)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_online_and_direct_under_loss_reorder_and_duplication(seed: int) -> None:
    prof = LinkProfile(loss=0.1, duplicate=0.05, reorder=0.1, latency_ms=3, jitter_ms=5)
    w = LocalWorld.build(IDS, roots=1, leaves=3, seed=seed, profile=prof)
    assert w.run_until(w.all_online, 60_000)
    a, b = w.leaves[0], w.leaves[1]
    assert w.run_until(lambda: echo(w, a, b, timeout=5_000) and w.direct(a, b), 120_000)
    assert w.direct(b, a) or w.run_until(lambda: w.direct(b, a), 60_000)


def test_two_leaves_find_a_direct_path_via_rendezvous() -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=2)
    assert w.run_until(w.all_online, 15_000)
    a, b = w.leaves
    root = w.roots[0]
    assert echo(w, a, b)  # via WHOIS, then relayed by the root
    assert a.peer(b.address) is not None
    assert w.run_until(lambda: w.direct(a, b) and w.direct(b, a), 30_000)
    assert root.counters.verbs_in["WHOIS"] >= 1
    # Once direct and versions are known, traffic uses AES-GMAC-SIV.
    before = root.counters.packets_in
    assert echo(w, a, b, b"direct")
    assert root.counters.packets_in == before  # the root saw none of it
    assert a.peer(b.address).supports_aes()  # type: ignore[union-attr]
    assert a.switch.cipher_for(a.peer(b.address)) == Cipher.AES_GMAC_SIV  # type: ignore[arg-type]
    evs = w.events(a)
    assert of_type(evs, ev.PeerDirect)


# Seeded impairments on every link: 10% loss, 5% duplication, 10% reordering, plus jitter.
IMPAIRED = LinkProfile(loss=0.1, duplicate=0.05, reorder=0.1, latency_ms=3, jitter_ms=5)
CONDITIONS = [
    pytest.param(None, 1, id="clean"),
    *(pytest.param(IMPAIRED, seed, id=f"impaired-{seed}") for seed in (1, 2, 3)),
]


def relayed_counter(w: LocalWorld, a: Node, b: Node) -> list[int]:
    """A one-item list counting datagrams ``a`` hands the root for ``b`` (relayed traffic)."""
    count = [0]
    src, root = w.addresses[a.address], w.addresses[w.roots[0].address]

    def tap(local: tuple[str, int], remote: tuple[str, int], data: bytes) -> None:
        if local == src and remote == root and len(data) >= 13 and pk.peek_dest(data) == b.address:
            count[0] += 1

    w.net.taps.append(tap)
    return count


@pytest.mark.parametrize(("profile", "seed"), CONDITIONS)
def test_dead_direct_path_falls_back_to_root_and_recovers(
    profile: LinkProfile | None, seed: int
) -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=2, seed=seed, profile=profile)
    assert w.run_until(w.all_online, 60_000)
    a, b = w.leaves
    relayed = relayed_counter(w, a, b)
    assert w.run_until(
        lambda: echo(w, a, b, timeout=5_000) and w.direct(a, b) and w.direct(b, a), 120_000
    )
    w.events(a)
    ip_a, ip_b = w.addresses[a.address][0], w.addresses[b.address][0]
    w.net.block(ip_a, ip_b)
    # Keepalives keep b active; after expiry the direct path goes away.
    for _ in range(80):
        echo(w, a, b, b"keep", timeout=5_000)
        w.run_for(5_000)
        if not w.direct(a, b):
            break
    assert not w.direct(a, b)
    assert of_type(w.events(a), ev.PathDown)
    # Traffic now goes through the root.
    before = relayed[0]
    assert w.run_until(lambda: echo(w, a, b, b"relayed", 5_000), 60_000)
    assert relayed[0] > before
    # The link comes back: a direct path is found again and traffic leaves the root.
    w.net.unblock(ip_a, ip_b)
    assert w.run_until(lambda: echo(w, a, b, b"again", 5_000) and w.direct(a, b), 180_000)
    before = relayed[0]
    assert w.run_until(lambda: echo(w, a, b, b"direct again", 5_000), 60_000)
    assert relayed[0] == before


def _new_key() -> tuple[bytes, bytes]:
    return c25519_generate()


def test_signed_planet_update_accepted_and_bad_one_refused() -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=1)
    assert w.run_until(w.all_online, 15_000)
    leaf, root = w.leaves[0], w.roots[0]
    pub, priv = w.signing_key
    old = w.planet
    # A forged update: same id, newer, signed by some other key.
    fpub, fpriv = _new_key()
    forged = World.make(WorldType.PLANET, old.id, old.timestamp + 10, fpub, old.roots, fpriv)
    assert not root.add_world(forged)
    assert not leaf.topology.add_world(forged, always_accept_new=False)
    assert root.topology.planet == old and leaf.topology.planet == old
    # The genuine update, signed by the key the current planet names; it rotates to a new key.
    npub, _npriv = _new_key()
    good = World.make(WorldType.PLANET, old.id, old.timestamp + 20, npub, old.roots, priv)
    assert root.add_world(good)
    # Leaves pick it up from the root's OK(HELLO) at the next full HELLO.
    assert w.run_until(lambda: leaf.topology.planet == good, 400_000)
    assert any(isinstance(e, ev.WorldUpdated) for e in w.events(leaf))
    # An update signed with the now-retired key is refused.
    stale = World.make(WorldType.PLANET, old.id, old.timestamp + 30, pub, old.roots, priv)
    assert not leaf.topology.add_world(stale, always_accept_new=False)
    assert leaf.topology.planet == good


@pytest.mark.parametrize(("profile", "seed"), CONDITIONS)
def test_identity_collision_is_reported_to_the_impostor(
    profile: LinkProfile | None, seed: int
) -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=1, seed=seed, profile=profile)
    assert w.run_until(w.all_online, 60_000)
    real = w.leaves[0]
    # An impostor claims the same address with a different key pair: forge it by reusing the
    # address with another identity's keys (it can never validate, but the root must first
    # authenticate its HELLO with the key it claims, then answer IDENTITY_COLLISION).
    from ztnode.identity import Identity

    other = IDS[-1]
    fake = Identity(real.address, other.public_key, other.private_key)
    impostor = Node(
        fake,
        w.planet,
        now=w.net.now,
        random_bytes=bytes,
        local_addresses=[("10.0.9.9", 9993)],
    )
    w.net.attach(impostor, ("10.0.9.9", 9993))
    assert w.run_until(
        lambda: any(isinstance(e, ev.IdentityCollision) for e in w.net.events[id(impostor)]),
        60_000,
    )
    assert w.roots[0].counters.drops["identity_collision"] >= 1
    # The real node is unaffected.
    assert w.roots[0].peer(real.address).identity == real.identity  # type: ignore[union-attr]


def test_user_message_and_counters() -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=2)
    assert w.run_until(w.all_online, 15_000)
    a, b = w.leaves
    a.send_user_message(b.address, 0x10000, b"hello there" * 50, w.net.now)
    assert w.run_until(
        lambda: any(
            isinstance(e, ev.UserMessage) and e.data == b"hello there" * 50
            for e in w.net.events[id(b)]
        ),
        20_000,
    )
    st = b.status(w.net.now)
    assert st["online"] is True
