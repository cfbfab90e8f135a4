"""Readiness for ``select``: a real file descriptor per socket that is readable exactly when
the socket is, and the lock and condition a socket's two sides share."""

from __future__ import annotations

import contextlib
import socket as _socket
import threading

from ztnode.sockets.blocking.common import _FILL


class _Signal:
    """The descriptor ``select`` watches for one ztnode socket (see the module docstring)."""

    __slots__ = ("_a", "_b", "closed", "readable", "writable")

    def __init__(self) -> None:
        a, b = _socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with contextlib.suppress(OSError):
            a.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, 1)  # the kernel's minimum
        self._a, self._b = a, b
        self.readable = False
        self.writable = True
        self.closed = False

    def fileno(self) -> int:
        return -1 if self.closed else self._a.fileno()

    def set(self, readable: bool, writable: bool) -> None:
        """Make the descriptor's state match (called with the owner's lock held)."""
        if self.closed:
            return
        if readable != self.readable:
            if readable:
                self._b.send(b"\x01")
            else:
                self._drain(self._a)
            self.readable = readable
        if writable != self.writable:
            if writable:
                self._drain(self._b)
            else:
                for _ in range(64):
                    try:
                        self._a.send(_FILL)
                    except BlockingIOError:
                        break
            self.writable = writable

    @staticmethod
    def _drain(s: _socket.socket) -> None:
        with contextlib.suppress(BlockingIOError):
            while s.recv(65536):
                pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._a.close()
            self._b.close()


class _Shared:
    """A socket's lock and readiness descriptor, shared by whichever role it takes."""

    __slots__ = ("cond", "signal")

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.signal = _Signal()
