"""Fragment codec, splitting, and the bounded sans-I/O reassembler (§7)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.crypto import SymmetricKey
from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.wire import fragment as fr
from ztnode.wire import packet as pk
from ztnode.wire.constants import (
    DEFAULT_PHYSMTU,
    MAX_PACKET_LENGTH,
    MIN_PHYSMTU,
    Cipher,
    Verb,
)

H = bytes.fromhex
KEY = SymmetricKey(bytes(range(48)))
DEST = 0x1122334455
SRC = 0x66778899AA
D = fr.DropReason


def _armored(size: int, mtu: int = DEFAULT_PHYSMTU, cipher: Cipher = Cipher.AES_GMAC_SIV) -> bytes:
    """A packet of ``size`` bytes prepared the documented way: flag, armor (then split)."""
    payload = bytes((i * 31 + 7) % 256 for i in range(size - 28))
    buf = pk.new_packet(H("0102030405060708"), DEST, SRC, Verb.FRAME, payload)
    if fr.needs_fragmentation(len(buf), mtu):
        pk.set_fragmented(buf)
    pk.armor(buf, KEY, cipher)
    return bytes(buf)


# --- codec -------------------------------------------------------------------------------------


def test_fragment_layout() -> None:
    data = fr.build_fragment(H("0102030405060708"), DEST, 3, 2, b"payload")
    assert data == H("01020304050607081122334455ff3200") + b"payload"
    assert fr.is_fragment(data)
    f = fr.Fragment.parse(data)
    assert (f.packet_id, f.dest, f.total, f.number, f.hops) == (0x0102030405060708, DEST, 3, 2, 0)
    assert bytes(f.payload) == b"payload"
    assert f.valid
    assert pk.classify_datagram(data) == pk.DatagramKind.FRAGMENT


def test_fragment_validity_rules() -> None:
    def frag(total: int, number: int) -> fr.Fragment:
        raw = bytearray(fr.build_fragment(bytes(8), DEST, 2, 1, b"x"))
        raw[14] = (total << 4) | number
        return fr.Fragment.parse(raw)

    assert frag(7, 6).valid
    assert frag(2, 1).valid
    assert not frag(8, 1).valid  # more than ZT_MAX_PACKET_FRAGMENTS
    assert not frag(1, 1).valid  # a single piece is not fragmented
    assert not frag(3, 0).valid  # fragment 0 is the head
    assert not frag(7, 7).valid
    assert not frag(3, 3).valid  # number must be below the total
    assert not frag(15, 15).valid


def test_fragment_parse_rejects_non_fragments() -> None:
    with pytest.raises(DecodeError):
        fr.Fragment.parse(bytes(40))
    short = bytearray(16)
    short[13] = 0xFF
    assert not fr.is_fragment(short)  # needs more than 16 bytes
    with pytest.raises(DecodeError):
        fr.Fragment.parse(short)


@given(st.binary(max_size=40))
def test_fragment_parse_fuzz(data: bytes) -> None:
    try:
        f = fr.Fragment.parse(data)
    except DecodeError:
        assert not fr.is_fragment(data)
    else:
        assert 0 <= f.total <= 15 and 0 <= f.number <= 15
        assert bytes(f.payload) == data[16:]


def test_build_fragment_rejects_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        fr.build_fragment(bytes(7), DEST, 2, 1, b"")
    with pytest.raises(LocalProtocolError):
        fr.build_fragment(bytes(8), DEST, 8, 1, b"")
    with pytest.raises(LocalProtocolError):
        fr.build_fragment(bytes(8), DEST, 2, 2, b"")
    with pytest.raises(LocalProtocolError):
        fr.build_fragment(bytes(8), 1 << 40, 2, 1, b"")


def test_increment_fragment_hops() -> None:
    data = bytearray(fr.build_fragment(bytes(8), DEST, 2, 1, b"x"))
    for expect in (1, 2, 3, 4, 5, 6, 7, 0):
        assert fr.increment_fragment_hops(data) == expect
    data[15] = 0xFE  # the whole byte counts; the result is masked to 3 bits
    assert fr.increment_fragment_hops(data) == 7
    with pytest.raises(LocalProtocolError):
        fr.increment_fragment_hops(bytearray(40))


# --- splitting ---------------------------------------------------------------------------------


def test_fragment_count_matches_reference_formula() -> None:
    for mtu in (MIN_PHYSMTU, DEFAULT_PHYSMTU, 2000):
        for size in range(28, 10_000, 37):
            per = mtu - 16
            if size <= mtu:
                expect = 1
            else:
                remaining = size - mtu
                expect = 1 + remaining // per + (1 if remaining % per else 0)
            assert fr.fragment_count(size, mtu) == expect
    assert fr.max_packet_size() == 1432 + 6 * 1416 == 9928


def test_split_small_packet_is_whole() -> None:
    wire = _armored(500)
    assert fr.split(wire) == [wire]
    assert not fr.needs_fragmentation(DEFAULT_PHYSMTU)
    assert fr.needs_fragmentation(DEFAULT_PHYSMTU + 1)


def test_split_layout() -> None:
    wire = _armored(4000)
    parts = fr.split(wire)
    assert len(parts) == 3 == fr.fragment_count(4000)
    assert parts[0] == wire[:DEFAULT_PHYSMTU]
    assert pk.is_fragmented(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        f = fr.Fragment.parse(part)
        assert f.packet_id == pk.peek_packet_id(wire)  # the wire ID, after armor
        assert f.dest == DEST
        assert (f.total, f.number, f.hops) == (3, i, 0)
        assert len(part) <= DEFAULT_PHYSMTU
    assert b"".join([parts[0]] + [p[16:] for p in parts[1:]]) == wire


def test_split_refuses_wrong_flag_or_too_many_pieces() -> None:
    big = bytearray(_armored(4000))
    big[18] &= 0xBF
    with pytest.raises(LocalProtocolError, match="before armor"):
        fr.split(big)
    small = bytearray(_armored(200))
    small[18] |= 0x40
    with pytest.raises(LocalProtocolError):
        fr.split(small)
    buf = pk.new_packet(bytes(8), DEST, SRC, Verb.FRAME, bytes(9928 - 28 + 1))
    pk.set_fragmented(buf)
    with pytest.raises(LocalProtocolError, match="at most 7"):
        fr.split(buf)
    with pytest.raises(LocalProtocolError):
        fr.split(bytes(20))
    with pytest.raises(LocalProtocolError):
        fr.split(_armored(200), mtu=27)


# --- reassembly --------------------------------------------------------------------------------


def test_pipeline_split_reassemble_dearmor() -> None:
    wire = _armored(9000)
    parts = fr.split(wire)
    assert len(parts) == 7
    r = fr.Reassembler()
    out = None
    for part in parts:
        assert out is None
        out = r.add(part, now=1000)
    assert out is not None and bytes(out) == wire
    assert pk.dearmor(out, KEY)
    assert r.pending == 0
    assert r.completed == 1
    assert not r.drops


def test_head_after_fragments_and_duplicates() -> None:
    parts = fr.split(_armored(3000))
    r = fr.Reassembler()
    assert r.add_fragment(parts[2], 0) is None
    assert r.add_fragment(parts[2], 0) is None
    assert r.add_fragment(parts[1], 0) is None
    assert r.drops[D.DUPLICATE_FRAGMENT] == 1
    out = r.add_head(parts[0], 0)
    assert out is not None and bytes(out) == b"".join([parts[0], parts[1][16:], parts[2][16:]])
    # Late duplicates of a completed packet are dropped, not reassembled a second time...
    assert r.add_fragment(parts[1], 10) is None
    assert r.add_head(parts[0], 10) is None
    assert r.add_fragment(parts[2], 10) is None
    assert r.drops[D.DUPLICATE_FRAGMENT] == 3
    assert r.drops[D.DUPLICATE_HEAD] == 1
    assert r.pending == 0
    # ...until the timeout has passed; then a stray piece starts a set that expires in turn.
    later = fr.DEFAULT_REASSEMBLY_TIMEOUT_MS + 1
    assert r.add_fragment(parts[1], later) is None
    assert r.pending == 1
    assert r.expire(2 * later) == 1
    assert r.drops[D.EXPIRED] == 1


def test_duplicate_head() -> None:
    parts = fr.split(_armored(3000))
    r = fr.Reassembler()
    assert r.add(parts[0], 0) is None
    assert r.add(parts[0], 0) is None
    assert r.drops[D.DUPLICATE_HEAD] == 1
    assert r.add(parts[1], 0) is None
    assert r.add(parts[2], 0) is not None


def test_invalid_fragments_are_counted() -> None:
    r = fr.Reassembler()
    for total, number in ((8, 1), (1, 1), (3, 0), (7, 7), (3, 5), (0, 0)):
        raw = bytearray(fr.build_fragment(bytes(8), DEST, 2, 1, b"x"))
        raw[14] = (total << 4) | number
        assert r.add_fragment(raw, 0) is None
    assert r.drops[D.INVALID_FRAGMENT] == 6
    assert r.add_fragment(bytes(40), 0) is None  # not a fragment at all
    assert r.drops[D.INVALID_FRAGMENT] == 7
    assert r.add_head(bytes(20), 0) is None
    assert r.add_head(_armored(100), 0) is None  # flag 0x40 clear
    assert r.add(bytes(20), 0) is None
    assert r.drops[D.INVALID_HEAD] == 3
    assert r.pending == 0


def test_inconsistent_total_is_dropped() -> None:
    parts = fr.split(_armored(3000))
    r = fr.Reassembler()
    assert r.add(parts[1], 0) is None
    liar = bytearray(parts[2])
    liar[14] = (5 << 4) | 2
    assert r.add(liar, 0) is None
    assert r.drops[D.INCONSISTENT_TOTAL] == 1
    assert r.add(parts[0], 0) is None
    assert r.add(parts[2], 0) is not None


def test_unfragmented_packet_passes_straight_through() -> None:
    wire = _armored(300)
    r = fr.Reassembler()
    out = r.add(wire, 0)
    assert isinstance(out, bytearray) and bytes(out) == wire
    assert r.pending == 0


def test_timeout_reclaims_stale_sets() -> None:
    parts = fr.split(_armored(3000))
    r = fr.Reassembler(timeout_ms=100)
    assert r.add(parts[0], 0) is None
    assert r.add(parts[1], 100) is None  # still within the timeout
    assert r.add(parts[2], 201) is None  # too late: the old set is reclaimed, a new one starts
    assert r.drops[D.EXPIRED] == 1
    assert r.pending == 1
    assert r.add(parts[0], 202) is None
    assert r.add(parts[1], 203) is not None


def test_ring_eviction_order() -> None:
    r = fr.Reassembler(slots=2)
    heads = []
    for i in range(3):
        buf = pk.new_packet(bytes([i]) * 8, DEST, SRC, Verb.FRAME, bytes(3000))
        pk.set_fragmented(buf)
        heads.append(fr.split(buf))
    for parts in heads:
        assert r.add(parts[0], 0) is None
    assert r.pending == 2
    assert r.drops[D.EVICTED] == 1
    # The first set was overwritten; the other two can still complete.
    assert r.add(heads[1][1], 0) is None
    assert r.add(heads[1][2], 0) is not None
    assert r.add(heads[2][2], 0) is None
    assert r.add(heads[2][1], 0) is not None
    # The first set's fragments now start over, without its head.
    assert r.add(heads[0][1], 0) is None
    assert r.add(heads[0][2], 0) is None
    assert r.pending == 1
    assert r.drops[D.EVICTED] == 1


def test_too_large_sets_are_dropped() -> None:
    r = fr.Reassembler(max_packet=2000)
    parts = fr.split(_armored(3000))
    assert r.add(parts[0], 0) is None
    assert r.add(parts[1], 0) is None
    assert r.drops[D.TOO_LARGE] == 1
    assert r.pending == 0
    assert r.add(bytes(_armored(100)[:18]) + b"\x40" + bytes(3000), 0) is None
    assert r.drops[D.TOO_LARGE] == 2


def test_reassembler_rejects_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        fr.Reassembler(slots=0)
    with pytest.raises(LocalProtocolError):
        fr.Reassembler(timeout_ms=-1)
    with pytest.raises(LocalProtocolError):
        fr.Reassembler(max_packet=10)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(MIN_PHYSMTU, 3000),
    st.integers(28, 9700),
    st.sampled_from([Cipher.POLY1305_NONE, Cipher.POLY1305_SALSA2012, Cipher.AES_GMAC_SIV]),
    st.randoms(use_true_random=False),
    st.integers(0, 3),
)
def test_split_reassemble_round_trip(
    mtu: int, size: int, cipher: Cipher, rnd: random.Random, dups: int
) -> None:
    size = min(size, fr.max_packet_size(mtu))
    wire = _armored(size, mtu, cipher)
    parts = fr.split(wire, mtu)
    assert len(parts) == fr.fragment_count(size, mtu)
    assert all(len(p) <= mtu for p in parts)
    arrivals = parts + [rnd.choice(parts) for _ in range(dups)]
    rnd.shuffle(arrivals)
    r = fr.Reassembler()
    outs = [o for o in (r.add(p, now=5) for p in arrivals) if o is not None]
    if len(parts) == 1:
        assert len(outs) == len(arrivals)  # whole packets pass through; dedup is not ours
    else:
        assert len(outs) == 1  # duplicates, even after completion, never deliver it twice
        assert r.pending == 0
        assert r.drops[D.DUPLICATE_FRAGMENT] + r.drops[D.DUPLICATE_HEAD] == dups
    assert bytes(outs[0]) == wire
    assert pk.dearmor(outs[0], KEY)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 40), st.integers(100, 10_000))
def test_memory_bounded_under_flood(seed: int, slots: int, max_packet: int) -> None:
    rnd = random.Random(seed)  # a plain PRNG: hypothesis-drawn bytes would make inputs huge
    r = fr.Reassembler(slots=slots, max_packet=max_packet)
    for i in range(400):
        kind = rnd.random()
        pid = rnd.getrandbits(4).to_bytes(8, "big") if rnd.random() < 0.5 else rnd.randbytes(8)
        if kind < 0.6:
            total = rnd.randint(0, 15)
            number = rnd.randint(0, 15)
            data = bytearray(pid + bytes(5) + b"\xff" + bytes(((total << 4) | number, 0)))
            data += rnd.randbytes(rnd.randint(1, 3000))
        elif kind < 0.9:
            data = bytearray(pid + rnd.randbytes(10) + b"\x00\x00\x00" + b"\x40")
            data += rnd.randbytes(rnd.randint(9, 3000))
        else:
            data = bytearray(rnd.randbytes(rnd.randint(0, 60)))
        out = r.add(bytes(data), now=i * 3)
        if out is not None:
            assert len(out) <= max_packet or not pk.is_fragmented(data)
        assert r.pending <= slots
        assert r.buffered_bytes <= slots * max_packet


def test_flood_then_legit_packet_still_completes() -> None:
    r = fr.Reassembler()
    rnd = random.Random(7)
    for _ in range(10_000):
        junk = rnd.randbytes(8) + bytes(5) + b"\xff\x21\x00" + rnd.randbytes(1400)
        r.add(junk, 0)
    assert r.pending == fr.DEFAULT_REASSEMBLY_SLOTS
    assert r.buffered_bytes <= fr.DEFAULT_REASSEMBLY_SLOTS * MAX_PACKET_LENGTH
    parts = fr.split(_armored(5000))
    outs = [r.add(p, 1) for p in parts]
    assert outs[-1] is not None and pk.dearmor(outs[-1], KEY)


def test_relayed_fragments_still_reassemble() -> None:
    wire = _armored(4000, cipher=Cipher.POLY1305_SALSA2012)
    parts = [bytearray(p) for p in fr.split(wire)]
    pk.increment_hops(parts[0])
    for p in parts[1:]:
        fr.increment_fragment_hops(p)
    r = fr.Reassembler()
    out = None
    for p in reversed(parts):
        out = r.add(p, 0)
    assert out is not None
    assert pk.peek_hops(out) == 1
    assert pk.dearmor(out, KEY)
