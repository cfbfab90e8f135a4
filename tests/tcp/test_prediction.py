"""Header prediction (``TcpConnection._rx_predicted``) changes nothing but speed.

The same seeded conversation, over the same lossy, duplicating and reordering link, is run twice:
once with the fast path and once with every segment through the general path. Every segment
both ends send, at the same virtual time, and every event, must be identical; and the fast path
must actually have been taken (otherwise this test would prove nothing).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple

import pytest

from tests.helpers.tcp_harness import LinkParams, Pair, transfer
from ztnode.netstack import tcp as tcb


@contextmanager
def prediction(on: bool) -> Iterator[list[int]]:
    """Switch the fast path, counting the segments it took."""
    taken = [0]
    original = tcb.TcpConnection._rx_predicted

    def counting(self: tcb.TcpConnection, seg: tcb.Segment, now: int) -> bool:
        done = original(self, seg, now)
        taken[0] += done
        return done

    old = tcb.TcpConnection.predict
    tcb.TcpConnection.predict = on
    tcb.TcpConnection._rx_predicted = counting  # type: ignore[method-assign]
    try:
        yield taken
    finally:
        tcb.TcpConnection.predict = old
        tcb.TcpConnection._rx_predicted = original  # type: ignore[method-assign]


def conversation(seed: int, link: LinkParams, *, ts: bool, sack: bool, nodelay: bool) -> list:  # type: ignore[type-arg]
    cfg = dict(timestamps=ts, sack=sack, nodelay=nodelay, send_buffer=1 << 18)
    pair = Pair(
        a_config=tcb.TcpConfig(**cfg),  # type: ignore[arg-type]
        b_config=tcb.TcpConfig(**cfg),  # type: ignore[arg-type]
        link=link,
        seed=seed,
    )
    pair.handshake()
    rng = random.Random(seed)
    for _ in range(3):  # both directions, bulk and small exchanges in turn
        big = rng.randbytes(rng.randrange(1, 300_000))
        assert transfer(pair, "a", big) == big
        small = rng.randbytes(rng.randrange(1, 200))
        assert transfer(pair, "b", small) == small
    pair.a.shutdown(pair.now)
    pair.b.shutdown(pair.now)
    pair.run(max_time=600_000)
    return [(t, d, astuple(s)) for t, d, s in pair.log] + [
        (name, type(e).__name__) for name in ("a", "b") for e in pair.events[name]
    ]


@pytest.mark.parametrize(
    "link",
    [
        LinkParams(),
        LinkParams(loss=0.05, dup=0.05, delay_ms=10, jitter_ms=25),
        LinkParams(loss=0.2, dup=0.02, delay_ms=5, jitter_ms=5),
    ],
    ids=["clean", "lossy-reordering", "very-lossy"],
)
@pytest.mark.parametrize("ts,sack,nodelay", [(True, True, False), (False, False, True)])
@pytest.mark.parametrize("seed", [1, 2])
def test_prediction_changes_nothing_but_speed(
    link: LinkParams, ts: bool, sack: bool, nodelay: bool, seed: int
) -> None:
    with prediction(False) as slow_taken:
        slow = conversation(seed, link, ts=ts, sack=sack, nodelay=nodelay)
    with prediction(True) as fast_taken:
        fast = conversation(seed, link, ts=ts, sack=sack, nodelay=nodelay)
    assert fast == slow
    assert slow_taken[0] == 0
    assert fast_taken[0] > 10
