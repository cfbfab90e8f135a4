"""The LIKE tables are bounded: an authenticated peer naming ever more groups fills them to
their limit, no further; held entries still refresh, and expiry makes room again."""

from __future__ import annotations

import random

from tests.core.test_node_fuzz import feed, forge, online_world
from ztnode.core.likes import LikeTable
from ztnode.wire.constants import Verb
from ztnode.wire.verbs import MulticastLike, MulticastSubscription


def test_table_bound_refresh_and_expiry() -> None:
    t: LikeTable[int] = LikeTable(limit=3)
    assert t.note(1, 10, 0) and t.note(1, 11, 0) and t.note(2, 10, 0)
    assert not t.note(3, 10, 0) and t.entries == 3 and 3 not in t
    assert t.note(1, 10, 500)  # a held entry refreshes whatever the count
    t.expire(now=600, max_age=200)
    assert t.entries == 1 and t.members(1) == {10: 500} and 2 not in t
    assert t.note(3, 10, 600)


def test_like_flood_from_a_member_stays_bounded() -> None:
    """A member sends a root LIKEs for 4 000 made-up groups; with the root's table bound set to
    1 000 for the test, it keeps 1 000 and counts the rest, and the world still works."""
    w = online_world()
    a, _b = w.leaves
    root = w.roots[0]
    likes = root.multicaster._likes
    likes.limit = 1_000
    rng = random.Random(3)
    nwid = 0x8056C2E21C000001
    for _ in range(40):
        subs = tuple(
            MulticastSubscription(nwid, rng.randrange(1 << 48) | (1 << 40), rng.randrange(1 << 32))
            for _ in range(100)
        )
        packet = forge(a.address, root, Verb.MULTICAST_LIKE, MulticastLike(subs).encode(), rng)
        feed(w, root, bytes(packet), w.addresses[a.address])
    assert likes.entries == 1_000
    assert root.counters.drops["like_table_full"] == 3_000
    assert root.counters.drops["internal_error"] == 0
