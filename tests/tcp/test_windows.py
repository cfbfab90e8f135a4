"""Flow control: advertised window, receiver and sender silly-window avoidance, backpressure."""

from __future__ import annotations

from tests.helpers.tcp_harness import LinkParams, Pair, transfer
from tests.helpers.tcp_peer import F, Peer
from ztnode.netstack.tcp import Segment, TcpConfig, TcpConnection, TcpState, seq_add


def _established_server(recv_buffer: int) -> tuple[TcpConnection, Peer]:
    c = TcpConnection(TcpConfig(recv_buffer=recv_buffer, window_scaling=False), isn=lambda: 500)
    c.listen()
    p = Peer()
    c.receive_segment(p.seg(F.SYN, mss=1000), 0)
    c.segments_to_send(0)
    p.ack = seq_add(500, 1)
    c.receive_segment(p.seg(F.ACK), 1)
    assert c.state is TcpState.ESTABLISHED
    return c, p


def test_advertised_window_shrinks_with_buffered_data_and_never_retracts() -> None:
    c, p = _established_server(10_000)
    c.receive_segment(p.seg(F.ACK, bytes(1000)), 2)
    c.receive_segment(p.seg(F.ACK, bytes(1000)), 3)
    (ack,) = c.segments_to_send(3)
    assert ack.window == 8000
    for _ in range(8):
        c.receive_segment(p.seg(F.ACK, bytes(1000)), 4)
    out = c.segments_to_send(4)
    assert out[-1].window == 0
    # More data beyond the window is not accepted; the ACK repeats the zero window.
    c.receive_segment(p.seg(F.ACK, bytes(1000)), 5)
    assert c.readable == 10_000
    assert c.segments_to_send(5)[-1].window == 0


def test_receiver_sws_avoidance() -> None:
    """RFC 9293 3.8.6.2.2: do not open the window by less than min(RCV.BUFF/2, MSS)."""
    c, p = _established_server(10_000)
    for _ in range(10):
        c.receive_segment(p.seg(F.ACK, bytes(1000)), 2)
    c.segments_to_send(2)
    c.recv(500)
    assert c.segments_to_send(3) == []  # 500 bytes is not worth announcing
    # A zero-window probe (an old sequence number) is answered with the still-closed window.
    c.receive_segment(Segment(seq=seq_add(p.seq, -1), ack=p.ack, flags=F.ACK, window=100), 4)
    assert c.segments_to_send(4)[-1].window == 0
    c.recv(1500)  # 2000 free < MSS 2760 of ours: still silent
    assert c.segments_to_send(5) == []
    c.recv(1000)  # 3000 free: announce
    (upd,) = c.segments_to_send(6)
    assert upd.window == 3000


def test_sender_sws_waits_for_useful_window_then_override() -> None:
    """RFC 9293 3.8.6.2.1: with a small window the sender waits, then the persist (override)
    timer sends what fits."""
    c = TcpConnection(TcpConfig(nodelay=True), isn=lambda: 0)
    c.connect(0)
    c.segments_to_send(0)
    p = Peer(ack=1, window=10_000)
    c.receive_segment(p.seg(F.SYN | F.ACK, mss=1000), 10)
    c.segments_to_send(10)
    c.send(bytes(20_000))
    sent = c.segments_to_send(10)
    assert sum(len(s.payload) for s in sent) == 10_000
    # The peer acknowledges everything but opens only 300 bytes.
    p.ack = 10_001
    p.window = 300
    c.receive_segment(p.seg(F.ACK), 20)
    assert c.segments_to_send(20) == []
    timer = c.get_timer()
    assert timer is not None
    c.handle_timer(timer)
    (seg,) = c.segments_to_send(timer)
    assert len(seg.payload) == 300


def test_flow_control_slow_reader() -> None:
    """A reader that drains slowly throttles the sender without loss or timeouts."""
    small = TcpConfig(recv_buffer=20_000)
    p = Pair(b_config=small, link=LinkParams(delay_ms=5))
    p.handshake()
    data = bytes(i & 0xFF for i in range(300_000))
    got = bytearray()
    pos = 0

    def slow() -> None:
        nonlocal pos
        if pos < len(data):
            pos += p.a.send(data[pos:])
        got.extend(p.b.recv(1500))  # at most 1500 bytes per network event

    p.run(
        lambda: pos == len(data) and p.a.unacked == 0,
        on_step=slow,
        max_time=600_000,
        max_steps=400_000,
    )
    got.extend(p.b.recv())
    assert bytes(got) == data
    assert "rto" not in p.a.counters
    assert max(len(s.payload) for s in p.segments("a>b")) <= 20_000


def test_transfer_helper_roundtrip() -> None:
    p = Pair()
    p.handshake()
    assert transfer(p, "a", b"abc") == b"abc"
