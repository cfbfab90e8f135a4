"""Node.contact_peer: a controller instance greets members another instance serves, in memory."""

from __future__ import annotations

from tests.helpers.data import test_identities
from ztnode.testing.world import LocalWorld

IDS = test_identities()


def test_contact_makes_a_direct_path_to_a_peer_never_met() -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=2)
    assert w.run_until(w.all_online, 15_000)
    a, b = w.leaves
    assert b.address not in a.peers
    where = w.addresses[b.address]
    a.contact_peer(b.identity.public(), [where], w.net.now)
    assert w.run_until(
        lambda: (
            b.address in a.peers
            and any(
                s.path.remote == where and s.path.alive(w.net.now) for s in a.peers[b.address].paths
            )
        ),
        10_000,
    )
    # b learned a's path from the greeting's exchange too.
    assert a.address in b.peers


def test_contact_of_ourselves_or_a_known_path_adds_nothing() -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=2)
    assert w.run_until(w.all_online, 15_000)
    a, b = w.leaves
    where = w.addresses[b.address]
    a.contact_peer(b.identity.public(), [where], w.net.now)
    assert w.run_until(lambda: b.address in a.peers and a.peers[b.address].paths, 10_000)
    peers, paths = set(a.peers), len(a.peers[b.address].paths)
    a.contact_peer(a.identity.public(), [w.addresses[a.address]], w.net.now)
    a.contact_peer(b.identity.public(), [where], w.net.now)
    w.run_until(lambda: False, 2_000)
    assert set(a.peers) == peers and len(a.peers[b.address].paths) == paths
