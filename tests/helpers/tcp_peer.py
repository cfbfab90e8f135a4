"""A scripted TCP peer and the states a connection is driven into with it (RFC 9293 figure 5),
shared by the TCP test modules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ztnode.netstack.tcp import (
    ConnectedEvent,
    Flags,
    PeerClosedEvent,
    Segment,
    TcpConfig,
    TcpConnection,
    TcpEvent,
    TcpState,
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
