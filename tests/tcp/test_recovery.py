"""Fast retransmit and recovery (RFC 5681/6582), SACK (RFC 2018/6675), window scaling, MSS,
the out-of-order queue, and sequence-number arithmetic (hypothesis)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from tests.helpers.tcp_harness import LinkParams, Pair, drop_nth_data, transfer
from tests.helpers.tcp_peer import PEER_ISS, F, Peer, established
from ztnode.netstack.tcp import (
    Segment,
    TcpConfig,
    mss_for_mtu,
    seq_add,
    seq_diff,
    seq_le,
    seq_lt,
)

u32 = st.integers(min_value=0, max_value=0xFFFF_FFFF)
delta = st.integers(min_value=-(2**31) + 1, max_value=2**31 - 1)


@given(u32, delta)
def test_seq_diff_inverts_seq_add(a: int, d: int) -> None:
    b = seq_add(a, d)
    assert 0 <= b <= 0xFFFF_FFFF
    assert seq_diff(b, a) == d
    assert seq_lt(a, b) == (d > 0)
    assert seq_le(a, b) == (d >= 0)


@given(u32, u32)
def test_seq_order_is_a_strict_order_on_half_the_circle(a: int, b: int) -> None:
    if a == b:
        assert not seq_lt(a, b) and seq_le(a, b)
    elif seq_diff(a, b) != -(2**31):  # exactly opposite points are ambiguous (RFC 1982)
        assert seq_lt(a, b) != seq_lt(b, a)
        assert seq_diff(a, b) == -seq_diff(b, a)


def test_mss_for_mtu() -> None:
    assert mss_for_mtu(1500) == 1460
    assert mss_for_mtu(1500, ipv6=True) == 1440
    assert mss_for_mtu(2800) == 2760


def test_mss_negotiated_as_minimum_and_default_without_option() -> None:
    p = Pair(a_config=TcpConfig(mtu=1500), b_config=TcpConfig(mtu=2800))
    p.handshake()
    # Timestamps ride on every segment, so 12 bytes of each MSS are theirs (as Linux's 1448).
    assert p.a.snd.mss == p.b.snd.mss == 1448
    assert max(len(s.payload) for s in [*p.segments("a>b"), Segment(0, 0, F.ACK, 0)]) <= 1448
    data = bytes(100_000)
    assert transfer(p, "b", data) == data
    assert max(len(s.payload) for s in p.segments("b>a")) == 1448
    q = Pair(a_config=TcpConfig(mtu=1500, timestamps=False), b_config=TcpConfig(mtu=2800))
    q.handshake()
    assert q.a.snd.mss == q.b.snd.mss == 1460


def test_fast_retransmit_on_three_dupacks_without_sack() -> None:
    cfg = TcpConfig(sack=False)
    p = Pair(a_config=cfg, b_config=cfg, link=LinkParams(delay_ms=20))
    p.handshake()
    dropped, f = drop_nth_data("a>b", {20})
    p.drop = f
    data = random.Random(1).randbytes(400_000)
    assert transfer(p, "a", data) == data
    assert len(dropped) == 1
    assert p.a.counters.get("fast_retransmit") == 1
    assert "rto" not in p.a.counters
    assert all(not s.sack_blocks for s in p.segments("b>a"))


def test_sack_recovery_repairs_several_holes_in_one_window_without_rto() -> None:
    p = Pair(link=LinkParams(delay_ms=20))
    p.handshake()
    dropped, f = drop_nth_data("a>b", {100, 103, 106, 108})
    p.drop = f
    data = random.Random(2).randbytes(600_000)
    assert transfer(p, "a", data) == data
    assert len(dropped) == 4
    assert p.a.counters.get("fast_retransmit") == 1  # one congestion event for the window
    assert "rto" not in p.a.counters
    # RFC 6675: only the holes are resent, not the SACKed data after them.
    assert p.a.retransmitted_bytes == sum(len(s.payload) for s in dropped)
    assert any(s.sack_blocks for s in p.segments("b>a"))


def test_sack_blocks_generated_from_out_of_order_queue() -> None:
    """RFC 2018 section 4: first block = most recent arrival; blocks are maximal runs."""
    c, p = established()
    base = p.seq
    assert c.rwnd.wscale > 0

    def at(off: int, n: int = 100) -> Segment:
        return Segment(
            seq=seq_add(base, off), ack=p.ack, flags=F.ACK, window=1000, payload=bytes(n)
        )

    c.receive_segment(at(100), 20)
    (a1,) = c.segments_to_send(20)
    assert a1.ack == base and a1.sack_blocks == ((seq_add(base, 100), seq_add(base, 200)),)
    c.receive_segment(at(300), 21)
    (a2,) = c.segments_to_send(21)
    assert a2.sack_blocks == (
        (seq_add(base, 300), seq_add(base, 400)),
        (seq_add(base, 100), seq_add(base, 200)),
    )
    c.receive_segment(at(200), 22)  # joins both runs
    (a3,) = c.segments_to_send(22)
    assert a3.sack_blocks == ((seq_add(base, 100), seq_add(base, 400)),)
    c.receive_segment(at(0), 23)  # fills the gap: everything is in order
    (a4,) = c.segments_to_send(23)
    assert a4.ack == seq_add(base, 400) and a4.sack_blocks == ()
    assert c.recv() == bytes(400)


def test_out_of_order_queue_is_bounded() -> None:
    c, p = established()
    c.config.ooo_limit = 250
    base = p.seq
    for off in (100, 300, 500):
        c.receive_segment(
            Segment(
                seq=seq_add(base, off), ack=p.ack, flags=F.ACK, window=1000, payload=bytes(100)
            ),
            20,
        )
    assert c.counters["ooo_full"] == 1
    assert PEER_ISS  # imported for the scripted peer's numbering


def test_duplicate_and_overlapping_segments_are_trimmed() -> None:
    c, p = established()
    base = p.seq
    data = bytes(range(200))

    def at(off: int, n: int) -> Segment:
        return Segment(
            seq=seq_add(base, off), ack=p.ack, flags=F.ACK, window=1000, payload=data[off : off + n]
        )

    for seg in (at(50, 100), at(120, 80), at(60, 10), at(0, 60), at(0, 200)):
        c.receive_segment(seg, 20)
    assert c.recv() == data


def test_window_scaling_large_transfer() -> None:
    big = TcpConfig(recv_buffer=4 << 20, send_buffer=4 << 20)
    p = Pair(a_config=big, b_config=big, link=LinkParams(delay_ms=50))
    p.handshake()
    assert p.b.rwnd.wscale == 7 and p.a.snd.wscale == 7  # 0xFFFF << 6 < 4 MiB (RFC 7323 2.3)
    data = random.Random(3).randbytes(16 << 20)
    assert transfer(p, "a", data) == data
    assert p.a.snd.max_wnd > 0xFFFF
    assert max(s.window for s in p.segments("b>a")) <= 0xFFFF


def test_window_scaling_off_when_peer_does_not_offer() -> None:
    p = Pair(a_config=TcpConfig(window_scaling=False), b_config=TcpConfig(recv_buffer=1 << 20))
    p.handshake()
    synack = p.segments("b>a")[0]
    assert synack.wscale is None  # RFC 7323 2.2: not in the SYN,ACK unless in the SYN
    assert p.b.rwnd.wscale == 0 and p.a.snd.wscale == 0
    data = bytes(300_000)
    assert transfer(p, "a", data) == data


def test_peer_helper_roundtrip() -> None:
    peer = Peer()
    s = peer.seg(F.SYN)
    assert s.seq == PEER_ISS and peer.seq == seq_add(PEER_ISS, 1)
