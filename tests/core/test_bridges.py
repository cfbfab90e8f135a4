"""Bridge routes (which member a foreign MAC sits behind): learning, moving, ageing, the
bound and its purge of the heaviest bridge, forgetting a bridge."""

from __future__ import annotations

from ztnode.core.bridges import ROUTE_TTL, BridgeRoutes

B1, B2, B3 = 0x1111111111, 0x2222222222, 0x3333333333


def test_learn_move_and_age() -> None:
    r = BridgeRoutes()
    r.learn(0xAA, B1, 0)
    assert r.lookup(0xAA, 10) == B1
    r.learn(0xAA, B2, 20)  # the host moved behind another bridge
    assert r.lookup(0xAA, 30) == B2 and r.macs_behind(B1) == []
    assert r.lookup(0xAA, 20 + ROUTE_TTL) is None  # not refreshed: forgotten
    assert len(r) == 0
    r.learn(0xBB, B1, 0)
    r.learn(0xCC, B1, ROUTE_TTL)
    r.prune(ROUTE_TTL + 1)
    assert r.macs_behind(B1) == [0xCC]


def test_full_table_purges_the_bridge_with_most_routes() -> None:
    r = BridgeRoutes(max_routes=10)
    for i in range(7):
        r.learn(0x100 + i, B1, 0)  # a bridge flooding source MACs
    for i in range(3):
        r.learn(0x200 + i, B2, 0)
    r.learn(0x300, B3, 1)  # full: B1's routes go, not B2's
    assert r.purged == 7
    assert sorted(r.macs_behind(B2)) == [0x200, 0x201, 0x202]
    assert r.lookup(0x300, 2) == B3 and r.lookup(0x100, 2) is None
    assert len(r) == 4


def test_forget_bridge() -> None:
    r = BridgeRoutes()
    r.learn(0xAA, B1, 0)
    r.learn(0xBB, B2, 0)
    r.forget_bridge(B1)
    assert r.lookup(0xAA, 1) is None and r.lookup(0xBB, 1) == B2
