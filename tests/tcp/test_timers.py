"""RFC 6298 retransmission timer, Karn, delayed ACKs, Nagle, keepalives, zero-window probing."""

from __future__ import annotations

import itertools

from tests.helpers.tcp_harness import LinkParams, Pair, transfer
from ztnode.netstack.tcp import (
    ClosedEvent,
    Flags,
    Segment,
    TcpConfig,
    TcpState,
    TimedOutEvent,
    WritableEvent,
)


def _data_times(p: Pair, direction: str) -> list[int]:
    return [t for t, d, s in p.log if d == direction and s.payload]


def test_rto_exponential_backoff_then_timeout() -> None:
    cfg = TcpConfig(min_rto_ms=200, max_retries=4)
    p = Pair(a_config=cfg, b_config=cfg, link=LinkParams(delay_ms=10))
    p.handshake()
    p.drop = lambda d, s: d == "a>b" and bool(s.payload)
    p.a.send(b"x" * 100)
    p.run(lambda: p.a.state is TcpState.CLOSED, max_time=60_000)
    times = _data_times(p, "a>b")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == [200, 400, 800, 1600]  # RFC 6298 5.5: doubling
    assert p.events["a"][-2:] == [TimedOutEvent(), ClosedEvent()]
    # RFC 1122 R2 exceeded: the peer is told with a RST.
    assert p.segments("a>b")[-1].flags == Flags.RST


def test_syn_retransmission_and_timeout() -> None:
    cfg = TcpConfig(initial_rto_ms=1000, syn_retries=3)
    p = Pair(a_config=cfg)
    p.drop = lambda d, s: d == "a>b"
    p.a.connect(0)
    p.run(lambda: p.a.state is TcpState.CLOSED, max_time=100_000)
    syn_times = [t for t, d, s in p.log if d == "a>b" and s.flags & Flags.SYN]
    assert syn_times == [0, 1000, 3000, 7000]
    assert TimedOutEvent() in p.events["a"]


def test_rtt_estimate_and_karn() -> None:
    """Without timestamps, Karn's rule: no RTT sample from a retransmitted segment."""
    cfg = TcpConfig(timestamps=False)
    p = Pair(a_config=cfg, b_config=cfg, link=LinkParams(delay_ms=50))
    p.handshake()
    assert p.a.srtt == 100.0  # the SYN was timed: RTT 100 ms (RFC 6298 2.2)
    transfer(p, "a", b"y" * 10)
    p.run(lambda: p.a.unacked == 0)
    assert p.a.srtt is not None and 99 <= p.a.srtt <= 100 + 200
    before = p.a.srtt
    # Lose the first transmission: the ACK of the retransmission must not be timed (Karn).
    dropped: list[Segment] = []

    def drop_first(d: str, s: Segment) -> bool:
        if d == "a>b" and s.payload and not dropped:
            dropped.append(s)
            return True
        return False

    p.drop = drop_first
    p.link.delay_ms = 80  # a sample would move SRTT
    transfer(p, "a", b"z" * 10)
    assert dropped and p.a.retransmitted_bytes == 10
    assert p.a.srtt == before


def test_timestamps_measure_retransmissions_and_clear_backoff() -> None:
    """RFC 7323 4.1: the echoed TSval times the retransmission too, and (as in Linux) a valid
    sample recomputes the RTO, ending the exponential backoff."""
    p = Pair(link=LinkParams(delay_ms=50))
    p.handshake()
    assert p.a.segments_to_send(p.now) == []
    assert all(s.ts is not None for _, _, s in p.log)
    lost: list[Segment] = []

    def drop_twice(d: str, s: Segment) -> bool:
        if d == "a>b" and s.payload and len(lost) < 2:
            lost.append(s)
            return True
        return False

    p.drop = drop_twice
    transfer(p, "a", b"z" * 10)
    p.run(lambda: p.a.unacked == 0)
    assert len(lost) == 2 and p.a.counters["rto"] == 2
    # Recomputed from SRTT/RTTVAR (about 300), not left at the backed-off 4 * 300.
    assert p.a.rto < 400


def test_delayed_ack_waits_then_acks_every_second_segment() -> None:
    cfg = TcpConfig(nodelay=True, delayed_ack_ms=200, min_rto_ms=1000)
    p = Pair(a_config=cfg, b_config=cfg, link=LinkParams(delay_ms=10))
    p.handshake()
    t0 = p.now
    p.a.send(b"q")
    p.run(lambda: any(s.ack != p.segments("b>a")[0].ack for s in p.segments("b>a")))
    acks = [(t, s) for t, d, s in p.log if d == "b>a" and t > t0]
    assert acks[0][0] == t0 + 10 + 200  # one small segment: ACK delayed by 200 ms
    # Two full-sized segments: ACKed as soon as the second arrives (RFC 5681 4.2).
    t1 = p.now
    p.a.send(b"w" * (2 * p.a.snd.mss))
    p.run(lambda: p.a.unacked == 0)
    assert p.now == t1 + 20


def test_nagle_holds_small_segments_nodelay_does_not() -> None:
    for nodelay, expected in ((False, 1), (True, 3)):
        cfg = TcpConfig(nodelay=nodelay)
        p = Pair(a_config=cfg, b_config=cfg, link=LinkParams(delay_ms=10))
        p.handshake()
        for chunk in (b"a", b"b", b"c"):
            p.a.send(chunk)
            p.flush()
        in_flight = [s for _, d, s in p.log if d == "a>b" and s.payload]
        assert len(in_flight) == expected
        assert transfer(p, "a", b"") == b""
        p.run(lambda p=p: p.b.readable == 3)  # type: ignore[misc]
        assert p.b.recv() == b"abc"


def test_set_nodelay_switch() -> None:
    p = Pair()
    p.handshake()
    p.a.send(b"a")
    p.flush()
    p.a.send(b"b")
    p.flush()
    assert len([s for _, d, s in p.log if d == "a>b" and s.payload]) == 1
    p.a.set_nodelay(True)
    p.a.send(b"c")
    p.flush()
    assert len([s for _, d, s in p.log if d == "a>b" and s.payload]) == 2


def test_keepalive_answered_keeps_connection() -> None:
    p = Pair()
    p.handshake()
    p.a.set_keepalive(True, idle_ms=1000, interval_ms=100, count=3)
    start = p.now
    p.run(lambda: p.now - start > 10_000, max_time=20_000)
    assert p.a.state is TcpState.ESTABLISHED
    assert p.a.counters["keepalive"] >= 9


def test_keepalive_timeout() -> None:
    p = Pair()
    p.handshake()
    p.a.set_keepalive(True, idle_ms=1000, interval_ms=100, count=3)
    start = p.now
    p.drop = lambda d, s: True  # the peer vanished
    p.run(lambda: p.a.state is TcpState.CLOSED, max_time=20_000)
    assert TimedOutEvent() in p.events["a"]
    assert p.now == (start - 10) + 1000 + 3 * 100  # idle counts from the SYN,ACK at start-10
    assert p.a.counters["keepalive"] == 3


def test_zero_window_then_reopen_with_lost_window_update() -> None:
    small = TcpConfig(recv_buffer=16 * 1024, nodelay=True)
    p = Pair(a_config=TcpConfig(), b_config=small)
    p.handshake()
    data = bytes(range(256)) * 400  # 100 KiB
    accepted = p.a.send(data)
    # The receiver does not read: the window closes and the sender starts persisting.
    p.run(lambda: p.a.snd.wnd == 0 and p.a.counters.get("probe", 0) >= 3, max_time=60_000)
    assert p.a.state is TcpState.ESTABLISHED
    assert p.b.readable == 16 * 1024
    # Read everything, but lose the first window update: persist probes must recover.
    lost: list[Segment] = []

    def drop_update(d: str, s: Segment) -> bool:
        if d == "b>a" and s.window > 0 and not lost:
            lost.append(s)
            return True
        return False

    p.drop = drop_update
    got = bytearray()
    pos = accepted

    def pump() -> None:
        nonlocal pos
        if pos < len(data):
            pos += p.a.send(data[pos:])
        got.extend(p.b.recv())

    p.run(lambda: len(got) == len(data), max_time=600_000, on_step=pump)
    assert lost and bytes(got) == data


def test_send_buffer_backpressure_and_writable() -> None:
    cfg = TcpConfig(send_buffer=10_000)
    p = Pair(a_config=cfg)
    p.handshake()
    assert p.a.send(b"x" * 25_000) == 10_000
    assert p.a.send(b"x") == 0
    p.run(lambda: WritableEvent() in p.events["a"])
    assert p.a.send_buffer_free > 0


def test_rto_after_syn_timeout_without_sample_is_three_seconds() -> None:
    """RFC 6298 section 5.7."""
    cfg = TcpConfig(timestamps=False, initial_rto_ms=1000)
    p = Pair(a_config=cfg, b_config=cfg)
    lost: list[Segment] = []

    def drop_first_syn(d: str, s: Segment) -> bool:
        if d == "a>b" and s.flags & Flags.SYN and not lost:
            lost.append(s)
            return True
        return False

    p.drop = drop_first_syn
    p.handshake()
    assert lost and p.a.srtt is None and p.a.rto == 3000


def test_syn_ack_timestamp_gives_first_rtt_sample_even_after_syn_loss() -> None:
    p = Pair(link=LinkParams(delay_ms=30))
    lost: list[Segment] = []

    def drop_first_syn(d: str, s: Segment) -> bool:
        if d == "a>b" and s.flags & Flags.SYN and not lost:
            lost.append(s)
            return True
        return False

    p.drop = drop_first_syn
    p.handshake()
    assert lost and p.a.srtt == 60.0  # measured on the retransmitted SYN via TSecr
