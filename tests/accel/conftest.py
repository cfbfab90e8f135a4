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


def loopback_link(
    family: socket.AddressFamily = socket.AF_INET,
) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A loopback sender connected to a non-blocking receiver (IPv4 or IPv6), for burst-reader
    tests; both closed after."""
    need(burst.AVAILABLE, burst.REASON)
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    rx = socket.socket(family, socket.SOCK_DGRAM)
    tx = socket.socket(family, socket.SOCK_DGRAM)
    try:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        rx.bind((host, 0))
        tx.bind((host, 0))
        tx.connect(rx.getsockname()[:2])
        rx.setblocking(False)
        yield rx, tx
    finally:
        rx.close()
        tx.close()


@pytest.fixture
def link() -> Iterator[tuple[socket.socket, socket.socket]]:
    """An IPv4 :func:`loopback_link`."""
    yield from loopback_link()
