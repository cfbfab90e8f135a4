"""What the blocking sockets' modules share: stdlib constants, flag sets, limits, and the
helpers that turn asyncio outcomes into the errno-carrying exceptions the stdlib raises."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
import socket as _socket
import threading
import time
from typing import TypeVar

from ztnode.netstack import tcp as tcb

T = TypeVar("T")


Endpoint = tuple[str, int]


AF_INET = _socket.AF_INET


AF_INET6 = _socket.AF_INET6


SOCK_STREAM = _socket.SOCK_STREAM


SOCK_DGRAM = _socket.SOCK_DGRAM


_DEFAULTS = tcb.TcpConfig()


_MIN_BUF = 1024


_RECV_FLAGS = _socket.MSG_PEEK | _socket.MSG_DONTWAIT | _socket.MSG_WAITALL | _socket.MSG_TRUNC


_SEND_FLAGS = _socket.MSG_DONTWAIT | _socket.MSG_NOSIGNAL | _socket.MSG_MORE


_UDP_MAX = {AF_INET: 65507, AF_INET6: 65527}


_GLOBAL_DEFAULT_TIMEOUT: object = getattr(_socket, "_GLOBAL_DEFAULT_TIMEOUT", object())


_FILL = bytes(1024)


def _oserror(code: int, detail: str | None = None) -> OSError:
    """OSError(errno, ...) picks the stdlib subclass (ConnectionRefusedError, ...) itself."""
    return OSError(code, detail or os.strerror(code))


def _errno_of(exc: BaseException) -> int:
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    if isinstance(exc, TimeoutError):
        return errno.ETIMEDOUT
    if isinstance(exc, asyncio.CancelledError | concurrent.futures.CancelledError):
        return errno.ECONNABORTED
    return errno.EINVAL


def _wait(cond: threading.Condition, deadline: float | None) -> None:
    """One wait on ``cond`` (held); TimeoutError("timed out") once the deadline has passed, as
    the stdlib's socket.timeout reads."""
    if deadline is None:
        cond.wait()
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    cond.wait(left)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout
