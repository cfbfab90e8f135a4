"""Half close, full close, FIN-WAIT-2 timeout, and data arriving after close."""

from __future__ import annotations

from tests.helpers.tcp_harness import Pair, a_in_time_wait, transfer
from tests.helpers.tcp_peer import F, fin_wait_2, state
from ztnode.netstack.tcp import (
    ClosedEvent,
    PeerClosedEvent,
    Segment,
    TcpConfig,
    TcpState,
)


def test_half_close_keeps_receiving() -> None:
    """shutdown() sends FIN but the peer may keep sending (RFC 9293 3.6 half-close)."""
    p = Pair()
    p.handshake()
    p.a.shutdown(p.now)
    p.run(lambda: p.a.state is TcpState.FIN_WAIT_2 and p.b.state is TcpState.CLOSE_WAIT)
    assert PeerClosedEvent() in p.events["b"] and p.b.at_eof
    data = bytes(range(256)) * 1000
    assert transfer(p, "b", data) == data
    p.b.close(p.now)
    p.run(lambda: p.a.state is TcpState.TIME_WAIT and p.b.state is TcpState.CLOSED)
    assert p.a.at_eof


def test_fin_waits_for_queued_data() -> None:
    p = Pair()
    p.handshake()
    data = b"z" * 200_000
    assert p.a.send(data) == len(data)
    p.a.close(p.now)
    got = bytearray()
    p.run(lambda: p.b.at_eof, on_step=lambda: got.extend(p.b.recv()))
    got.extend(p.b.recv())
    assert bytes(got) == data
    fins = [s for s in p.segments("a>b") if s.flags & F.FIN]
    assert fins and fins[0].payload  # the FIN rides on the last data segment


def test_fin_wait_2_times_out_after_close() -> None:
    c, _ = fin_wait_2()
    assert c.get_timer() is None  # shutdown(): the application may still read, so wait
    c.close(100)
    assert c.get_timer() == 100 + 60_000
    c.handle_timer(100 + 60_000)
    assert state(c) is TcpState.CLOSED


def test_data_after_close_resets() -> None:
    c, p = fin_wait_2()
    c.close(50)
    c.receive_segment(p.seg(F.ACK | F.PSH, b"late"), 60)
    out = c.segments_to_send(60)
    assert out[-1].flags == F.RST
    assert state(c) is TcpState.CLOSED


def test_time_wait_then_closed_event_over_harness() -> None:
    p = a_in_time_wait(250)
    entered = p.now
    p.run(lambda: p.a.state is TcpState.CLOSED)
    assert p.now - entered == 500
    assert p.events["a"][-1] == ClosedEvent()


def test_lost_final_ack_is_recovered_from_time_wait() -> None:
    """TIME-WAIT exists so the last ACK can be repeated (RFC 9293 3.6)."""
    cfg = TcpConfig(msl_ms=1000, min_rto_ms=100)
    p = Pair(a_config=cfg, b_config=cfg)
    p.handshake()
    p.a.close(p.now)
    p.run(lambda: p.a.state is TcpState.FIN_WAIT_2)
    dropped: list[int] = []

    def drop_first_final_ack(d: str, s: Segment) -> bool:
        if d == "a>b" and p.a.state is TcpState.TIME_WAIT and not dropped:
            dropped.append(1)
            return True
        return False

    p.drop = drop_first_final_ack
    p.b.close(p.now)
    p.run(lambda: p.b.state is TcpState.CLOSED)
    assert dropped and p.a.state is TcpState.TIME_WAIT
    assert len([s for s in p.segments("b>a") if s.flags & F.FIN]) == 2
