"""The compact TIME-WAIT record against the full connection it replaces (its reference): on any
sequence of arriving segments both send the same ACKs, close at the same segment and keep the
same 2*MSL deadline."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.tcp_harness import a_in_time_wait
from tests.helpers.tcp_peer import time_wait
from ztnode.netstack.tcp import Segment, TcpConnection, TcpState
from ztnode.netstack.tcp_seq import SEQ_MASK
from ztnode.netstack.tcp_timewait import TimeWait, Verdict

KEY = (b"\x0a\x00\x00\x01", 80, b"\x0a\x00\x00\x02", 40000)


def _scripted() -> TcpConnection:
    c, _ = time_wait()
    c.segments_to_send(40)  # the ACK of the peer's FIN
    return c


def _with_timestamps() -> TcpConnection:
    p = a_in_time_wait(500)
    assert p.a.ts.enabled
    return p.a


# How to make each base connection: a fresh one per check (TCBs are not copied: a compiled
# TcpConnection cannot be, see ztnode._compiled); the samples draw their segments from one.
_MAKERS = {"scripted": _scripted, "timestamps": _with_timestamps}
_BASES = {name: make() for name, make in _MAKERS.items()}

_FLAGS = st.sampled_from([0x10, 0x11, 0x18, 0x19, 0x02, 0x12, 0x04, 0x14, 0x01, 0x00, 0x03, 0x06])


@st.composite
def _segments(draw: st.DrawFn, conn: TcpConnection) -> Segment:
    rcv = (conn.irs + conn.rcv_nxt) & SEQ_MASK
    snd = conn.snd.wire(conn.snd.max)
    seq = draw(
        st.one_of(
            st.integers(-3, 3).map(lambda d: (rcv + d) & SEQ_MASK),
            st.integers(-1, 1).map(lambda d: (rcv + d) & SEQ_MASK),
            st.integers(-12, 0).map(lambda d: (rcv + d) & SEQ_MASK),
            st.integers(0, SEQ_MASK),
            st.integers(-70000, 70000).map(lambda d: (rcv + d) & SEQ_MASK),
        )
    )
    ack = draw(
        st.one_of(
            st.integers(-2, 2).map(lambda d: (snd + d) & SEQ_MASK),
            st.integers(0, 1).map(lambda d: (snd + d) & SEQ_MASK),
            st.integers(1 << 18, (1 << 31) - 1).map(lambda d: (snd - d) & SEQ_MASK),
            st.integers(0, SEQ_MASK),
            st.integers(-70000, 70000).map(lambda d: (snd + d) & SEQ_MASK),
        )
    )
    ts = None
    if conn.ts.enabled and draw(st.booleans()):
        ts = ((conn.ts.recent + draw(st.integers(-3, 3))) & SEQ_MASK, draw(st.integers(0, 9)))
    payload = draw(st.sampled_from([b"", b"", b"x", b"late data"]))
    return Segment(
        seq=seq,
        ack=ack,
        flags=draw(_FLAGS),
        window=draw(st.integers(0, 65535)),
        payload=payload,
        ts=ts,
    )


def _check(name: str, segs: list[Segment], times: list[int]) -> None:
    full = _MAKERS[name]()
    tw = TimeWait(full, KEY)
    assert TimeWait.suits(full)
    for seg, now in zip(segs, times, strict=True):
        full.receive_segment(seg, now)
        out = full.segments_to_send(now)
        verdict = tw.receive(seg, now)
        if full.state is TcpState.CLOSED:
            assert verdict == Verdict.CLOSE, (seg, verdict)
            assert not out
            return
        assert full.state is TcpState.TIME_WAIT
        assert verdict != Verdict.CLOSE, seg
        expected = [(s.seq, s.ack, int(s.flags), s.window, s.ts) for s in out]
        got = [tw.ack(now)] if verdict == Verdict.ACK else []
        assert got == expected, (seg, verdict)
        assert all(not s.sack_blocks and not s.payload for s in out)
        assert tw.deadline == full.timers.time_wait, seg


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_time_wait_record_answers_as_the_full_connection(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(_BASES)))
    base = _BASES[name]
    segs = data.draw(st.lists(_segments(base), min_size=1, max_size=6))
    start = 100_000
    gaps = data.draw(st.lists(st.integers(0, 400), min_size=len(segs), max_size=len(segs)))
    times = []
    for g in gaps:
        start += g
        times.append(start)
    _check(name, segs, times)


def test_retransmitted_fin_is_acked_and_restarts_the_wait() -> None:
    c = _scripted()
    tw = TimeWait(c, KEY)
    rcv = (c.irs + c.rcv_nxt) & SEQ_MASK
    fin = Segment(seq=(rcv - 1) & SEQ_MASK, ack=c.snd.wire(c.snd.max), flags=0x11, window=100)
    assert tw.receive(fin, 200_000) == Verdict.ACK
    assert tw.deadline == 200_000 + 2 * c.config.msl_ms
    seq, ack, flags, _, ts = tw.ack(200_000)
    assert (seq, ack, flags, ts) == (c.snd.wire(c.snd.nxt), rcv, 0x10, None)


def test_a_connection_with_something_owed_stays_whole() -> None:
    c, _ = time_wait()
    assert not TimeWait.suits(c)  # the ACK of the FIN is still to go
    c.segments_to_send(40)
    assert TimeWait.suits(c)
