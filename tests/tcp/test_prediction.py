"""Header prediction (``TcpConnection._rx_predicted``) changes nothing but speed.

The same seeded conversation, over the same lossy, duplicating and reordering link, is run twice:
once with the fast path and once with every segment through the general path. Every segment
both ends send, at the same virtual time, and every event, must be identical; and the fast path
must actually have been taken (otherwise this test would prove nothing).
"""

from __future__ import annotations

import random

import pytest

from tests.helpers.tcp_harness import LinkParams, Pair, transfer
from ztnode.netstack import tcp as tcb


def conversation(
    seed: int, link: LinkParams, *, ts: bool, sack: bool, nodelay: bool, predict: bool
) -> tuple[list, int]:  # type: ignore[type-arg]
    """The conversation's log and events, and how many segments header prediction took."""
    cfg = dict(timestamps=ts, sack=sack, nodelay=nodelay, send_buffer=1 << 18, predict=predict)
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
    log = [(t, d, s.astuple()) for t, d, s in pair.log] + [
        (name, type(e).__name__) for name in ("a", "b") for e in pair.events[name]
    ]
    return log, pair.a.predicted + pair.b.predicted


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
    slow, slow_taken = conversation(seed, link, ts=ts, sack=sack, nodelay=nodelay, predict=False)
    fast, fast_taken = conversation(seed, link, ts=ts, sack=sack, nodelay=nodelay, predict=True)
    assert fast == slow
    assert slow_taken == 0
    assert fast_taken > 10
