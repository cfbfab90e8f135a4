"""An in-memory network for ``TcpConnection`` pairs under a virtual clock, plus its self-tests.

Two connections exchange ``Segment`` records through a seeded queue that can drop, duplicate,
delay and reorder them (the trio ``FakeNet`` idea, at the segment level). Every loop is bounded
in both iterations and virtual time, so a protocol bug fails a test instead of hanging it.
"""

from __future__ import annotations

from tests.helpers.tcp_harness import Pair, transfer
from ztnode.netstack.tcp import (
    ClosedEvent,
    ConnectedEvent,
    TcpConfig,
    TcpState,
)


def test_clean_handshake_and_events() -> None:
    p = Pair()
    p.handshake()
    assert ConnectedEvent() in p.events["a"]
    assert ConnectedEvent() in p.events["b"]
    # three segments: SYN, SYN-ACK, ACK
    assert len(p.log) == 3


def test_small_transfer_and_orderly_close() -> None:
    cfg = TcpConfig(msl_ms=1000)
    p = Pair(a_config=cfg, b_config=cfg)
    p.handshake()
    assert transfer(p, "a", b"hello world") == b"hello world"
    p.a.close(p.now)
    p.run(lambda: p.b.state is TcpState.CLOSE_WAIT)
    p.b.close(p.now)
    p.run(lambda: p.b.state is TcpState.CLOSED and p.a.state is TcpState.CLOSED)
    assert p.events["a"][-1] == ClosedEvent()
    assert p.events["b"][-1] == ClosedEvent()
