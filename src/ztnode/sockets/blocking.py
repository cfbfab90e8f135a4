"""Blocking sockets on a ZeroTier network, shaped like the stdlib's :class:`socket.socket`.

What users import (via ``ztnode``)::

    with ztnode.BlockingNode("zt-home") as node:
        net = node.join(0x8056C2E21C000001)
        with net.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.connect(("10.147.20.5", 80))
            s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            print(s.recv(65536))

        conn = http.client.HTTPConnection("10.147.20.5", 80)
        conn._create_connection = net.create_connection  # http.client over ZeroTier

Programs that take a socket object (``http.client`` as above, ``socketserver`` with its
``socket`` attribute replaced, ``selectors`` loops) work unchanged: methods, flags, timeouts
and the ``OSError`` subclasses with their errno values follow the stdlib on Linux.

**Threads.** The asyncio :class:`~ztnode.sockets.aio.Node` runs on an event loop in one
background thread, the only thread of this facade. Socket calls run in whatever threads the
program uses; they never touch the transports but post to the loop (``call_soon_threadsafe``),
and the loop's protocol callbacks update per-socket state under a ``threading.Condition`` that
blocked callers wait on. A send is posted without waiting for the loop (the caller checks the
room itself), so it costs one wake-up of the loop thread, not a round trip.

**Readiness descriptor.** ``fileno()`` is one end ``a`` of a private ``socketpair()``
``(a, b)``, so that ``select``/``poll``/``selectors`` wait on ztnode sockets beside OS sockets:

* ``a`` is *readable* exactly while ``recv``/``accept`` would not block (data, EOF, an error, a
  queued connection): one byte is sent from ``b`` when that starts and read back when it ends;
* ``a`` is *writable* exactly while ``send`` would not block: when the send room runs out (or a
  non-blocking ``connect`` is in progress) ``a``'s minimal send buffer is filled, which makes
  it unwritable, and when room returns ``b`` reads that filler, which makes it writable again.

Both bits are recomputed under the socket's lock by whichever thread changed the state (the
loop thread when data, EOF, errors or send room arrive; the caller when ``recv``, ``accept`` or
``send`` used them up), before waiters are notified. So the descriptor is level-triggered like
a kernel socket's: it is readable whenever something waits, and stops being readable as soon as
nothing does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import io
import os
import socket as _socket
import struct
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_address
from typing import Any, TypeVar, cast

from ztnode.errors import LocalProtocolError
from ztnode.netstack import tcp as tcb
from ztnode.netstack.stack import TcpSocket, UdpSocket
from ztnode.sockets.aio import Network, Node, TcpServer
from ztnode.wire.world import World

__all__ = ["BlockingNetwork", "BlockingNode", "LoopThread", "Socket"]

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


# ---------------------------------------------------------------------------------------------
# The loop thread
# ---------------------------------------------------------------------------------------------


class LoopThread:
    """An asyncio loop in a daemon thread, and the ways other threads hand it work.

    Work handed over after the loop stopped fails with ENETDOWN instead of waiting forever:
    futures still pending when the loop closes are failed from here.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._futures: set[concurrent.futures.Future[Any]] = set()

    def start(self) -> None:
        if self._thread is not None:
            return
        started = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(started.set)
            try:
                self.loop.run_forever()
            finally:
                self._finish()

        self._thread = threading.Thread(target=main, name=self.name, daemon=True)
        self._thread.start()
        started.wait()

    def stop(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not thread:
            thread.join()

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the loop; its future fails with ENETDOWN if the loop ends first."""
        with self._lock:
            if self._closed or self._thread is None:
                coro.close()
                raise _oserror(errno.ENETDOWN, "the node's event loop is not running")
            fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
            self._futures.add(fut)
        fut.add_done_callback(self._forget)
        return fut

    def _forget(self, fut: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._futures.discard(fut)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for it; on a timeout it is cancelled."""
        if self.in_loop():
            coro.close()
            raise RuntimeError("a blocking ztnode call from the node's own event loop thread")
        fut = self.submit(coro)
        try:
            return fut.result(timeout)
        except TimeoutError:
            if fut.done():
                return fut.result()
            fut.cancel()
            raise TimeoutError("timed out") from None

    def call(self, fn: Callable[[], T]) -> T:
        """Run a plain function on the loop thread and wait for its result."""
        if self.in_loop():
            return fn()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def runner() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)

        with self._lock:
            self._post_locked(runner)
            self._futures.add(fut)
        fut.add_done_callback(self._forget)
        return fut.result()

    def post(self, fn: Callable[..., object], *args: object) -> None:
        """Queue ``fn(*args)`` on the loop without waiting (FIFO with every other post)."""
        with self._lock:
            self._post_locked(fn, *args)

    def _post_locked(self, fn: Callable[..., object], *args: object) -> None:
        if self._closed or self._thread is None:
            raise _oserror(errno.ENETDOWN, "the node's event loop is not running")
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            raise _oserror(errno.ENETDOWN, "the node's event loop is not running") from None

    def _finish(self) -> None:
        loop = self.loop
        try:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in tasks:
                t.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            with self._lock:
                self._closed = True
                left = list(self._futures)
            loop.close()
            for f in left:
                if not f.cancel():
                    with contextlib.suppress(concurrent.futures.InvalidStateError):
                        f.set_exception(_oserror(errno.ENETDOWN, "the node stopped"))


# ---------------------------------------------------------------------------------------------
# Readiness descriptor
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Roles: TCP connection, TCP listener, UDP endpoint
# ---------------------------------------------------------------------------------------------


class _Role:
    """State of one socket role; ``cond`` guards every field both threads touch."""

    def __init__(self, net: BlockingNetwork, shared: _Shared, opts: dict[str, int]) -> None:
        self.net = net
        self.shared = shared
        self.cond = shared.cond
        self.opts = opts
        self.closed = False
        self.so_error = 0

    def _readable(self) -> bool:
        raise NotImplementedError

    def _writable(self) -> bool:
        raise NotImplementedError

    def refresh(self) -> None:
        """Lock held: update the descriptor, then wake the waiters."""
        if not self.closed:
            self.shared.signal.set(self._readable(), self._writable())
        self.cond.notify_all()

    def take_error(self) -> int:
        """SO_ERROR: the pending asynchronous error, cleared by reading it."""
        with self.cond:
            e, self.so_error = self.so_error, 0
            self.refresh()
            return e

    def raise_error_locked(self) -> None:
        e, self.so_error = self.so_error, 0
        self.refresh()
        raise _oserror(e or errno.ECONNABORTED)

    def gone(self, code: int) -> None:
        """The node stopped or left the network: pending and future calls fail with ``code``."""
        raise NotImplementedError

    def post(self, fn: Callable[..., object], *args: object) -> None:
        self.net.node._thread.post(fn, *args)

    def opt(self, name: str) -> int:
        return _option(self.opts, name)


class _Stream(_Role, asyncio.Protocol):
    """One TCP connection: bytes the loop received wait in ``buf`` for ``recv``; ``send`` hands
    bytes to the loop while ``inflight`` (posted, not yet written to the transport) is below
    SO_SNDBUF and the transport is not paused (above its high-water mark)."""

    def __init__(
        self,
        net: BlockingNetwork,
        shared: _Shared,
        opts: dict[str, int],
        listener: _Listener | None = None,
    ) -> None:
        super().__init__(net, shared, opts)
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.handle: TcpSocket | None = None
        self.buf = bytearray()
        self.connecting = False
        self.connected = False
        self.failed = False
        self.abandoned = False
        self.connect_future: concurrent.futures.Future[None] | None = None
        self.eof = False
        self.lost = False
        self.reading_paused = False
        self.resume_posted = False
        self.write_paused = False
        self.inflight = 0
        self.shut_rd = False
        self.shut_wr = False
        self.local: Endpoint | None = None
        self.peer: Endpoint | None = None
        net._track(self)  # last: a stopping node may call gone() from another thread at once

    # --- readiness (lock held)

    def _readable(self) -> bool:
        return bool(
            self.buf or self.eof or self.lost or self.shut_rd or self.so_error or self.failed
        )

    def _writable(self) -> bool:
        if self.connecting:
            return False
        if not self.connected or self.lost or self.shut_wr or self.so_error:
            return self.connected or self.failed or bool(self.so_error)
        return not self.write_paused and self.inflight < self.opt("sndbuf")

    # --- asyncio.Protocol, in the loop thread

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        handle = transport.get_extra_info("ztnode_socket")
        with self.cond:
            self.transport = transport
            self.handle = handle if isinstance(handle, TcpSocket) else None
            self.local = transport.get_extra_info("sockname")
            self.peer = transport.get_extra_info("peername")
            if self.abandoned or self.closed:
                self.lost = True
                transport.abort()
                self.refresh()
                return
            if self.handle is not None:
                # Unset buffer sizes follow the stack's TCP configuration.
                self.opts.setdefault("rcvbuf", self.handle.conn.config.recv_buffer)
                self.opts.setdefault("sndbuf", self.handle.conn.config.send_buffer)
            self.connected = True
            self.connecting = False
            self.refresh()
        self.loop_apply_options()
        if self.listener is not None:
            self.listener.arrived(self)

    def data_received(self, data: bytes) -> None:
        with self.cond:
            if self.closed:
                return  # closing: the data would be dropped by a kernel too
            self.buf += data
            if not self.reading_paused and len(self.buf) >= self.opt("rcvbuf"):
                self.reading_paused = True
                if self.transport is not None:
                    self.transport.pause_reading()
            self.refresh()

    def eof_received(self) -> bool:
        with self.cond:
            self.eof = True
            self.refresh()
        return True  # keep our sending half open, as a half-closed TCP socket does

    def connection_lost(self, exc: Exception | None) -> None:
        with self.cond:
            self.lost = True
            self.write_paused = False
            if exc is not None and not self.closed and not self.so_error:
                self.so_error = _errno_of(exc)
            self.refresh()

    def pause_writing(self) -> None:
        with self.cond:
            self.write_paused = True
            self.refresh()

    def resume_writing(self) -> None:
        with self.cond:
            self.write_paused = False
            self.refresh()

    # --- work posted to the loop thread

    def loop_write(self, chunk: bytes) -> None:
        t = self.transport
        if t is not None and not self.lost:
            with contextlib.suppress(RuntimeError):  # after write_eof: the caller raced close
                t.write(chunk)
        with self.cond:
            self.inflight -= len(chunk)
            self.refresh()

    def loop_resume(self) -> None:
        with self.cond:
            self.reading_paused = False
            self.resume_posted = False
        t = self.transport
        if t is not None and not self.lost:
            t.resume_reading()

    def loop_write_eof(self) -> None:
        t = self.transport
        if t is not None and not self.lost:
            t.write_eof()

    def loop_close(self, reset: bool) -> None:
        fut = self.connect_future
        if fut is not None and not fut.done():
            fut.cancel()
        t = self.transport
        if t is None or self.lost:
            return
        if reset:
            t.abort()
        else:
            t.close()

    def loop_apply_options(self) -> None:
        """The options the program set, onto the TCB (the others keep the stack's
        configuration). TcpConnection's setters do not tell the stack, so the handle is marked
        for service: keepalive timers re-armed, what Nagle held sent."""
        h = self.handle
        if h is None or self.lost:
            return
        o = self.opts
        conn = h.conn
        if "nodelay" in o:
            h.set_nodelay(bool(o["nodelay"]))
        if o.keys() & {"keepalive", "keepidle", "keepintvl", "keepcnt"}:
            idle, intvl = o.get("keepidle"), o.get("keepintvl")
            h.set_keepalive(
                bool(o.get("keepalive", conn.config.keepalive)),
                None if idle is None else idle * 1000,
                None if intvl is None else intvl * 1000,
                o.get("keepcnt"),
            )
        if "sndbuf" in o:
            h.set_send_buffer(o["sndbuf"])
        self.net.network.node.service.flush_soon()

    async def connect_coro(self, host: str, port: int, local_port: int, reserved: bool) -> None:
        net = self.net.network
        if reserved:
            _release_tcp_port(net, local_port)  # tcp_connect claims it again in this same step
        await net.create_connection(lambda: self, host, port, local_port=local_port)

    def connect_done(self, fut: concurrent.futures.Future[None]) -> None:
        with self.cond:
            self.connecting = False
            if not self.connected and not self.abandoned:
                exc = None if fut.cancelled() else fut.exception()
                self.failed = True
                if not self.so_error:
                    self.so_error = _errno_of(exc) if exc is not None else errno.ECONNABORTED
            self.refresh()

    # --- caller side

    def begin_connect(self, host: str, port: int, local_port: int, reserved: bool) -> None:
        with self.cond:
            self.connecting = True
            self.refresh()
        try:
            fut = self.net.node._thread.submit(self.connect_coro(host, port, local_port, reserved))
        except BaseException:
            with self.cond:
                self.connecting = False
                self.failed = True
                self.refresh()
            raise
        with self.cond:
            self.connect_future = fut
        fut.add_done_callback(self.connect_done)

    def wait_connected(self, deadline: float | None) -> None:
        fut = None
        with self.cond:
            try:
                while self.connecting:
                    _wait(self.cond, deadline)
            except TimeoutError:
                self.abandoned = True
                self.connecting = False
                self.failed = True
                fut = self.connect_future
                self.refresh()
            else:
                if self.connected:
                    return
                self.raise_error_locked()
        if fut is not None:
            fut.cancel()
        raise TimeoutError("timed out")

    def check_open_locked(self) -> None:
        if self.closed:
            raise _oserror(errno.EBADF)

    def recv(self, n: int, flags: int, timeout: float | None) -> bytes:
        nonblock = timeout == 0.0 or bool(flags & _socket.MSG_DONTWAIT)
        deadline = None if nonblock else _deadline(timeout)
        with self.cond:
            while True:
                self.check_open_locked()
                if self.buf:
                    break
                if self.so_error:
                    self.raise_error_locked()
                if self.eof or self.lost or self.shut_rd or n == 0:
                    return b""
                if not self.connected and not self.connecting:
                    raise _oserror(errno.ENOTCONN)
                if nonblock:
                    raise _oserror(errno.EAGAIN)
                _wait(self.cond, deadline)
            data = bytes(self.buf[:n])
            if not flags & _socket.MSG_PEEK:
                del self.buf[:n]
                if (
                    self.reading_paused
                    and not self.resume_posted
                    and len(self.buf) <= self.opt("rcvbuf") // 2
                ):
                    self.resume_posted = True
                    with contextlib.suppress(OSError):
                        self.post(self.loop_resume)
                self.refresh()
            return data

    def send(self, data: memoryview, flags: int, timeout: float | None) -> int:
        nonblock = timeout == 0.0 or bool(flags & _socket.MSG_DONTWAIT)
        deadline = None if nonblock else _deadline(timeout)
        with self.cond:
            while True:
                self.check_open_locked()
                if self.so_error:
                    self.raise_error_locked()
                if self.shut_wr or self.lost:
                    raise _oserror(errno.EPIPE)
                if not self.connected:
                    if not self.connecting:
                        raise _oserror(errno.ENOTCONN if not self.failed else errno.EPIPE)
                    room = 0
                else:
                    room = 0 if self.write_paused else self.opt("sndbuf") - self.inflight
                if room > 0 or not data:
                    break
                if nonblock:
                    raise _oserror(errno.EAGAIN)
                _wait(self.cond, deadline)
            n = min(len(data), room)
            if n == 0:
                return 0
            chunk = bytes(data[:n])
            self.inflight += n
            self.post(self.loop_write, chunk)
            self.refresh()
            return n

    def shutdown(self, how: int) -> None:
        with self.cond:
            self.check_open_locked()
            if not self.connected or (self.lost and not self.eof):
                raise _oserror(errno.ENOTCONN)
            if how in (_socket.SHUT_RD, _socket.SHUT_RDWR):
                self.shut_rd = True
            send_fin = how in (_socket.SHUT_WR, _socket.SHUT_RDWR) and not self.shut_wr
            if send_fin:
                self.shut_wr = True
                with contextlib.suppress(OSError):
                    self.post(self.loop_write_eof)
            self.refresh()

    def close(self, reset: bool = False) -> None:
        """Like a kernel: unread data (or SO_LINGER with a zero timeout) resets the connection;
        otherwise what was sent is delivered, then FIN. ``reset`` for connections a closing
        listener never handed out."""
        with self.cond:
            if self.closed:
                return
            self.closed = True
            reset = (
                reset or bool(self.buf) or bool(self.opt("linger_on") and not self.opt("linger"))
            )
            self.buf.clear()
            self.shared.signal.close()
            self.cond.notify_all()
        with contextlib.suppress(OSError):
            self.post(self.loop_close, reset)

    def gone(self, code: int) -> None:
        with self.cond:
            if not self.closed and not self.lost:  # a finished connection stays as it ended
                self.so_error = self.so_error or code
                self.failed = not self.connected
            self.lost = True
            self.connecting = False
            self.refresh()


class _Listener(_Role):
    """A listening socket. aio's TcpServer accepts eagerly, so connections wait in ``queue``
    (established, buffering what arrives) until ``accept``, and the ``listen`` backlog is
    recorded but cannot bound them: the stack's backlog applies to handshakes only."""

    def __init__(self, net: BlockingNetwork, shared: _Shared, opts: dict[str, int]) -> None:
        super().__init__(net, shared, opts)
        self.queue: deque[_Stream] = deque()
        self.server: TcpServer | None = None
        self.local: Endpoint = ("", 0)
        self.backlog = 0
        net._track(self)

    def _readable(self) -> bool:
        return bool(self.queue) or bool(self.so_error)

    def _writable(self) -> bool:
        return False

    def factory(self) -> asyncio.Protocol:
        return _Stream(self.net, _Shared(), dict(self.opts), listener=self)

    def arrived(self, stream: _Stream) -> None:
        with self.cond:
            if not self.closed:
                self.queue.append(stream)
                self.refresh()
                return
        stream.close(reset=True)

    def accept(self, timeout: float | None) -> _Stream:
        nonblock = timeout == 0.0
        deadline = None if nonblock else _deadline(timeout)
        with self.cond:
            while True:
                if self.closed:
                    raise _oserror(errno.EBADF)
                if self.queue:
                    stream = self.queue.popleft()
                    self.refresh()
                    return stream
                if self.so_error:
                    self.raise_error_locked()
                if nonblock:
                    raise _oserror(errno.EAGAIN)
                _wait(self.cond, deadline)

    def loop_close(self, pending: list[_Stream]) -> None:
        if self.server is not None:
            self.server.close()
        for s in pending:
            s.close(reset=True)

    def close(self) -> None:
        with self.cond:
            if self.closed:
                return
            self.closed = True
            pending = list(self.queue)
            self.queue.clear()
            self.shared.signal.close()
            self.cond.notify_all()
        with contextlib.suppress(OSError):
            self.post(self.loop_close, pending)

    def gone(self, code: int) -> None:
        with self.cond:
            pending = list(self.queue)
            self.queue.clear()
            if not self.closed:
                self.so_error = code
            self.refresh()
        for s in pending:
            s.close(reset=True)


class _Datagram(_Role, asyncio.DatagramProtocol):
    """A UDP socket: datagrams wait in ``queue`` (bounded by SO_RCVBUF, drops counted)."""

    def __init__(self, net: BlockingNetwork, shared: _Shared, opts: dict[str, int]) -> None:
        super().__init__(net, shared, opts)
        self.transport: asyncio.DatagramTransport | None = None
        self.handle: UdpSocket | None = None
        self.queue: deque[tuple[bytes, Endpoint]] = deque()
        self.queued = 0
        self.dropped = 0
        self.lost = False
        self.local: Endpoint = ("", 0)
        self.peer: Endpoint | None = None
        net._track(self)

    def _readable(self) -> bool:
        return bool(self.queue) or bool(self.so_error) or self.lost

    def _writable(self) -> bool:
        return True

    # --- asyncio.DatagramProtocol, in the loop thread

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        handle = transport.get_extra_info("ztnode_socket")
        with self.cond:
            self.transport = transport
            self.handle = handle if isinstance(handle, UdpSocket) else None
            self.local = transport.get_extra_info("sockname")

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        with self.cond:
            if self.queued + len(data) > self.opt("rcvbuf"):
                self.dropped += 1
                return
            self.queue.append((data, (str(addr[0]), int(addr[1]))))
            self.queued += len(data)
            self.refresh()

    def error_received(self, exc: Exception) -> None:
        with self.cond:
            self.so_error = _errno_of(exc)
            self.refresh()

    def connection_lost(self, exc: Exception | None) -> None:
        with self.cond:
            self.lost = True
            self.refresh()

    # --- loop-thread work the caller waits for (UDP errors are synchronous in the stdlib)

    def loop_sendto(self, data: bytes, dest: Endpoint | None) -> None:
        h = self.handle
        if h is None or self.lost:
            raise _oserror(errno.EPIPE)
        service = self.net.network.node.service
        now = service.clock.now()
        if dest is None:
            h.send(data, now)
        else:
            h.sendto(data, dest[0], dest[1], now)
        service.flush_soon()

    def loop_connect(self, host: str, port: int) -> None:
        h = self.handle
        if h is None:
            raise _oserror(errno.EBADF)
        h.connect(host, port)

    def loop_close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # --- caller side

    def recv(self, n: int, flags: int, timeout: float | None) -> tuple[bytes, Endpoint]:
        nonblock = timeout == 0.0 or bool(flags & _socket.MSG_DONTWAIT)
        deadline = None if nonblock else _deadline(timeout)
        with self.cond:
            while True:
                if self.closed:
                    raise _oserror(errno.EBADF)
                if self.so_error:
                    self.raise_error_locked()
                if self.queue:
                    break
                if self.lost:
                    raise _oserror(errno.ENETDOWN)
                if nonblock:
                    raise _oserror(errno.EAGAIN)
                _wait(self.cond, deadline)
            if flags & _socket.MSG_PEEK:
                data, addr = self.queue[0]
            else:
                data, addr = self.queue.popleft()
                self.queued -= len(data)
                self.refresh()
        if flags & _socket.MSG_TRUNC:
            return data, addr  # Linux returns the real length; the caller cuts the bytes
        return data[:n], addr

    def close(self) -> None:
        with self.cond:
            if self.closed:
                return
            self.closed = True
            self.queue.clear()
            self.shared.signal.close()
            self.cond.notify_all()
        with contextlib.suppress(OSError):
            self.post(self.loop_close)

    def gone(self, code: int) -> None:
        with self.cond:
            self.lost = True
            if not self.closed:
                self.so_error = self.so_error or code
            self.refresh()


def _release_tcp_port(net: Network, port: int) -> None:
    net.stack.release_tcp_port(port)


def _reserve_tcp_port(net: Network, host: str, port: int, ipv6: bool) -> int:
    """``bind`` before ``listen``/``connect`` fixes the port (``getsockname`` reports it and
    ``socketserver`` reads it back), so the socket holds one in the stack until then."""
    return net.stack.reserve_tcp_port(host or None, port, ipv6=ipv6)


# ---------------------------------------------------------------------------------------------
# Socket options
# ---------------------------------------------------------------------------------------------

_SOL, _TCP, _IP, _IP6 = (
    _socket.SOL_SOCKET,
    _socket.IPPROTO_TCP,
    _socket.IPPROTO_IP,
    _socket.IPPROTO_IPV6,
)

#: Integer options kept per socket: (level, name) -> key. TCP ones reach the TCB.
_INT_OPTIONS: dict[tuple[int, int], str] = {
    (_SOL, _socket.SO_REUSEADDR): "reuseaddr",
    (_SOL, _socket.SO_REUSEPORT): "reuseport",
    (_SOL, _socket.SO_BROADCAST): "broadcast",
    (_SOL, _socket.SO_KEEPALIVE): "keepalive",
    (_SOL, _socket.SO_RCVBUF): "rcvbuf",
    (_SOL, _socket.SO_SNDBUF): "sndbuf",
    (_SOL, _socket.SO_OOBINLINE): "oobinline",
    (_TCP, _socket.TCP_NODELAY): "nodelay",
    (_TCP, _socket.TCP_KEEPIDLE): "keepidle",
    (_TCP, _socket.TCP_KEEPINTVL): "keepintvl",
    (_TCP, _socket.TCP_KEEPCNT): "keepcnt",
    (_IP, _socket.IP_TTL): "ttl",
    (_IP, _socket.IP_TOS): "tos",
    (_IP, _socket.IP_MULTICAST_TTL): "mcast_ttl",
    (_IP, _socket.IP_MULTICAST_LOOP): "mcast_loop",
    (_IP6, _socket.IPV6_V6ONLY): "v6only",
    (_IP6, _socket.IPV6_UNICAST_HOPS): "ttl",
    (_IP6, _socket.IPV6_MULTICAST_HOPS): "mcast_ttl",
    (_IP6, _socket.IPV6_MULTICAST_LOOP): "mcast_loop",
}
_TCB_OPTIONS = frozenset({"nodelay", "keepalive", "keepidle", "keepintvl", "keepcnt", "sndbuf"})
_GROUP_OPTIONS = {
    (_IP, _socket.IP_ADD_MEMBERSHIP): True,
    (_IP, _socket.IP_DROP_MEMBERSHIP): False,
    (_IP6, _socket.IPV6_JOIN_GROUP): True,
    (_IP6, _socket.IPV6_LEAVE_GROUP): False,
}


#: What getsockopt reports for options never set (a socket's dict holds only those set, plus
#: its connection's buffer sizes, so unset TCP options keep the stack's configuration).
_OPTION_DEFAULTS: dict[str, int] = {
    "reuseaddr": 0,
    "reuseport": 0,
    "broadcast": 0,
    "keepalive": int(_DEFAULTS.keepalive),
    "rcvbuf": _DEFAULTS.recv_buffer,
    "sndbuf": _DEFAULTS.send_buffer,
    "oobinline": 0,
    "nodelay": int(_DEFAULTS.nodelay),
    "keepidle": _DEFAULTS.keepalive_idle_ms // 1000,
    "keepintvl": _DEFAULTS.keepalive_interval_ms // 1000,
    "keepcnt": _DEFAULTS.keepalive_count,
    "ttl": 64,
    "tos": 0,
    "mcast_ttl": 1,
    "mcast_loop": 1,
    "v6only": 1,
    "linger_on": 0,
    "linger": 0,
}


def _option(opts: dict[str, int], name: str) -> int:
    return opts.get(name, _OPTION_DEFAULTS[name])


def _int_value(value: int | bytes | bytearray | memoryview | None) -> int:
    if isinstance(value, int):
        return value
    if value is None:
        raise TypeError("an integer option needs a value")
    raw = bytes(value)
    if len(raw) < 4:
        raw = raw.ljust(4, b"\0")
    return int(struct.unpack("i", raw[:4])[0])


# ---------------------------------------------------------------------------------------------
# Socket
# ---------------------------------------------------------------------------------------------


class Socket:
    """A TCP or UDP socket on a ZeroTier network with the stdlib socket's methods, errors and
    timeout rules. ``fileno()`` is a real descriptor for ``select`` (module docstring); reading
    or writing it directly is not meaningful.

    Hosts are IP literals: ZeroTier has no name resolution, and a name raises ``gaierror``.
    IPv6 sockets are IPv6-only whatever IPV6_V6ONLY says.
    """

    def __init__(
        self,
        network: BlockingNetwork,
        family: int = AF_INET,
        type: int = SOCK_STREAM,
        proto: int = 0,
        *,
        _accepted: _Stream | None = None,
    ) -> None:
        kind = type & ~(_socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC)
        if family not in (AF_INET, AF_INET6):
            raise _oserror(errno.EAFNOSUPPORT)
        if kind not in (SOCK_STREAM, SOCK_DGRAM):
            raise _oserror(errno.ESOCKTNOSUPPORT)
        wanted = _socket.IPPROTO_TCP if kind == SOCK_STREAM else _socket.IPPROTO_UDP
        if proto not in (0, wanted):
            raise _oserror(errno.EPROTONOSUPPORT)
        self._net = network
        self._family = _socket.AddressFamily(family)
        self._type = _socket.SocketKind(kind)
        self._proto = proto
        self._timeout: float | None = _socket.getdefaulttimeout()
        if type & _socket.SOCK_NONBLOCK:
            self._timeout = 0.0
        self._closed = False  # close() was called
        self._real_closed = False  # ... and no makefile() object holds the socket any more
        self._io_refs = 0
        self._stream: _Stream | None = _accepted
        self._listener: _Listener | None = None
        self._dgram: _Datagram | None = None
        self._shared = _accepted.shared if _accepted is not None else _Shared()
        self._opts: dict[str, int] = _accepted.opts if _accepted is not None else {}
        self._bound: Endpoint | None = None
        self._reserved: int | None = None  # TCP port held in the stack by bind()
        self._groups: list[IPv4Address | IPv6Address] = []
        self._lock = threading.Lock()  # role changes (bind/connect/listen/close)

    # --- identity

    @property
    def family(self) -> _socket.AddressFamily:
        return self._family

    @property
    def type(self) -> _socket.SocketKind:
        return self._type

    @property
    def proto(self) -> int:
        return self._proto

    @property
    def network(self) -> BlockingNetwork:
        return self._net

    def fileno(self) -> int:
        return -1 if self._real_closed else self._shared.signal.fileno()

    def __repr__(self) -> str:
        parts = [f"fd={self.fileno()}", f"family={self._family.name}", f"type={self._type.name}"]
        if not self._real_closed:
            with contextlib.suppress(OSError):
                parts.append(f"laddr={self.getsockname()}")
            with contextlib.suppress(OSError):
                parts.append(f"raddr={self.getpeername()}")
        closed = " [closed]" if self._real_closed else ""
        return f"<ztnode.Socket{closed} {', '.join(parts)}>"

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_real_closed", True):
            return
        try:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
        finally:  # even when warnings are errors, the descriptor pair must not leak
            with contextlib.suppress(Exception):
                self._really_close()

    # --- timeouts

    def settimeout(self, value: float | None) -> None:
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    # --- addresses

    def _parse(self, address: Any, what: str, *, bind: bool = False) -> Endpoint:
        v6 = self._family == AF_INET6
        name = "AF_INET6" if v6 else "AF_INET"
        if not isinstance(address, tuple):
            raise TypeError(f"{what}(): {name} address must be tuple, not {type(address).__name__}")
        if (v6 and not 2 <= len(address) <= 4) or (not v6 and len(address) != 2):
            raise TypeError(f"{what}(): {name} address must be a tuple (host, port)")
        host, port = address[0], address[1]
        if not isinstance(host, str):
            raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
        if not isinstance(port, int):
            raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an integer")
        if not 0 <= port <= 0xFFFF:
            raise OverflowError(f"{what}(): port must be 0-65535.")
        if host == "" and bind:
            return "", port
        if host == "<broadcast>" and not v6:
            host = "255.255.255.255"
        try:
            ip = ip_address(host.split("%", 1)[0])
        except ValueError:
            raise _socket.gaierror(
                _socket.EAI_NONAME, f"{host!r} is not an IP address (ZeroTier resolves no names)"
            ) from None
        if (ip.version == 6) != v6:
            raise _oserror(errno.EAFNOSUPPORT, f"{host} is not an {name} address")
        if ip.is_unspecified:
            if bind:
                return "", port
            raise _oserror(errno.EINVAL, "cannot connect to the unspecified address")
        return host, port

    def _sockaddr(self, ep: Endpoint) -> Any:
        if self._family == AF_INET6:
            return (ep[0], ep[1], 0, 0)
        return (ep[0], ep[1])

    def _wildcard(self) -> str:
        return "::" if self._family == AF_INET6 else "0.0.0.0"

    def getsockname(self) -> Any:
        self._check()
        if self._stream is not None and self._stream.local is not None:
            return self._sockaddr(self._stream.local)
        if self._listener is not None:
            return self._sockaddr(self._listener.local)
        if self._dgram is not None:
            return self._sockaddr(self._dgram.local)
        if self._bound is not None:
            return self._sockaddr((self._bound[0] or self._wildcard(), self._bound[1]))
        return self._sockaddr((self._wildcard(), 0))

    def getpeername(self) -> Any:
        self._check()
        s = self._stream
        if s is not None and s.connected and s.peer is not None:
            with s.cond:
                if not s.lost or s.eof:
                    return self._sockaddr(s.peer)
        d = self._dgram
        if d is not None and d.peer is not None:
            return self._sockaddr(d.peer)
        raise _oserror(errno.ENOTCONN)

    # --- lifecycle

    def _check(self) -> None:
        if self._real_closed:
            raise _oserror(errno.EBADF)

    def close(self) -> None:
        """As the stdlib: with makefile() objects open, the socket closes when they do."""
        self._closed = True
        if self._io_refs <= 0:
            self._really_close()

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    def _really_close(self) -> None:
        with self._lock:
            if self._real_closed:
                return
            self._real_closed = True
            roles: list[_Stream | _Listener | _Datagram | None] = [
                self._stream,
                self._listener,
                self._dgram,
            ]
            reserved, self._reserved = self._reserved, None
            groups, self._groups = self._groups, []
        for r in roles:
            if r is not None:
                r.close()
        if all(r is None for r in roles):
            self._shared.signal.close()
        net = self._net.network
        thread = self._net.node._thread

        def cleanup() -> None:
            if reserved is not None:
                with contextlib.suppress(OSError):
                    _release_tcp_port(net, reserved)
            for g in groups:
                with contextlib.suppress(OSError):
                    net.stack.leave_group(g)
            if groups:
                net.node.service.flush_soon()

        if reserved is not None or groups:
            with contextlib.suppress(OSError):
                thread.post(cleanup)

    def detach(self) -> int:
        raise _oserror(errno.EOPNOTSUPP, "a ztnode socket has no OS descriptor to detach")

    # --- bind / listen / accept / connect

    def bind(self, address: Any) -> None:
        self._check()
        host, port = self._parse(address, "bind", bind=True)
        with self._lock:
            if self._bound is not None or self._stream is not None or self._dgram is not None:
                raise _oserror(errno.EINVAL, "the socket is already bound")
            if self._type == SOCK_DGRAM:
                self._open_datagram(host, port)
            else:
                v6 = self._family == AF_INET6
                net = self._net.network
                self._reserved = self._net.node._thread.call(
                    lambda: _reserve_tcp_port(net, host, port, v6)
                )
                self._bound = (host, self._reserved)

    def _open_datagram(self, host: str, port: int) -> _Datagram:
        """The UDP endpoint (lock held), bound on first use as Linux autobinds."""
        dg = _Datagram(self._net, self._shared, self._opts)
        net = self._net.network
        fam = 6 if self._family == AF_INET6 else 4

        async def open_endpoint() -> None:
            await net.create_datagram_endpoint(lambda: dg, local_addr=(host, port), family=fam)

        self._net.node._thread.run(open_endpoint())
        self._dgram = dg
        self._bound = dg.local
        with dg.cond:
            dg.refresh()
        return dg

    def _datagram(self) -> _Datagram:
        self._check()
        with self._lock:
            return self._dgram or self._open_datagram("", 0)

    def listen(self, backlog: int = 128) -> None:
        self._check()
        if self._type != SOCK_STREAM:
            raise _oserror(errno.EOPNOTSUPP)
        with self._lock:
            if self._listener is not None:
                self._listener.backlog = backlog
                return
            if self._stream is not None:
                raise _oserror(errno.EINVAL, "the socket is connected")
            lst = _Listener(self._net, self._shared, self._opts)
            lst.backlog = backlog
            host, port = self._bound if self._bound is not None else ("", 0)
            reserved, self._reserved = self._reserved, None
            net = self._net.network
            fam = 6 if self._family == AF_INET6 else 4

            async def start() -> Endpoint:
                if reserved is not None:
                    _release_tcp_port(net, reserved)  # tcp_listen claims it in this same step
                server = await net.create_server(
                    lst.factory, host or None, port, backlog=max(backlog, 1), family=fam
                )
                lst.server = server
                return server.address()

            try:
                lst.local = self._net.node._thread.run(start())
            except BaseException:
                lst.closed = True
                raise
            self._listener = lst
            with lst.cond:
                lst.refresh()

    def accept(self) -> tuple[Socket, Any]:
        self._check()
        lst = self._listener
        if lst is None:
            raise _oserror(errno.EINVAL, "the socket is not listening")
        stream = lst.accept(self._timeout)
        sock = Socket(self._net, self._family, self._type, self._proto, _accepted=stream)
        assert stream.peer is not None
        return sock, self._sockaddr(stream.peer)

    def connect(self, address: Any) -> None:
        self._check()
        host, port = self._parse(address, "connect")
        if self._type == SOCK_DGRAM:
            dg = self._datagram()
            self._net.node._thread.call(lambda: dg.loop_connect(host, port))
            with dg.cond:
                dg.peer = (str(ip_address(host.split("%", 1)[0])), port)
            return
        nonblock = self._timeout == 0.0
        with self._lock:
            if self._listener is not None:
                raise _oserror(errno.EINVAL, "the socket is listening")
            old = self._stream
            if old is not None:
                with old.cond:
                    if old.connecting:
                        raise _oserror(errno.EALREADY)
                    if old.connected:
                        raise _oserror(errno.EISCONN)
                    if old.so_error:
                        old.raise_error_locked()
                    old.closed = True  # a failed attempt: late callbacks must not touch the fd
            stream = _Stream(self._net, self._shared, self._opts)
            self._stream = stream
            local_port = self._bound[1] if self._bound is not None else 0
            reserved, self._reserved = self._reserved, None
            stream.begin_connect(host, port, local_port, reserved is not None)
        if nonblock:
            raise _oserror(errno.EINPROGRESS)
        stream.wait_connected(_deadline(self._timeout))

    def connect_ex(self, address: Any) -> int:
        try:
            self.connect(address)
        except TimeoutError as e:
            return e.errno or errno.EAGAIN  # what CPython's connect_ex reports on a timeout
        except _socket.gaierror:
            raise
        except OSError as e:
            return e.errno or errno.EINVAL
        return 0

    # --- data

    def _tcp(self) -> _Stream:
        self._check()
        if self._type != SOCK_STREAM:
            raise _oserror(errno.EOPNOTSUPP)
        s = self._stream
        if s is None:
            raise _oserror(errno.ENOTCONN)
        return s

    @staticmethod
    def _flags(flags: int, allowed: int) -> int:
        if flags & ~allowed:
            raise _oserror(errno.EOPNOTSUPP, f"flags {flags:#x} are not supported")
        return flags

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        self._flags(flags, _RECV_FLAGS)
        if self._type == SOCK_DGRAM:
            return self._datagram().recv(bufsize, flags, self._timeout)[0]
        s = self._tcp()
        if not flags & _socket.MSG_WAITALL or flags & _socket.MSG_PEEK:
            return s.recv(bufsize, flags, self._timeout)
        deadline = _deadline(self._timeout) if self._timeout else None
        out = bytearray()
        rest = flags & ~_socket.MSG_WAITALL
        while len(out) < bufsize:
            left = self._timeout
            if deadline is not None:
                left = max(deadline - time.monotonic(), 1e-6)
            try:
                chunk = s.recv(bufsize - len(out), rest, left)
            except (TimeoutError, BlockingIOError):
                if out:
                    break
                raise
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if nbytes == 0:
            nbytes = len(view)
        elif nbytes > len(view):
            raise ValueError("buffer too small for requested bytes")
        data = self.recv(nbytes, flags)
        view[: len(data)] = data
        return len(data)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        self._flags(flags, _RECV_FLAGS)
        if self._type == SOCK_DGRAM:
            data, addr = self._datagram().recv(bufsize, flags, self._timeout)
            return data, self._sockaddr(addr)
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        view = memoryview(buffer).cast("B")
        if nbytes == 0:
            nbytes = len(view)
        elif nbytes > len(view):
            raise ValueError("nbytes is greater than the length of the buffer")
        data, addr = self.recvfrom(nbytes, flags)
        view[: len(data)] = data
        return len(data), addr

    def send(self, data: Any, flags: int = 0) -> int:
        self._flags(flags, _SEND_FLAGS)
        view = memoryview(data).cast("B")
        if self._type == SOCK_DGRAM:
            return self._send_datagram(view, None)
        return self._tcp().send(view, flags, self._timeout)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """The timeout bounds the whole call, as in the stdlib since 3.5."""
        self._flags(flags, _SEND_FLAGS)
        view = memoryview(data).cast("B")
        if self._type == SOCK_DGRAM:
            self._send_datagram(view, None)
            return
        s = self._tcp()
        deadline = _deadline(self._timeout) if self._timeout else None
        sent = 0
        while True:
            left = self._timeout
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out")
            sent += s.send(view[sent:], flags, left)
            if sent >= len(view):
                return

    def sendto(self, data: Any, flags_or_address: Any, address: Any = None) -> int:
        if address is None:
            flags, address = 0, flags_or_address
        else:
            flags = int(flags_or_address)
        self._flags(flags, _SEND_FLAGS)
        view = memoryview(data).cast("B")
        if self._type == SOCK_STREAM:
            return self.send(view, flags)  # Linux ignores the address on TCP
        return self._send_datagram(view, self._parse(address, "sendto"))

    def _send_datagram(self, view: memoryview, dest: Endpoint | None) -> int:
        dg = self._datagram()
        if len(view) > _UDP_MAX[self._family]:
            raise _oserror(errno.EMSGSIZE)
        with dg.cond:
            if dg.so_error and dg.peer is not None:
                dg.raise_error_locked()
        payload = bytes(view)
        self._net.node._thread.call(lambda: dg.loop_sendto(payload, dest))
        return len(payload)

    def shutdown(self, how: int) -> None:
        if how not in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
            raise _oserror(errno.EINVAL)
        self._check()
        if self._type == SOCK_DGRAM or self._stream is None:
            raise _oserror(errno.ENOTCONN)
        self._stream.shutdown(how)

    # --- options

    def setsockopt(
        self,
        level: int,
        optname: int,
        value: int | bytes | bytearray | memoryview | None,
        optlen: int | None = None,
    ) -> None:
        self._check()
        key = (level, optname)
        if key in _GROUP_OPTIONS:
            self._membership(key, value)
            return
        if key == (_SOL, _socket.SO_LINGER):
            raw = bytes(cast(bytes, value)) if not isinstance(value, int) else b""
            if len(raw) < 8:
                raise _oserror(errno.EINVAL)
            on, secs = struct.unpack("ii", raw[:8])
            self._opts["linger_on"], self._opts["linger"] = int(bool(on)), max(secs, 0)
            return
        name = _INT_OPTIONS.get(key)
        if name is None or not self._option_applies(level):
            raise _oserror(errno.ENOPROTOOPT)
        v = _int_value(value)
        if name in ("rcvbuf", "sndbuf"):
            v = max(v, _MIN_BUF)
        elif name in ("keepidle", "keepintvl", "keepcnt"):
            if v < 1:
                raise _oserror(errno.EINVAL)
        elif name in ("ttl", "tos", "mcast_ttl"):
            if not 0 <= v <= 255:
                raise _oserror(errno.EINVAL)
        else:
            v = int(bool(v))
        self._opts[name] = v
        s = self._stream
        if name in _TCB_OPTIONS and s is not None and s.connected:
            with contextlib.suppress(OSError):
                s.post(s.loop_apply_options)

    def _option_applies(self, level: int) -> bool:
        if level == _TCP:
            return self._type == SOCK_STREAM
        if level == _IP6:
            return self._family == AF_INET6
        return True

    def _membership(
        self, key: tuple[int, int], value: int | bytes | bytearray | memoryview | None
    ) -> None:
        """IP_ADD_MEMBERSHIP (ip_mreq/ip_mreqn) and IPV6_JOIN_GROUP (ipv6_mreq), and the drops.
        The stack counts joins, so a socket leaves its groups when it closes."""
        if self._type != SOCK_DGRAM:
            raise _oserror(errno.ENOPROTOOPT)
        if isinstance(value, int) or value is None:
            raise _oserror(errno.EINVAL)
        raw = bytes(value)
        group: IPv4Address | IPv6Address
        if key[0] == _IP:
            if len(raw) < 8:
                raise _oserror(errno.EINVAL)
            group = IPv4Address(raw[:4])
        else:
            if len(raw) < 16:
                raise _oserror(errno.EINVAL)
            group = IPv6Address(raw[:16])
        if not group.is_multicast:
            raise _oserror(errno.EINVAL, f"{group} is not a multicast group")
        join = _GROUP_OPTIONS[key]
        net = self._net.network
        with self._lock:
            if join:
                if group in self._groups:
                    raise _oserror(errno.EADDRINUSE)
            elif group not in self._groups:
                raise _oserror(errno.EADDRNOTAVAIL)

            def change() -> None:
                try:
                    if join:
                        net.stack.join_group(group)
                    else:
                        net.stack.leave_group(group)
                except LocalProtocolError as e:
                    raise _oserror(errno.EINVAL, str(e)) from None
                net.node.service.flush_soon()

            self._net.node._thread.call(change)
            if join:
                self._groups.append(group)
            else:
                self._groups.remove(group)

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int | bytes:
        self._check()
        key = (level, optname)
        value: int
        if key == (_SOL, _socket.SO_ERROR):
            role = self._stream or self._listener or self._dgram
            value = role.take_error() if role is not None else 0
        elif key == (_SOL, _socket.SO_TYPE):
            value = int(self._type)
        elif key == (_SOL, _socket.SO_DOMAIN):
            value = int(self._family)
        elif key == (_SOL, _socket.SO_PROTOCOL):
            value = _socket.IPPROTO_TCP if self._type == SOCK_STREAM else _socket.IPPROTO_UDP
        elif key == (_SOL, _socket.SO_ACCEPTCONN):
            value = int(self._listener is not None)
        elif key == (_SOL, _socket.SO_LINGER):
            packed = struct.pack(
                "ii", _option(self._opts, "linger_on"), _option(self._opts, "linger")
            )
            return packed if buflen is None else packed[:buflen].ljust(buflen, b"\0")
        elif key == (_IP6, _socket.IPV6_V6ONLY) and self._family == AF_INET6:
            value = 1
        else:
            name = _INT_OPTIONS.get(key)
            if name is None or not self._option_applies(level):
                raise _oserror(errno.ENOPROTOOPT)
            value = _option(self._opts, name)
        if buflen is None:
            return value
        return struct.pack("i", value)[:buflen].ljust(buflen, b"\0")

    # --- files

    def makefile(
        self,
        mode: str = "r",
        buffering: int | None = None,
        *,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> Any:
        """As ``socket.socket.makefile``, on ``socket.SocketIO`` (which needs only ``recv_into``,
        ``send`` and ``_decref_socketios``): the socket stays open while a file is open."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing = "w" in mode
        reading = "r" in mode or not writing
        binary = "b" in mode
        rawmode = ("r" if reading else "") + ("w" if writing else "")
        raw = _socket.SocketIO(cast(_socket.socket, self), cast(Any, rawmode))
        self._io_refs += 1
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buffer: io.BufferedIOBase
        if reading and writing:
            buffer = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if binary:
            return buffer
        text = io.TextIOWrapper(cast(Any, buffer), encoding, errors, newline)
        text.mode = mode  # type: ignore[misc]
        return text


# ---------------------------------------------------------------------------------------------
# Network and Node
# ---------------------------------------------------------------------------------------------


class BlockingNetwork:
    """A joined network, for threads: its addresses and sockets on it."""

    def __init__(self, node: BlockingNode, network: Network) -> None:
        self.node = node
        self.network = network
        self._roles: weakref.WeakSet[_Role] = weakref.WeakSet()
        self._roles_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<BlockingNetwork {self.id_hex}>"

    def _track(self, role: _Role) -> None:
        with self._roles_lock:
            self._roles.add(role)

    def _gone(self, code: int) -> None:
        with self._roles_lock:
            roles = list(self._roles)
        for r in roles:
            r.gone(code)

    @property
    def id(self) -> int:
        return self.network.id

    @property
    def id_hex(self) -> str:
        return self.network.id_hex

    @property
    def status(self) -> str:
        return self.node._thread.call(lambda: self.network.status)

    @property
    def addresses(self) -> list[IPv4Interface | IPv6Interface]:
        return self.node._thread.call(lambda: list(self.network.addresses))

    @property
    def mac(self) -> str:
        return self.node._thread.call(lambda: self.network.mac)

    def address(self, family: int = 4) -> str:
        """Our first address of the family on this network: 4 or AF_INET, 6 or AF_INET6."""
        fam = 6 if family in (6, AF_INET6) else 4
        return self.node._thread.call(lambda: self.network.address(fam))

    def wait_ready(self, timeout: float | None = 60.0) -> None:
        self.node._thread.run(self.network.wait_ready(timeout))

    def socket(self, family: int = AF_INET, type: int = SOCK_STREAM, proto: int = 0) -> Socket:
        """Like ``socket.socket(family, type, proto)``, on this network."""
        return Socket(self, family, type, proto)

    def create_connection(
        self,
        address: tuple[str, int],
        timeout: float | object | None = _GLOBAL_DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
        *,
        all_errors: bool = False,
    ) -> Socket:
        """Like ``socket.create_connection``; ``HTTPConnection._create_connection`` can be set
        to it so that ``http.client`` runs over this network."""
        host = address[0]
        family = AF_INET6 if ":" in host else AF_INET
        sock = self.socket(family, SOCK_STREAM)
        try:
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(cast(float | None, timeout))
            if source_address is not None:
                sock.bind(source_address)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock

    def create_server(
        self,
        address: tuple[str, int],
        *,
        family: int = AF_INET,
        backlog: int | None = None,
        reuse_port: bool = False,
    ) -> Socket:
        """Like ``socket.create_server``: a bound, listening TCP socket."""
        sock = self.socket(family, SOCK_STREAM)
        try:
            sock.setsockopt(_SOL, _socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(_SOL, _socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(128 if backlog is None else backlog)
        except BaseException:
            sock.close()
            raise
        return sock

    def ping(self, host: str, timeout: float = 2.0) -> float:
        """One ICMP echo; the round trip in seconds, or TimeoutError."""
        return self.node._thread.run(self.network.ping(host, timeout=timeout))


class BlockingNode:
    """A ZeroTier node for programs without asyncio: the asyncio :class:`Node` on an event loop
    in a background thread. Arguments are :class:`~ztnode.sockets.aio.Node`'s."""

    def __init__(
        self,
        home: str | os.PathLike[str],
        *,
        port: int = 0,
        planet: World | bytes | str | os.PathLike[str] | None = None,
        allow_loopback: bool = False,
        bind: Iterable[str] = ("0.0.0.0",),
        controller: bool = False,
        sockets: Iterable[_socket.socket] = (),
        identity_validation_interval: int | None = None,
    ) -> None:
        node = Node(
            home,
            port=port,
            planet=planet,
            allow_loopback=allow_loopback,
            bind=bind,
            controller=controller,
            sockets=sockets,
            identity_validation_interval=identity_validation_interval,
        )
        self._setup(node, LoopThread(f"ztnode-{os.fspath(home)}"), owns_thread=True)

    def _setup(self, node: Node, thread: LoopThread, *, owns_thread: bool) -> None:
        self.node = node
        self._thread = thread
        self._owns_thread = owns_thread
        self._networks: dict[int, BlockingNetwork] = {}
        self._started = False

    @classmethod
    def adopt(cls, node: Node, thread: LoopThread) -> BlockingNode:
        """The blocking view of a started asyncio node whose loop already runs in ``thread``
        (several nodes can share one loop thread); :meth:`detach` before stopping the node."""
        self = cls.__new__(cls)
        self._setup(node, thread, owns_thread=False)
        self._started = True
        return self

    def __repr__(self) -> str:
        return f"<BlockingNode {self.node.service.config.home}>"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The node's event loop, for asyncio code that runs beside blocking sockets."""
        return self._thread.loop

    # lifecycle

    def start(self, timeout: float | None = None) -> BlockingNode:
        if self._started:
            return self
        self._thread.start()
        try:
            self._thread.run(self.node.start(), timeout)
        except BaseException:
            if self._owns_thread:
                self._thread.stop()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        """Stop the node; its sockets' pending and later calls fail with ECONNABORTED."""
        if not self._started:
            return
        self.detach()
        try:
            with contextlib.suppress(OSError):
                self._thread.run(self.node.stop())
        finally:
            if self._owns_thread:
                self._thread.stop()

    def detach(self) -> None:
        """Fail this view's sockets' pending and later calls with ECONNABORTED without stopping
        the asyncio node (for an adopted node, whose owner stops it)."""
        self._started = False
        for net in list(self._networks.values()):
            net._gone(errno.ECONNABORTED)

    def __enter__(self) -> BlockingNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the node's loop (for example an asyncio server on a network)."""
        return self._thread.run(coro, timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run a function on the node's loop thread, where the asyncio objects live."""
        return self._thread.call(fn)

    # state

    @property
    def address(self) -> str:
        return self._thread.call(lambda: self.node.address)

    @property
    def online(self) -> bool:
        return self._thread.call(lambda: self.node.online)

    @property
    def port(self) -> int:
        return self._thread.call(lambda: self.node.port)

    def wait_online(self, timeout: float = 30.0) -> None:
        self._thread.run(self.node.wait_online(timeout))

    def join(
        self, network_id: int | str, *, timeout: float | None = 60.0, wait: bool = True
    ) -> BlockingNetwork:
        """Join a network; with ``wait``, return once it is OK and has its addresses."""
        net = self._thread.run(self.node.join(network_id, timeout=timeout, wait=wait))
        return self.wrap(net)

    def wrap(self, net: Network) -> BlockingNetwork:
        """The blocking view of one of this node's asyncio networks (one view per network)."""
        wrapped = self._networks.get(net.id)
        if wrapped is None or wrapped.network is not net:
            wrapped = self._networks[net.id] = BlockingNetwork(self, net)
        return wrapped

    def leave(self, network_id: int | str) -> bool:
        net = self.network(network_id)
        if net is not None:
            net._gone(errno.ENETDOWN)
            self._networks.pop(net.id, None)
        return self._thread.run(self.node.leave(network_id))

    def network(self, network_id: int | str) -> BlockingNetwork | None:
        net = self._thread.call(lambda: self.node.network(network_id))
        return self.wrap(net) if net is not None else None

    @property
    def networks(self) -> list[BlockingNetwork]:
        return [self.wrap(n) for n in self._thread.call(lambda: self.node.networks)]
