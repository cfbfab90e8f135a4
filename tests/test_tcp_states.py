"""One test per RFC 9293 figure 5 transition, plus simultaneous open/close and RST rules.

The connection under test talks to a scripted peer: the test builds each segment the peer would
send and checks the state and the connection's answer, so every transition is pinned exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.test_tcp_harness import Pair
from ztnode.netstack.tcp import (
    ClosedEvent,
    ConnectedEvent,
    ConnectionResetEvent,
    Flags,
    PeerClosedEvent,
    Segment,
    TcpConfig,
    TcpConnection,
    TcpEvent,
    TcpState,
    reset_for,
    seq_add,
)

S = TcpState
F = Flags
ISS = 0xFFFF_FFF0  # close to wrap on purpose: exercises modular arithmetic
PEER_ISS = 0x7FFF_FFFE
MSL = 500


def cfg() -> TcpConfig:
    return TcpConfig(msl_ms=MSL, min_rto_ms=100, initial_rto_ms=300)


@dataclass
class Peer:
    """The scripted remote end: tracks its own sequence numbers."""

    seq: int = PEER_ISS
    ack: int = 0
    window: int = 65535

    def seg(self, flags: Flags, payload: bytes = b"", **kw: Any) -> Segment:
        s = Segment(
            seq=self.seq, ack=self.ack, flags=flags, window=self.window, payload=payload, **kw
        )
        self.seq = seq_add(self.seq, s.seg_len)
        return s


def state(c: TcpConnection) -> TcpState:
    """Defeats mypy's narrowing of ``c.state`` across calls that change it."""
    return c.state


def events(c: TcpConnection) -> list[TcpEvent]:
    out = []
    while (e := c.next_event()) is not None:
        out.append(e)
    return out


def new() -> TcpConnection:
    return TcpConnection(cfg(), isn=lambda: ISS)


def syn_sent() -> tuple[TcpConnection, Peer]:
    c = new()
    c.connect(0)
    (syn,) = c.segments_to_send(0)
    assert syn.flags == F.SYN and syn.seq == ISS and syn.mss == 2760
    return c, Peer(ack=seq_add(ISS, 1))


def syn_received() -> tuple[TcpConnection, Peer]:
    c = new()
    c.listen()
    p = Peer()
    c.receive_segment(p.seg(F.SYN, mss=1460, wscale=2, sack_permitted=True), 0)
    (synack,) = c.segments_to_send(0)
    assert synack.flags == F.SYN | F.ACK and synack.ack == p.seq and synack.seq == ISS
    p.ack = seq_add(ISS, 1)
    return c, p


def established() -> tuple[TcpConnection, Peer]:
    c, p = syn_sent()
    c.receive_segment(p.seg(F.SYN | F.ACK, mss=1460, wscale=2, sack_permitted=True), 10)
    assert c.state is S.ESTABLISHED
    (ack,) = c.segments_to_send(10)
    assert ack.flags == F.ACK and ack.ack == p.seq
    assert events(c) == [ConnectedEvent()]
    return c, p


def fin_wait_1() -> tuple[TcpConnection, Peer]:
    c, p = established()
    c.shutdown(20)
    assert c.state is S.FIN_WAIT_1
    (fin,) = c.segments_to_send(20)
    assert fin.flags & F.FIN
    return c, p


def fin_wait_2() -> tuple[TcpConnection, Peer]:
    c, p = fin_wait_1()
    p.ack = seq_add(ISS, 2)
    c.receive_segment(p.seg(F.ACK), 30)
    assert c.state is S.FIN_WAIT_2
    return c, p


def close_wait() -> tuple[TcpConnection, Peer]:
    c, p = established()
    c.receive_segment(p.seg(F.FIN | F.ACK), 20)
    assert c.state is S.CLOSE_WAIT
    (ack,) = c.segments_to_send(20)
    assert ack.ack == p.seq
    assert PeerClosedEvent() in events(c)
    return c, p


def closing() -> tuple[TcpConnection, Peer]:
    c, p = fin_wait_1()
    c.receive_segment(p.seg(F.FIN | F.ACK), 30)  # FIN that does not ack ours
    assert c.state is S.CLOSING
    return c, p


def last_ack() -> tuple[TcpConnection, Peer]:
    c, p = close_wait()
    c.close(30)
    assert c.state is S.LAST_ACK
    (fin,) = c.segments_to_send(30)
    assert fin.flags & F.FIN
    return c, p


def time_wait() -> tuple[TcpConnection, Peer]:
    c, p = fin_wait_2()
    c.receive_segment(p.seg(F.FIN | F.ACK), 40)
    assert c.state is S.TIME_WAIT
    return c, p


# --- the transitions of RFC 9293 figure 5 ----------------------------------------------------


def test_closed_to_listen() -> None:
    c = new()
    c.listen()
    assert c.state is S.LISTEN
    assert c.segments_to_send(0) == []


def test_closed_to_syn_sent() -> None:
    c, _ = syn_sent()
    assert c.state is S.SYN_SENT


def test_listen_to_syn_received() -> None:
    c, _ = syn_received()
    assert c.state is S.SYN_RECEIVED


def test_listen_to_syn_sent_on_send() -> None:
    c = new()
    c.listen()
    c.connect(0)
    assert c.state is S.SYN_SENT


def test_listen_to_closed_on_close() -> None:
    c = new()
    c.listen()
    c.close(0)
    assert c.state is S.CLOSED and events(c) == [ClosedEvent()]


def test_syn_sent_to_closed_on_close() -> None:
    c, _ = syn_sent()
    c.close(5)
    assert c.state is S.CLOSED


def test_syn_sent_to_established() -> None:
    c, _ = established()
    assert c.snd_mss == 1460 and c.snd_wscale == 2


def test_syn_sent_to_syn_received_simultaneous_open() -> None:
    c, p = syn_sent()
    c.receive_segment(p.seg(F.SYN, mss=1460), 10)
    assert c.state is S.SYN_RECEIVED
    (synack,) = c.segments_to_send(10)
    assert synack.flags == F.SYN | F.ACK and synack.seq == ISS and synack.ack == p.seq
    p.ack = seq_add(ISS, 1)
    p.seq = PEER_ISS  # the peer's own SYN,ACK repeats its SYN (RFC 9293 figure 8)
    c.receive_segment(p.seg(F.SYN | F.ACK, mss=1460), 20)
    assert state(c) is S.ESTABLISHED


def test_syn_received_to_established() -> None:
    c, p = syn_received()
    c.receive_segment(p.seg(F.ACK), 10)
    assert c.state is S.ESTABLISHED
    assert ConnectedEvent() in events(c)
    assert c.snd_wscale == 2 and c.snd_mss == 1460


def test_syn_received_to_fin_wait_1_on_close() -> None:
    c, p = syn_received()
    c.shutdown(5)
    assert c.state is S.FIN_WAIT_1
    c.receive_segment(p.seg(F.ACK), 10)
    (fin,) = c.segments_to_send(10)
    assert fin.flags & F.FIN


def test_syn_received_to_listen_on_rst() -> None:
    c, p = syn_received()
    c.receive_segment(p.seg(F.RST), 10)
    assert c.state is S.LISTEN


def test_established_to_fin_wait_1() -> None:
    c, _ = fin_wait_1()
    assert c.state is S.FIN_WAIT_1


def test_established_to_close_wait() -> None:
    c, _ = close_wait()
    assert c.at_eof


def test_fin_wait_1_to_fin_wait_2() -> None:
    c, _ = fin_wait_2()
    assert c.state is S.FIN_WAIT_2


def test_fin_wait_1_to_closing() -> None:
    c, _ = closing()
    assert c.state is S.CLOSING


def test_fin_wait_1_to_time_wait_on_fin_ack() -> None:
    c, p = fin_wait_1()
    p.ack = seq_add(ISS, 2)
    c.receive_segment(p.seg(F.FIN | F.ACK), 30)
    assert c.state is S.TIME_WAIT


def test_fin_wait_2_to_time_wait() -> None:
    c, _ = time_wait()
    (ack,) = c.segments_to_send(40)
    assert ack.flags == F.ACK


def test_close_wait_to_last_ack() -> None:
    c, _ = last_ack()
    assert c.state is S.LAST_ACK


def test_closing_to_time_wait() -> None:
    c, p = closing()
    p.ack = seq_add(ISS, 2)
    c.receive_segment(p.seg(F.ACK), 40)
    assert c.state is S.TIME_WAIT


def test_last_ack_to_closed() -> None:
    c, p = last_ack()
    p.ack = seq_add(ISS, 2)
    c.receive_segment(p.seg(F.ACK), 40)
    assert c.state is S.CLOSED
    assert events(c)[-1] == ClosedEvent()


def test_time_wait_to_closed_after_2msl() -> None:
    c, p = time_wait()
    c.segments_to_send(40)
    assert c.get_timer() == 40 + 2 * MSL
    # A retransmitted FIN is ACKed again and restarts the 2*MSL timer (RFC 9293 3.10.7.4).
    p.seq = seq_add(p.seq, -1)
    c.receive_segment(p.seg(F.FIN | F.ACK), 300)
    (ack,) = c.segments_to_send(300)
    assert ack.flags == F.ACK and ack.ack == p.seq
    assert c.get_timer() == 300 + 2 * MSL
    c.handle_timer(300 + 2 * MSL)
    assert c.state is S.CLOSED


# --- simultaneous open and close over the harness ---------------------------------------------


def test_simultaneous_open() -> None:
    p = Pair(a_config=cfg(), b_config=cfg())
    p.a.connect(0)
    p.b.connect(0)
    p.run(lambda: p.a.state is S.ESTABLISHED and p.b.state is S.ESTABLISHED)
    assert ConnectedEvent() in p.events["a"] and ConnectedEvent() in p.events["b"]


def test_simultaneous_close() -> None:
    p = Pair(a_config=cfg(), b_config=cfg())
    p.handshake()
    p.a.close(p.now)
    p.b.close(p.now)
    seen: dict[str, list[S]] = {"a": [], "b": []}

    def trace() -> None:
        for n in "ab":
            st = p.conn(n).state
            if not seen[n] or seen[n][-1] is not st:
                seen[n].append(st)

    p.run(lambda: p.a.state is S.TIME_WAIT and p.b.state is S.TIME_WAIT, on_step=trace)
    for n in "ab":  # both FINs crossed: FIN-WAIT-1 -> CLOSING -> TIME-WAIT (RFC 9293 figure 13)
        assert seen[n] == [S.FIN_WAIT_1, S.CLOSING, S.TIME_WAIT], seen[n]
    p.run(lambda: p.a.state is S.CLOSED and p.b.state is S.CLOSED, max_time=4 * MSL)


# --- RST generation and acceptance --------------------------------------------------------------


def test_reset_for_unknown_segment() -> None:
    ack_seg = Segment(seq=5, ack=77, flags=F.ACK, window=0)
    assert reset_for(ack_seg) == Segment(seq=77, ack=0, flags=F.RST, window=0)
    syn = Segment(seq=5, ack=0, flags=F.SYN, window=0, payload=b"ab")
    assert reset_for(syn) == Segment(seq=0, ack=8, flags=F.RST | F.ACK, window=0)
    assert reset_for(Segment(seq=1, ack=0, flags=F.RST, window=0)) is None


def test_closed_connection_answers_with_rst() -> None:
    c = new()
    c.receive_segment(Segment(seq=5, ack=77, flags=F.ACK, window=0), 0)
    assert c.segments_to_send(0) == [Segment(seq=77, ack=0, flags=F.RST, window=0)]


def test_listen_answers_ack_with_rst_and_ignores_rst() -> None:
    c = new()
    c.listen()
    c.receive_segment(Segment(seq=5, ack=77, flags=F.ACK, window=0), 0)
    c.receive_segment(Segment(seq=5, ack=0, flags=F.RST, window=0), 0)
    assert c.segments_to_send(0) == [Segment(seq=77, ack=0, flags=F.RST, window=0)]
    assert c.state is S.LISTEN


def test_syn_sent_refused_by_rst_ack() -> None:
    c, p = syn_sent()
    c.receive_segment(p.seg(F.RST | F.ACK), 5)
    assert c.state is S.CLOSED
    assert events(c) == [ConnectionResetEvent(), ClosedEvent()]


def test_syn_sent_ignores_rst_with_bad_ack() -> None:
    c, p = syn_sent()
    p.ack = seq_add(ISS, 5)
    c.receive_segment(p.seg(F.RST | F.ACK), 5)
    assert c.state is S.SYN_SENT


def test_syn_sent_bad_ack_gets_rst() -> None:
    c, p = syn_sent()
    p.ack = seq_add(ISS, 50)
    c.receive_segment(p.seg(F.SYN | F.ACK), 5)
    assert c.state is S.SYN_SENT
    assert c.segments_to_send(5)[0] == Segment(seq=p.ack, ack=0, flags=F.RST, window=0)


def test_rst_exact_seq_resets_established() -> None:
    c, p = established()
    c.receive_segment(p.seg(F.RST), 20)
    assert c.state is S.CLOSED
    assert events(c) == [ConnectionResetEvent(), ClosedEvent()]


def test_rst_in_window_but_not_exact_gets_challenge_ack() -> None:
    """RFC 5961 section 3.2."""
    c, p = established()
    c.receive_segment(Segment(seq=seq_add(p.seq, 100), ack=0, flags=F.RST, window=0), 20)
    assert c.state is S.ESTABLISHED
    (ack,) = c.segments_to_send(20)
    assert ack.flags == F.ACK and ack.ack == p.seq


def test_rst_outside_window_is_dropped() -> None:
    c, p = established()
    c.receive_segment(Segment(seq=seq_add(p.seq, -10), ack=0, flags=F.RST, window=0), 20)
    assert c.state is S.ESTABLISHED and c.segments_to_send(20) == []


def test_syn_in_established_gets_challenge_ack() -> None:
    """RFC 5961 section 4."""
    c, p = established()
    c.receive_segment(Segment(seq=seq_add(p.seq, 5), ack=0, flags=F.SYN, window=100), 20)
    assert c.state is S.ESTABLISHED
    (ack,) = c.segments_to_send(20)
    assert ack.flags == F.ACK and ack.ack == p.seq


def test_ack_of_unsent_data_is_dropped_with_ack() -> None:
    c, p = established()
    p.ack = seq_add(ISS, 1000)
    c.receive_segment(p.seg(F.ACK, b"xyz"), 20)
    assert c.readable == 0
    (ack,) = c.segments_to_send(20)
    assert ack.flags == F.ACK


def test_abort_sends_rst() -> None:
    c, _ = established()
    c.abort(20)
    (rst,) = c.segments_to_send(20)
    assert rst.flags == F.RST and rst.seq == seq_add(ISS, 1)
    assert c.state is S.CLOSED


def test_close_with_unread_data_resets() -> None:
    c, p = established()
    c.receive_segment(p.seg(F.ACK | F.PSH, b"unread"), 20)
    c.close(25)
    assert [s.flags for s in c.segments_to_send(25)][-1] == F.RST


def test_rst_in_time_wait_closes() -> None:
    c, p = time_wait()
    c.receive_segment(p.seg(F.RST), 50)
    assert c.state is S.CLOSED


@pytest.mark.parametrize("window", [0, 100])
def test_unacceptable_segment_gets_ack(window: int) -> None:
    c, p = established()
    old = Segment(seq=seq_add(p.seq, -50), ack=p.ack, flags=F.ACK, window=window, payload=b"x")
    c.receive_segment(old, 20)
    (ack,) = c.segments_to_send(20)
    assert ack.ack == p.seq


def test_api_misuse_raises() -> None:
    from ztnode.errors import LocalProtocolError

    c = new()
    with pytest.raises(LocalProtocolError):
        c.send(b"x")
    c2, _ = fin_wait_1()
    with pytest.raises(LocalProtocolError):
        c2.send(b"x")
    with pytest.raises(LocalProtocolError):
        c2.listen()


def test_challenge_acks_are_rate_limited() -> None:
    """RFC 5961 section 7."""
    c, p = established()
    c.config.challenge_ack_limit = 3
    acks = 0
    for i in range(10):
        c.receive_segment(Segment(seq=seq_add(p.seq, 10 + i), ack=0, flags=F.RST, window=0), 50)
        acks += len(c.segments_to_send(50))
    assert acks == 3 and c.counters["challenge_ack_limited"] == 7
    c.receive_segment(Segment(seq=seq_add(p.seq, 10), ack=0, flags=F.RST, window=0), 1050)
    assert len(c.segments_to_send(1050)) == 1
