"""The shared bounded reassembly engine: orders, duplicates, overlaps, timeouts, floods."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.errors import DecodeError
from ztnode.netstack._reassembly import Reassembler


def pieces(payload: bytes, size: int) -> list[tuple[int, bytes, bool]]:
    out = []
    for off in range(0, len(payload), size):
        chunk = payload[off : off + size]
        out.append((off, chunk, off + size < len(payload)))
    return out


@settings(max_examples=100)
@given(st.binary(min_size=1, max_size=2000), st.integers(1, 40), st.randoms())
def test_random_order_with_duplicates(payload: bytes, units: int, rnd: random.Random) -> None:
    frags = pieces(payload, units * 8)
    frags += [rnd.choice(frags) for _ in range(rnd.randint(0, 5))]
    rnd.shuffle(frags)
    r: Reassembler[int, str] = Reassembler()
    results = []
    for off, data, more in frags:
        res = r.add(1, off, data, more, 0, "meta" if off == 0 else None)
        if res is not None:
            results.append(res)
    assert results[0] == ("meta", payload)
    assert r.buffered_bytes == 0 or len(results) > 1 or len(r) == 1


def test_overlap_poisons_until_timeout() -> None:
    r: Reassembler[str, int] = Reassembler(timeout_ms=1000)
    assert r.add("k", 0, b"a" * 16, True, 0, 1) is None
    assert r.add("k", 8, b"b" * 16, True, 0, None) is None  # overlaps [8,16)
    assert r.overlaps == 1 and r.buffered_bytes == 0
    # The rest of the poisoned datagram is dropped, not reassembled into garbage.
    assert r.add("k", 16, b"c" * 8, False, 10, None) is None
    assert r.add("k", 0, b"a" * 16, True, 10, 1) is None
    assert r.dropped == 2
    # After the timeout the key can be used again.
    assert r.expire(1000) == 1
    assert r.add("k", 0, b"a" * 8, True, 1000, 1) is None
    assert r.add("k", 8, b"b" * 8, False, 1000, None) == (1, b"a" * 8 + b"b" * 8)


def test_conflicting_duplicates_and_ends() -> None:
    r: Reassembler[int, int] = Reassembler()
    r.add(1, 0, b"a" * 8, True, 0, 1)
    assert r.add(1, 0, b"a" * 8, True, 0, 1) is None and r.duplicates == 1
    r.add(1, 0, b"b" * 8, True, 0, 1)  # same offset, different bytes: RFC 5722 drop
    assert r.overlaps == 1
    r.add(2, 16, b"x" * 8, False, 0, None)
    r.add(2, 32, b"x" * 8, False, 0, None)  # second, different end
    assert r.overlaps == 2
    r.add(3, 16, b"x" * 8, False, 0, None)
    r.add(3, 24, b"x" * 8, True, 0, None)  # beyond the end already fixed
    assert r.overlaps == 3
    r.add(4, 8, b"x" * 8, True, 0, None)
    r.add(4, 0, b"x" * 8, False, 0, 4)  # final fragment ends before a fragment we hold
    assert r.overlaps == 4


def test_timeout() -> None:
    r: Reassembler[int, int] = Reassembler(timeout_ms=500)
    r.add(1, 0, b"a" * 8, True, 100, 1)
    r.add(2, 0, b"a" * 8, True, 300, 1)
    assert r.next_deadline() == 600
    assert r.expire(599) == 0
    assert r.expire(600) == 1 and len(r) == 1
    # The late fragment of datagram 1 starts a fresh reassembly that cannot complete alone.
    assert r.add(1, 8, b"b" * 8, False, 700, None) is None
    assert r.timed_out == 1 and len(r) == 2
    assert r.expire(10_000) == 2 and len(r) == 0 and r.buffered_bytes == 0
    assert r.next_deadline() is None


def test_clock_going_backwards_still_expires() -> None:
    r: Reassembler[int, int] = Reassembler(timeout_ms=100)
    r.add(1, 0, b"a" * 8, True, 1000, 1)
    r.add(2, 0, b"a" * 8, True, 500, 1)  # now went back: deadline 600 sits behind 1100
    assert r.expire(700) == 1 and len(r) == 1


def test_flood_of_datagrams_is_bounded() -> None:
    r: Reassembler[int, int] = Reassembler(max_datagrams=16, max_bytes=10_000)
    for i in range(10_000):
        r.add(i, 8, b"j" * 8, True, i, None)
        assert len(r) <= 16 and r.buffered_bytes <= 10_000
    assert r.evicted == 10_000 - 16
    # A legitimate datagram still gets through once the flood pauses.
    assert r.add(-1, 0, b"o" * 8, True, 10_000, 7) is None
    assert r.add(-1, 8, b"k", False, 10_000, None) == (7, b"o" * 8 + b"k")


def test_flood_of_bytes_is_bounded() -> None:
    r: Reassembler[int, int] = Reassembler(max_datagrams=1000, max_bytes=50_000)
    big = b"z" * 1480
    for i in range(2000):
        r.add(i, 0, big, True, 0, 1)
        assert r.buffered_bytes <= 50_000
    assert r.evicted > 0
    # One datagram bigger than the whole budget is dropped, not kept.
    r2: Reassembler[int, int] = Reassembler(max_bytes=1000)
    r2.add(1, 0, b"a" * 800, True, 0, 1)
    assert r2.add(1, 800, b"a" * 800, False, 0, None) is None
    assert r2.dropped == 1 and len(r2) == 0 and r2.buffered_bytes == 0


def test_fragment_count_bound() -> None:
    r: Reassembler[int, int] = Reassembler(max_fragments=4)
    for k in range(5):
        r.add(1, 8 * (k + 1), b"t" * 8, True, 0, None)
    assert r.dropped == 1 and r.buffered_bytes == 0


def test_invalid_fragments_raise() -> None:
    r: Reassembler[int, int] = Reassembler(max_size=100)
    with pytest.raises(DecodeError):
        r.add(1, 96, b"x" * 8, False, 0, None)
    with pytest.raises(DecodeError):
        r.add(1, 0, b"x" * 7, True, 0, 1)
    with pytest.raises(DecodeError):
        r.add(1, 0, b"", True, 0, 1)
    with pytest.raises(ValueError):
        Reassembler(max_datagrams=0)


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 20).map(lambda x: x * 8),
            st.binary(min_size=1, max_size=40),
            st.booleans(),
            st.integers(0, 5000),
        ),
        max_size=60,
    )
)
def test_random_garbage_keeps_invariants(ops: list[tuple[int, int, bytes, bool, int]]) -> None:
    r: Reassembler[int, int] = Reassembler(max_datagrams=3, max_bytes=200, timeout_ms=1000)
    now = 0
    for key, off, data, more, dt in ops:
        now += dt
        if more:
            data = data[: len(data) // 8 * 8] or b"\0" * 8
        try:
            res = r.add(key, off, data, more, now, key if off == 0 else None)
        except DecodeError:
            continue
        if res is not None:
            assert res[0] == key
        assert len(r) <= 3 and 0 <= r.buffered_bytes <= 200
        assert r.buffered_bytes == sum(d.size for d in r._dgrams.values())
