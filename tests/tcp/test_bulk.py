"""Bulk transfers over clean and hostile fake links: the bytes must arrive intact."""

from __future__ import annotations

import hashlib
import random
import time

import pytest

from tests.helpers.tcp_harness import LinkParams, Pair, transfer
from ztnode.netstack.tcp import TcpConfig, TcpState


def _data(n: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(n)


def test_clean_bulk_4mb_both_directions() -> None:
    p = Pair(link=LinkParams(delay_ms=5))
    p.handshake()
    d1 = _data(4 << 20, 1)
    d2 = _data(4 << 20, 2)
    assert hashlib.sha256(transfer(p, "a", d1)).digest() == hashlib.sha256(d1).digest()
    assert hashlib.sha256(transfer(p, "b", d2)).digest() == hashlib.sha256(d2).digest()
    assert p.a.retransmitted_bytes == 0 and p.b.retransmitted_bytes == 0


@pytest.mark.parametrize("src", ["a", "b"])
def test_lossy_reordering_duplicating_bulk(src: str) -> None:
    """20 MB through 10% loss, 5% duplication and jitter that reorders (segments of one flight
    leave together, so up to 15 ms of jitter shuffles them); SHA-256 equal at the far end."""
    cfg = TcpConfig(min_rto_ms=100, max_retries=30)
    p = Pair(
        a_config=cfg,
        b_config=cfg,
        link=LinkParams(loss=0.10, dup=0.05, delay_ms=20, jitter_ms=15),
        seed=42 if src == "a" else 43,
    )
    p.handshake()
    data = _data(20 << 20, 3)
    t0 = time.process_time()
    got = transfer(p, src, data)
    cpu = time.process_time() - t0
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    assert p.conn(src).retransmitted_bytes > 0
    print(f"lossy {src}: {len(data) / max(cpu, 1e-9) / 1e6:.1f} MB/s CPU, virtual {p.now} ms")
    assert p.now < 600_000  # bounded in virtual time too
    # Orderly close afterwards still works over the lossy link.
    p.a.close(p.now)
    p.b.close(p.now)
    p.run(
        lambda: (
            p.a.state in (TcpState.TIME_WAIT, TcpState.CLOSED)
            and p.b.state in (TcpState.TIME_WAIT, TcpState.CLOSED)
        ),
        max_time=600_000,
    )
