"""Unit tests of the components split out of ``TcpConnection`` (each owns its state and is
checked here on its own, apart from the connection that drives it): RTO estimator, queues and
buffers, receive window and acceptability, option agreement and timestamps, timers, loss
recovery and the send half."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ztnode.budget import SecondBudget
from ztnode.netstack.tcp_cc import NewReno
from ztnode.netstack.tcp_options import (
    DEFAULT_MSS_V4,
    TIMESTAMP_OPTION_SPACE,
    SynAgreement,
    Timestamps,
    wanted_wscale,
)
from ztnode.netstack.tcp_rcvwnd import ReceiveWindow, acceptable, trim
from ztnode.netstack.tcp_recovery import LossRecovery
from ztnode.netstack.tcp_rto import RtoEstimator
from ztnode.netstack.tcp_rxqueue import ReceiveQueue
from ztnode.netstack.tcp_sack import SackScoreboard
from ztnode.netstack.tcp_sendbuf import SendBuffer
from ztnode.netstack.tcp_sender import TcpSender
from ztnode.netstack.tcp_timers import PersistAction, TcpTimers


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


def _trim_reference(
    seq: int, payload: bytes, fin: bool, nxt: int, wnd: int
) -> tuple[int, bytes, bool]:
    """RFC 9293 3.10.7.4 trimming written out step by step, as the connection did inline."""
    if seq < nxt:
        cut = nxt - seq
        if cut > len(payload):
            fin = False
        payload = payload[cut:]
        seq = nxt
    if seq + len(payload) > nxt + wnd:
        payload = payload[: max(nxt + wnd - seq, 0)]
        fin = False
    return seq, payload, fin


@given(
    st.integers(0, 200),
    st.binary(max_size=64),
    st.booleans(),
    st.integers(0, 200),
    st.integers(0, 100),
)
def test_trim_matches_the_stepwise_rfc_procedure(
    seq: int, data: bytes, fin: bool, nxt: int, wnd: int
) -> None:
    if not acceptable(seq, len(data) + fin, nxt, wnd):
        return  # the connection trims only acceptable segments
    first, last, fin_ok = trim(seq, len(data), nxt, wnd)
    ref_seq, ref_payload, ref_fin = _trim_reference(seq, data, fin, nxt, wnd)
    assert data[first:last] == ref_payload
    assert (fin and fin_ok) == ref_fin
    if ref_payload:
        assert seq + first == ref_seq


def test_acceptability_four_cases() -> None:
    assert acceptable(10, 0, 10, 0) and not acceptable(11, 0, 10, 0)  # empty, zero window
    assert acceptable(14, 0, 10, 5) and not acceptable(15, 0, 10, 5)  # empty, open window
    assert acceptable(10, 3, 10, 0) and not acceptable(11, 3, 10, 0)  # text, zero window
    assert acceptable(8, 3, 10, 5) and not acceptable(7, 3, 10, 5)  # text overlapping the left
    assert acceptable(14, 9, 10, 5) and not acceptable(15, 1, 10, 5)


def test_receive_window_never_retracts_and_opens_by_sws_steps() -> None:
    w = ReceiveWindow(size=10_000, mss=1000)
    assert w.syn_field(1) == 10_000 and w.edge == 10_001
    assert w.field(1, buffered=9_500) == 10_000  # 500 free: keep the promise, not shrink
    assert w.field(5_001, buffered=5_000) == 5_000
    assert not w.worth_announcing(
        5_001, buffered=4_500
    )  # 5500 free, 5000 offered: SWS step not reached
    assert w.worth_announcing(9_001, buffered=0)  # offered 1000 < half, 10 000 free


def test_syn_agreement() -> None:
    a = SynAgreement.from_peer(
        (True, True, True), (None, 20, True, True), our_mss=1460, want_wscale=7, ipv6=False
    )
    assert (
        a.mss == DEFAULT_MSS_V4 - TIMESTAMP_OPTION_SPACE
        and a.snd_wscale == 14
        and a.rcv_wscale == 7
    )
    assert a.sack and a.timestamps and a.window_scaling
    b = SynAgreement.from_peer(
        (False, False, False), (9000, 3, True, True), our_mss=1460, want_wscale=7, ipv6=False
    )
    assert (b.mss, b.snd_wscale, b.rcv_wscale, b.sack, b.timestamps) == (1460, 0, 0, False, False)
    assert wanted_wscale(0xFFFF, True) == 0 and wanted_wscale(0x10000, True) == 1
    assert wanted_wscale(1 << 40, True) == 14 and wanted_wscale(1 << 20, False) == 0


def test_timestamps_recent_and_rtt() -> None:
    ts = Timestamps()
    ts.offset = 1000
    assert ts.option(5) is None and ts.rtt_sample(5, (1, 2)) is None  # not negotiated
    ts.enabled = True
    ts.remember(50, seq_u=10, last_ack_sent=10)
    ts.remember(40, seq_u=10, last_ack_sent=10)  # older TSval: ignored
    ts.remember(60, seq_u=11, last_ack_sent=10)  # right of the last ACK: ignored
    assert ts.recent == 50 and ts.option(5) == (1005, 50)
    assert ts.rtt_sample(30, (0, ts.value(10))) == 20 and ts.rtt_sample(30, (0, 0)) is None


def test_persist_backs_off_overrides_and_gives_up() -> None:
    t = TcpTimers()
    t.arm_persist(0, rto=200, min_rto=200, max_rto=1000)
    assert t.persist == 200
    assert t.persist_fired(snd_wnd=100, max_probes=2) is PersistAction.OVERRIDE
    t.arm_persist(0, 200, 200, 1000)
    assert t.persist_fired(0, 2) is PersistAction.PROBE
    t.arm_persist(0, 200, 200, 1000)
    assert t.persist == 400  # backed off once
    assert t.persist_fired(0, 2) is PersistAction.PROBE
    assert t.persist_fired(0, 2) is PersistAction.GIVE_UP


def test_keepalive_and_budget() -> None:
    t = TcpTimers()
    t.heard(100)
    assert t.keepalive_deadline(1000, 50) == 1100
    assert not t.keepalive_fired(1100, count=2) and t.keepalive_deadline(1000, 50) == 1150
    assert not t.keepalive_fired(1150, 2) and t.keepalive_fired(1200, 2)
    t.stop_all()
    assert t.earliest(None) is None and t.earliest(7) == 7
    b = SecondBudget()
    assert [b.take(1000, 2) for _ in range(3)] == [True, True, False]
    assert b.take(2000, 2)


def _recovery(sack: bool) -> LossRecovery:
    return LossRecovery(NewReno(1000, initial_cwnd=10_000), 1000, sack=sack)


def test_recovery_enters_after_three_dupacks_once_per_window() -> None:
    r = _recovery(sack=False)
    assert not r.on_duplicate(1, 10_001, 0) and not r.on_duplicate(1, 10_001, 0)
    assert r.on_duplicate(1, 10_001, 0) and r.active and r.recover == 10_001
    start, n, _ = r.next_hole(1, 10_001)
    assert (start, n) == (1, 1000)
    r.on_ack(2001, 2000, 10_000, 10_001, 0, None)  # partial ACK: NewReno resends at once
    assert r.active and r.force_rxt
    assert r.next_hole(2001, 10_001)[:2] == (2001, 1000)
    r.on_ack(10_001, 8000, 8000, 10_001, 0, None)
    assert not r.active and r.dupacks == 0


def test_recovery_sack_skip_and_room() -> None:
    r = _recovery(sack=True)
    r.add_sack(1, 10_001, [(3001, 4001), (0, 5), (9000, 20_000)])  # out-of-range blocks ignored
    assert r.blocks == [(3001, 4001)]
    assert r.skip_sacked(3500, 10_001) == (4001, None)
    assert r.skip_sacked(1, 10_001) == (1, 3001)
    assert r.send_room(1, 5001, 10_001) == 10_000 - 5000 + 1000
    r.on_timeout(1, 10_001, 0)
    assert r.blocks == [(3001, 4001)]  # kept: no reneging shown
    r.add_sack(1, 10_001, [(1, 500)])
    r.on_timeout(1, 10_001, 0)
    assert r.blocks == []  # a SACKed block at SND.UNA: reneged, forget all


def test_sender_duplicate_and_window_update() -> None:
    s = TcpSender(1000, _recovery(sack=False))
    s.restart(0xFFFF_FFFF)
    assert s.wire(1) == 0 and s.unwrap(0) == 1
    assert s.update_window(5, 1, 100, syn=False, force=True)
    assert not s.update_window(4, 1, 0, syn=False, force=False)  # older segment: ignored
    s.wscale = 2
    assert s.update_window(6, 1, 100, syn=False, force=False) and s.wnd == 400
    s.max = 10
    assert s.is_duplicate(False, 100, has_sack=False)
    assert not s.is_duplicate(False, 101, has_sack=False) and s.is_duplicate(
        False, 101, has_sack=True
    )
    assert not s.is_duplicate(True, 100, has_sack=False)
