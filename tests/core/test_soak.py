"""Soak: fifty in-process nodes on the fake network through ten virtual minutes of churn.

A root, a controller host and 48 members of one private network, under virtual time. Every five
virtual seconds something changes (a member leaves or rejoins the network, a link between two
nodes fails or heals, and once a minute the controller changes the network, which pushes a new
config to every member) while members ECHO each other and send FRAMEs to each other. After a
virtual minute of warm-up the Python heap is measured (``tracemalloc``); at the end, with every
link healed and every member back, the heap may not have grown beyond a small allowance, the
node tables stay within their bounds, every node is online, every pair tried can still talk,
and no node hit an internal error. Identities: the 8 shared test identities plus 44 made once
for this test (``tests/data/soak-identities.txt``)."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import pytest

from tests.core.test_node_fuzz import echo
from tests.helpers.data import DATA, test_identities
from ztnode.controller import open_controller
from ztnode.core.network import NetworkStatus
from ztnode.core.node import Node
from ztnode.identity import Identity
from ztnode.testing.world import LocalWorld, seeded_random_bytes
from ztnode.wire.mac import mac_from_address

pytestmark = pytest.mark.slow

MEMBERS = 48
WARMUP_MS = 60_000
MINUTES = 10
STEP_MS = 5_000
HEAP_ALLOWANCE = 8 * 1024 * 1024  # bytes the heap may grow by after warm-up (caches filling)


def identities() -> list[Identity]:
    extra = (DATA / "soak-identities.txt").read_text().split()
    return [*test_identities(), *(Identity.from_string(s) for s in extra)]


def test_fifty_nodes_through_churn(tmp_path: Path) -> None:
    ids = identities()
    assert len(ids) >= MEMBERS + 2
    w = LocalWorld.build(ids, roots=1, leaves=MEMBERS + 1, seed=21)
    assert w.run_until(w.all_online, 60_000)
    ctl_node, members = w.leaves[0], w.leaves[1:]
    ctl = open_controller(ctl_node.identity, tmp_path, seeded_random_bytes(4))
    ctl_node.controller = ctl
    nwid = int(str(ctl.create_network({"name": "soak", "private": True}, w.net.now)["id"]), 16)
    for m in members:
        ctl.update_member(nwid, m.address, {"authorized": True}, w.net.now)
        m.join(nwid, w.net.now)
    ctl_node.flush_controller(w.net.now)

    def ok(m: Node) -> bool:
        net = m.network(nwid)
        return net is not None and net.status == NetworkStatus.OK

    assert w.run_until(lambda: all(ok(m) for m in members), 60_000)
    rng = random.Random(7)
    joined = set(range(len(members)))
    blocked: set[tuple[str, str]] = set()

    def traffic() -> None:
        for _ in range(6):
            i, j = rng.sample(sorted(joined), 2)
            a, b = members[i], members[j]
            a.send_echo(b.address, b"soak", w.net.now)
            a.send_frame(
                nwid, mac_from_address(b.address, nwid), 0x88B5, rng.randbytes(64), w.net.now
            )

    def churn(step: int) -> None:
        kind = step % 3
        if kind == 0:  # a member leaves, or one that left comes back
            gone = sorted(set(range(len(members))) - joined)
            if gone and rng.random() < 0.6:
                k = rng.choice(gone)
                members[k].join(nwid, w.net.now)
                joined.add(k)
            elif len(joined) > MEMBERS // 2:
                k = rng.choice(sorted(joined))
                members[k].leave(nwid)
                joined.discard(k)
        elif kind == 1:  # a link fails, or one heals
            if blocked and rng.random() < 0.5:
                pair = rng.choice(sorted(blocked))
                w.net.unblock(*pair)
                blocked.discard(pair)
            else:
                a, b = rng.sample(members, 2)
                pair = (w.addresses[a.address][0], w.addresses[b.address][0])
                w.net.block(*pair)
                blocked.add(pair)
        if step % 12 == 0:  # once a minute the controller changes the network
            ctl.update_network(nwid, {"name": f"soak {step}"}, w.net.now)
            ctl_node.flush_controller(w.net.now)

    def step_for(ms: int) -> None:
        w.run_for(ms)
        for evs in w.net.events.values():  # the harness's own record of events, not the nodes'
            evs.clear()

    for _ in range(WARMUP_MS // STEP_MS):
        traffic()
        step_for(STEP_MS)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for step in range(MINUTES * 60_000 // STEP_MS):
            churn(step)
            traffic()
            step_for(STEP_MS)
        for pair in blocked:
            w.net.unblock(*pair)
        for k in set(range(len(members))) - joined:
            members[k].join(nwid, w.net.now)
        step_for(60_000)
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()

    assert w.run_until(w.all_online, 60_000)
    assert w.run_until(lambda: all(ok(m) for m in members), 60_000)
    for n in w.nodes:
        assert n.counters.drops["internal_error"] == 0, dict(n.counters.drops)
        assert len(n.paths) <= 4 * len(w.nodes), len(n.paths)
        assert len(n.peers) <= len(w.nodes), len(n.peers)
        assert sum(len(p.replay) for p in n.peers.values()) <= len(n.peers) * 8192
    for _ in range(10):
        a, b = rng.sample(members, 2)
        w.run_for(200)
        assert echo(w, a, b, b"after the soak", timeout=20_000)
    assert grown < HEAP_ALLOWANCE, f"the heap grew by {grown / 1e6:.1f} MB after warm-up"
    ctl.close()
