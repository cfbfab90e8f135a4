"""Fixtures shared by the accelerator's tests."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from ztnode.transport import burst

REQUIRE = os.environ.get("ZTNODE_REQUIRE_ACCEL", "") not in ("", "0")


def need(available: bool, reason: str | None) -> None:
    """Skip when the C part is unavailable, unless CI said it must be there."""
    if available:
        return
    if REQUIRE:
        pytest.fail(f"ZTNODE_REQUIRE_ACCEL=1 but unavailable: {reason}")
    pytest.skip(f"unavailable: {reason}")


@pytest.fixture
def link() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A loopback sender connected to a non-blocking receiver, for burst-reader tests."""
    need(burst.AVAILABLE, burst.REASON)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind(("127.0.0.1", 0))
    tx.bind(("127.0.0.1", 0))
    tx.connect(rx.getsockname())
    rx.setblocking(False)
    try:
        yield rx, tx
    finally:
        rx.close()
        tx.close()
