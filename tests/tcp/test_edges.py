"""Less travelled paths: out-of-order FIN, NewReno partial ACKs, persist timeout, duplicate SYNs,
data on a SYN,ACK, old ACKs, option setters."""

from __future__ import annotations

import random

import pytest

from tests.helpers.tcp_harness import LinkParams, Pair, drop_nth_data, transfer
from tests.helpers.tcp_peer import (
    ISS,
    PEER_ISS,
    F,
    Peer,
    established,
    events,
    new,
    state,
    syn_received,
    syn_sent,
)
from ztnode.errors import LocalProtocolError
from ztnode.netstack.tcp import (
    ClosedEvent,
    PeerClosedEvent,
    Segment,
    TcpConfig,
    TcpState,
    TimedOutEvent,
    seq_add,
)


def test_fin_before_missing_data_waits_for_the_gap() -> None:
    c, p = established()
    base = p.seq
    fin = Segment(
        seq=seq_add(base, 5), ack=p.ack, flags=F.FIN | F.ACK, window=1000, payload=b"world"
    )
    c.receive_segment(fin, 20)
    assert c.state is TcpState.ESTABLISHED
    (dup,) = c.segments_to_send(20)
    assert dup.ack == base
    c.receive_segment(Segment(seq=base, ack=p.ack, flags=F.ACK, window=1000, payload=b"hello"), 21)
    assert state(c) is TcpState.CLOSE_WAIT
    assert c.recv() == b"helloworld" and c.at_eof
    (ack,) = c.segments_to_send(21)
    assert ack.ack == seq_add(base, 11)
    assert PeerClosedEvent() in events(c)


def test_newreno_partial_acks_repair_two_losses() -> None:
    cfg = TcpConfig(sack=False)
    p = Pair(a_config=cfg, b_config=cfg, link=LinkParams(delay_ms=20))
    p.handshake()
    dropped, f = drop_nth_data("a>b", {60, 64})
    p.drop = f
    data = random.Random(5).randbytes(500_000)
    assert transfer(p, "a", data) == data
    assert len(dropped) == 2
    assert p.a.counters.get("fast_retransmit") == 1
    assert "rto" not in p.a.counters  # the partial ACK triggered the second repair (RFC 6582)


def test_persist_gives_up_when_probes_go_unanswered() -> None:
    cfg = TcpConfig(max_retries=3)
    p = Pair(a_config=cfg, b_config=TcpConfig(recv_buffer=4000))
    p.handshake()
    p.a.send(bytes(50_000))
    p.run(lambda: p.a.snd.wnd == 0 and p.a.counters.get("probe", 0) >= 1)
    p.drop = lambda d, s: d == "b>a"  # the receiver vanishes
    p.run(lambda: p.a.state is TcpState.CLOSED, max_time=3_600_000)
    assert p.events["a"][-2:] == [TimedOutEvent(), ClosedEvent()]
    assert p.a.counters["probe"] == 3  # max_retries unanswered probes, then give up


def test_window_closing_on_data_in_flight_switches_to_persist() -> None:
    c, p = established()
    c.config.nodelay = True
    c.send(b"x" * 1000)
    (d1,) = c.segments_to_send(20)
    # The peer acknowledges nothing new and closes its window.
    p.window = 0
    c.receive_segment(p.seg(F.ACK), 30)
    timer = c.get_timer()
    assert timer is not None
    c.handle_timer(timer)  # RTO with a zero window: no retransmission, probe instead
    assert c.counters.get("rto") is None
    assert c.segments_to_send(timer) == []
    t2 = c.get_timer()
    assert t2 is not None and t2 > timer
    c.handle_timer(t2)
    (probe,) = c.segments_to_send(t2)
    assert probe.seq == seq_add(d1.seq, -1) and not probe.payload
    p.window = 1000
    c.receive_segment(p.seg(F.ACK), t2 + 10)
    (again,) = c.segments_to_send(t2 + 10)
    assert again.payload == d1.payload


def test_duplicate_syn_in_syn_received_repeats_syn_ack() -> None:
    c, p = syn_received()
    p.seq = PEER_ISS
    c.receive_segment(p.seg(F.SYN), 5)
    (synack,) = c.segments_to_send(5)
    assert synack.flags == F.SYN | F.ACK and synack.seq == ISS


def test_data_and_fin_on_syn_ack() -> None:
    c, p = syn_sent()
    c.receive_segment(p.seg(F.SYN | F.ACK | F.FIN, b"early", mss=1000), 10)
    assert c.state is TcpState.CLOSE_WAIT
    assert c.recv() == b"early" and c.at_eof


def test_ack_too_old_gets_challenge_ack() -> None:
    c, p = established()
    p.ack = seq_add(ISS, -(1 << 20))
    c.receive_segment(p.seg(F.ACK, b"data"), 20)
    assert c.counters["challenge_old_ack"] == 1
    assert c.readable == 0


def test_option_setters() -> None:
    c = new()
    c.set_buffer_sizes(send=1000, recv=5000)
    assert c.config.send_buffer == 1000 and c.config.recv_buffer == 5000
    c2, _ = established()
    with pytest.raises(LocalProtocolError):
        c2.set_buffer_sizes(recv=1)
    c2.set_buffer_sizes(send=10)
    assert c2.send(b"x" * 100) == 10
    with pytest.raises(LocalProtocolError):
        c2.connect(0)
    with pytest.raises(LocalProtocolError):
        new().shutdown(0)


def test_config_is_copied_per_connection() -> None:
    shared = TcpConfig()
    p = Pair(a_config=shared, b_config=shared)
    p.a.set_nodelay(True)
    assert not p.b.config.nodelay and not shared.nodelay


def test_peer_without_options_gets_default_mss() -> None:
    c = new()
    c.listen()
    pr = Peer()
    c.receive_segment(pr.seg(F.SYN), 0)
    (synack,) = c.segments_to_send(0)
    assert synack.wscale is None and not synack.sack_permitted and synack.ts is None
    assert c.snd.mss == 536  # RFC 9293 3.7.1 default for IPv4
