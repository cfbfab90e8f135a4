"""Congestion controllers on their own (RFC 5681/6582, RFC 9438) and CUBIC over a lossy link."""

from __future__ import annotations

import hashlib
import random

from tests.helpers.tcp_harness import LinkParams, Pair, transfer
from ztnode.netstack.tcp import TcpConfig
from ztnode.netstack.tcp_cc import Cubic, NewReno, initial_window

MSS = 1000


def test_initial_window_rfc6928() -> None:
    assert initial_window(1460) == 14600
    assert initial_window(536) == 5360
    assert initial_window(9000) == 18000


def test_newreno_slow_start_then_avoidance() -> None:
    cc = NewReno(MSS, initial_cwnd=2 * MSS)
    cc.on_ack(5 * MSS, 0, 0)  # byte counting caps growth at one SMSS per ACK
    assert cc.cwnd == 3 * MSS
    cc.on_loss(10 * MSS, 0)
    assert cc.ssthresh == 5 * MSS and cc.cwnd == 5 * MSS
    for _ in range(5):
        cc.on_ack(MSS, 5 * MSS, 0)
    assert cc.cwnd == 6 * MSS  # one SMSS per window of ACKed data
    cc.on_recovery_exit(MSS, 0)
    assert cc.cwnd == 2 * MSS
    cc.on_rto(3 * MSS, 0)
    assert cc.cwnd == MSS and cc.ssthresh == 2 * MSS


def test_cubic_decrease_and_cubic_regrowth() -> None:
    cc = Cubic(MSS, initial_cwnd=100 * MSS)
    cc.ssthresh = 0  # straight into congestion avoidance
    cc.on_loss(100 * MSS, 0)
    assert cc.cwnd == 70 * MSS  # beta_cubic = 0.7
    now = 0
    samples = []
    for _ in range(200):  # 20 s of 100 ms RTTs, one ACK per segment
        for _ in range(cc.cwnd // MSS):
            cc.on_ack(MSS, cc.cwnd, now, 100.0)
        samples.append(cc.cwnd / MSS)
        now += 100
    k = ((100 - 70) / 0.4) ** (1 / 3)  # about 4.2 s to regain W_max
    plateau = samples[int(k * 10) - 2]
    assert 90 <= plateau <= 110  # concave approach to W_max ...
    assert samples[-1] > 2 * plateau  # ... then convex probing beyond it
    growth_early = samples[5] - samples[0]
    growth_mid = samples[int(k * 10)] - samples[int(k * 10) - 5]
    assert growth_early > growth_mid  # slowest growth around W_max


def test_cubic_fast_convergence() -> None:
    cc = Cubic(MSS, initial_cwnd=100 * MSS)
    cc.ssthresh = 0
    cc.on_loss(0, 0)  # W_max = 100
    cc.on_loss(0, 0)  # cwnd 70 < W_max: remember less than 70 (section 4.7)
    assert cc._w_max == 70 * (1 + 0.7) / 2


def test_cubic_bulk_over_lossy_link() -> None:
    cfg = TcpConfig(congestion_control=Cubic, min_rto_ms=100, max_retries=30)
    p = Pair(
        a_config=cfg,
        b_config=cfg,
        link=LinkParams(loss=0.05, dup=0.02, delay_ms=20, jitter_ms=10),
        seed=9,
    )
    p.handshake()
    assert isinstance(p.a.cc, Cubic)
    data = random.Random(4).randbytes(2 << 20)
    got = transfer(p, "a", data)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
