"""Unit tests of the components split out of ``TcpConnection`` (each owns its state and is
checked here on its own, apart from the connection that drives it)."""

from __future__ import annotations

from ztnode.netstack.tcp_rto import RtoEstimator
from ztnode.netstack.tcp_rxqueue import ReceiveQueue
from ztnode.netstack.tcp_sack import SackScoreboard
from ztnode.netstack.tcp_sendbuf import SendBuffer


def test_rto_first_sample_and_smoothing() -> None:
    """RFC 6298 2.2/2.3: the first sample sets SRTT = R, RTTVAR = R/2; later ones smooth."""
    e = RtoEstimator(1000, 200, 60_000)
    e.sample(100)
    assert e.srtt == 100.0 and e.rttvar == 50.0 and e.rto == 300
    e.sample(100)
    assert e.srtt == 100.0 and e.rttvar == 37.5 and e.rto == 250


def test_rto_clamped_and_backed_off() -> None:
    e = RtoEstimator(1000, 200, 4000)
    e.sample(1)
    assert e.rto == 200  # min_rto
    for _ in range(10):
        e.back_off()
    assert e.rto == 4000  # max_rto


def test_rto_karn_timing() -> None:
    """One segment timed at a time; a retransmission at or below it cancels the sample."""
    e = RtoEstimator(1000, 1, 60_000)
    e.start_timing(10, now=0)
    e.start_timing(20, now=5)  # already timing: ignored
    assert e.timed_seq == 10 and e.timed_at == 0
    e.on_ack(10, now=50)  # does not cover the timed segment
    assert e.srtt is None
    e.on_retransmit(10)
    assert e.timed_seq is None
    e.start_timing(30, now=100)
    e.on_ack(31, now=140)
    assert e.srtt == 40.0 and e.timed_seq is None


def test_rto_after_syn_timeout_only_without_sample() -> None:
    e = RtoEstimator(1000, 200, 60_000)
    e.back_off()
    e.after_syn_timeout()
    assert e.rto == 3000
    e.sample(10)
    e.after_syn_timeout()
    assert e.rto == 200


def test_sack_scoreboard_merges_and_trims() -> None:
    """RFC 2018: ranges merge when they touch or overlap; the cumulative ACK trims them."""
    sb = SackScoreboard()
    sb.add(300, 400)
    sb.add(100, 200)
    sb.add(200, 250)
    assert sb.blocks == [(100, 250), (300, 400)]
    sb.add(240, 310)
    assert sb.blocks == [(100, 400)]
    assert sb.sacked_bytes() == 300 and sb.sacked_below(150) == 50
    sb.acked_to(150)
    assert sb.blocks == [(150, 400)]
    sb.forget_if_reneged(150)
    assert sb.blocks == []


def test_sack_lost_ranges_and_pipe_terms() -> None:
    """RFC 6675 IsLost: a hole is lost once DupThresh * SMSS bytes are SACKed above it."""
    sb = SackScoreboard()
    blocks = sb.blocks
    sb.add(200, 300)
    assert sb.lost_ranges(0, 1000, 0, 100) == []  # one segment SACKed above: not yet
    sb.add(400, 600)
    assert sb.lost_ranges(0, 1000, 0, 100) == [(0, 200)]
    assert sb.lost_ranges(0, 1000, 350, 100) == [(0, 200), (300, 350)]
    assert sb.lost_not_retransmitted([(0, 200), (300, 350)], 100) == 150
    assert sb.blocks is blocks  # never rebound: the connection holds a reference


def test_receive_queue_overlaps_first_copy_wins_and_drains() -> None:
    q = ReceiveQueue()
    buf, ooo = q.buf, q.ooo
    assert q.insert(10, b"AAAAA", 1000)  # 10..15
    assert q.insert(8, b"bbbbbbbbbb", 1000)  # 8..18: only 8..10 and 15..18 are new
    assert q.ooo == [(8, b"bb"), (10, b"AAAAA"), (15, b"bbb")] and q.ooo_bytes == 10
    assert q.sack_runs(3) == [(8, 18)]
    q.buf += b"xy"
    assert q.drain(8) == 18 and bytes(q.buf) == b"xybbAAAAAbbb" and q.ooo_bytes == 0
    assert q.recent == [] and q.buf is buf and q.ooo is ooo
    assert q.read(3) == b"xyb" and bytes(q.buf) == b"bAAAAAbbb"


def test_receive_queue_bound_and_sack_order() -> None:
    q = ReceiveQueue()
    assert q.insert(100, bytes(10), 25)
    assert q.insert(200, bytes(10), 25)
    assert not q.insert(300, bytes(10), 25)  # would exceed the byte bound
    assert q.sack_runs(3) == [(200, 210), (100, 110)]  # most recent first (RFC 2018)
    assert q.sack_runs(1) == [(200, 210)]


def test_send_buffer_write_slice_ack() -> None:
    b = SendBuffer()
    data = b.data
    assert b.write(b"hello world", 8) == 8 and b.end() == 9  # seq 1..8 buffered
    assert b.slice(3, 4) == b"llo " and b.slice(3, 0) == b""
    assert b.acked_to(1) == 0  # an ACK of the SYN frees nothing
    assert b.acked_to(4) == 3 and b.start == 4 and bytes(b.data) == b"lo wo"
    assert b.acked_to(100) == 5 and b.end() == 9  # beyond the data (a FIN): all freed
    assert b.data is data
