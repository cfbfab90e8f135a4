"""What a socket is once it has a role: a stream (connected TCP), a listener, or a datagram
socket; each is the asyncio side (protocol callbacks in the loop thread) and the caller's side
(blocking and non-blocking calls) of one connection."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import socket as _socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ztnode.netstack.stack import TcpSocket, UdpSocket
from ztnode.sockets.aio import Network, TcpServer
from ztnode.sockets.blocking.common import Endpoint, _deadline, _errno_of, _oserror, _wait
from ztnode.sockets.blocking.options import _option
from ztnode.sockets.blocking.signals import _Shared

if TYPE_CHECKING:
    from ztnode.sockets.blocking.node import BlockingNetwork


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
    recorded but cannot bound them: the stack's backlog bounds the connections aio's server
    has not taken yet, which its eager accept keeps near none."""

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
