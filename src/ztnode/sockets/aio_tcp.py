"""TCP for asyncio on a ZeroTier network: the stream transport and the server.

Each transport is a thin shell around a sans-I/O socket handle of :mod:`ztnode.netstack.stack`:
calls change the handle's state and ask the service to flush (once per loop iteration, however
many calls), and the stack's events come back through ``tcp_event``.

Flow control follows asyncio's contract: ``write`` never blocks; what the TCP send buffer
cannot take waits in the transport, and past the high-water mark the protocol is paused
(``StreamWriter.drain`` waits). ``pause_reading`` stops taking data out of the TCP receive
buffer, so the advertised window closes and the peer slows down: backpressure end to end.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from ztnode.errors import LocalProtocolError
from ztnode.netstack import tcp as tcb
from ztnode.netstack.stack import TcpListener, TcpSocket
from ztnode.sockets.addresses import sockaddr
from ztnode.sockets.tls import TlsOptions, log_failed_handshake, route_start_tls

if TYPE_CHECKING:
    from ztnode.sockets.aio import Network

log = logging.getLogger("ztnode.sockets")
#: Looked up once: an attribute of the asyncio module is a dictionary lookup per use here.
_BUFFERED: Final = asyncio.BufferedProtocol

__all__ = ["ListeningSocket", "TcpServer"]

_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024


class _Connecting:
    """Stands in for the transport until the handshake ends; its errors name the address, as
    the kernel's messages do not but every user wants."""

    def __init__(self, loop: asyncio.AbstractEventLoop, remote: tuple[str, int]) -> None:
        self.future: asyncio.Future[None] = loop.create_future()
        self._to = f"{remote[0]} port {remote[1]}"

    def tcp_event(self, e: tcb.TcpEvent) -> None:
        if self.future.done():
            return
        if isinstance(e, tcb.ConnectedEvent):
            self.future.set_result(None)
        elif isinstance(e, tcb.ConnectionResetEvent):
            self.future.set_exception(
                ConnectionRefusedError(errno.ECONNREFUSED, f"connection to {self._to} refused")
            )
        elif isinstance(e, tcb.TimedOutEvent):
            self.future.set_exception(
                TimeoutError(errno.ETIMEDOUT, f"connection to {self._to} timed out")
            )
        elif isinstance(e, tcb.HostUnreachableEvent):
            self.future.set_exception(
                OSError(
                    errno.EHOSTUNREACH,
                    f"connecting to {self._to}: no host answers at that address "
                    "(address resolution failed)",
                )
            )
        elif isinstance(e, tcb.ClosedEvent):
            self.future.set_exception(
                ConnectionAbortedError(errno.ECONNABORTED, f"connection to {self._to} aborted")
            )


def _is_ours(transport: asyncio.BaseTransport) -> bool:
    return isinstance(transport, _TcpTransport)


class _TcpTransport(asyncio.Transport):
    """A stream transport for ``Protocol`` and ``BufferedProtocol`` alike; TLS runs over it
    (``loop.start_tls`` accepts it, on uvloop too: see :mod:`ztnode.sockets.tls`)."""

    _start_tls_compatible = True

    def __init__(self, net: Network, sock: TcpSocket, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self._net = net
        self._service = net.node.service
        self._sock = sock
        self._protocol: asyncio.BaseProtocol = protocol
        self._buf = bytearray()
        self._reading = True
        self._closing = False
        self._eof_sent = False
        self._eof_pending = False
        self._eof_delivered = False
        self._lost = False
        self._write_paused = False
        self._high = _HIGH_WATER
        self._low = _LOW_WATER
        sock.user = self
        net._transports.add(self)
        route_start_tls(asyncio.get_running_loop(), _is_ours)

    # --- asyncio.BaseTransport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return sockaddr(self._sock.remote_endpoint)
        if name == "sockname":
            return sockaddr(self._sock.local_endpoint)
        if name == "ztnode_socket":
            return self._sock
        if name == "socket":
            return ConnectedSocket(self._sock)
        if name == "network":
            return self._net
        return default

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        if self._closing or self._lost:
            return
        self._closing = True
        if not self._buf:
            self._finish_close()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # --- reading

    def is_reading(self) -> bool:
        return self._reading and not self._lost

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            asyncio.get_running_loop().call_soon(self.read_ready)

    def read_ready(self) -> None:
        """Hand buffered data (and then EOF) to the protocol while reading is on."""
        if self._lost or not self._reading:
            return
        sock = self._sock
        proto = self._protocol
        if isinstance(proto, _BUFFERED):
            while self._reading and not self._lost and self._protocol is proto:
                buf = memoryview(proto.get_buffer(-1)).cast("B")
                if not len(buf):
                    raise RuntimeError("get_buffer() returned an empty buffer")
                data = sock.recv(len(buf))
                if not data:
                    break
                buf[: len(data)] = data
                proto.buffer_updated(len(data))
        else:
            assert isinstance(proto, asyncio.Protocol)
            while self._reading and not self._lost and self._protocol is proto:
                data = sock.recv(1 << 20)
                if not data:
                    break
                proto.data_received(data)
        proto = self._protocol
        if sock.needs_flush:
            self._service.flush_soon()  # reading opened the window: announce it
        if self._reading and not self._lost and sock.conn.at_eof and not self._eof_delivered:
            self._eof_delivered = True
            assert isinstance(proto, asyncio.Protocol | asyncio.BufferedProtocol)
            keep_open = proto.eof_received()
            if not keep_open:
                self.close()

    # --- writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_sent or self._eof_pending:
            raise RuntimeError("write() after write_eof()")
        if self._lost or self._closing:
            return  # as asyncio's transports do after close
        if not data:
            return
        if self._buf:
            self._buf += data
        else:
            n = self._send(data)
            if n < len(data):
                self._buf += memoryview(data)[n:]
            self._service.flush_soon()
        self._check_high()

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(lines))

    def write_eof(self) -> None:
        if self._eof_sent or self._eof_pending or self._lost:
            return
        if self._buf:
            self._eof_pending = True
        else:
            self._send_fin()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return len(self._buf)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = _HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._check_high()

    def abort(self) -> None:
        if self._lost:
            return
        self._sock.abort(self._net.node._now())
        self._service.flush_soon()
        self._lose(None)

    def _force_close(self, exc: BaseException | None) -> None:
        """Abort with ``exc`` for the protocol: what asyncio's TLS protocol calls on a fatal
        error (the name of the selector transports' method)."""
        if self._lost:
            return
        self._sock.abort(self._net.node._now())
        self._service.flush_soon()
        self._lose(exc if isinstance(exc, Exception) else None)

    # --- events from the stack

    def tcp_event(self, e: tcb.TcpEvent) -> None:
        if self._lost:
            return
        # Two tests, not ``A | B``: a union is built anew on every call in compiled code.
        if isinstance(e, tcb.DataAvailableEvent) or isinstance(e, tcb.PeerClosedEvent):  # noqa: SIM101
            self.read_ready()
        elif isinstance(e, tcb.WritableEvent):
            self._push()
        elif isinstance(e, tcb.ConnectionResetEvent):
            self._lose(ConnectionResetError(errno.ECONNRESET, "connection reset by peer"))
        elif isinstance(e, tcb.TimedOutEvent):
            self._lose(TimeoutError(errno.ETIMEDOUT, "connection timed out"))
        elif isinstance(e, tcb.ClosedEvent):
            self._lose(None)

    # --- internals

    def _send(self, data: bytes | bytearray | memoryview) -> int:
        """Into the TCP send buffer. A connection that ended under us (a reset whose event
        is still on its way) takes nothing more: the bytes are dropped, as a kernel socket's
        are after a reset, and the protocol hears of the end from that event."""
        try:
            return self._sock.send(data)
        except LocalProtocolError:
            return len(data)

    def _push(self) -> None:
        if self._buf:
            n = self._send(self._buf)
            if n:
                del self._buf[:n]
                self._service.flush_soon()
        if not self._buf:
            if self._eof_pending:
                self._eof_pending = False
                self._send_fin()
            if self._closing:
                self._finish_close()
        if self._write_paused and len(self._buf) <= self._low:
            self._write_paused = False
            proto = self._protocol
            try:
                proto.resume_writing()
            except Exception:
                log.exception("protocol.resume_writing() failed")

    def _check_high(self) -> None:
        if not self._write_paused and len(self._buf) > self._high:
            self._write_paused = True
            try:
                self._protocol.pause_writing()
            except Exception:
                log.exception("protocol.pause_writing() failed")

    def _send_fin(self) -> None:
        self._eof_sent = True
        if self._sock.state in (tcb.TcpState.ESTABLISHED, tcb.TcpState.CLOSE_WAIT):
            self._sock.shutdown(self._net.node._now())
            self._service.flush_soon()

    def _finish_close(self) -> None:
        if self._sock.state is not tcb.TcpState.CLOSED:
            self._sock.close(self._net.node._now())
            self._service.flush_soon()
        self._lose(None)

    def _lose(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._net._transports.discard(self)
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, exc)


class ListeningSocket:
    """What :attr:`TcpServer.sockets` lists, as asyncio lists its ``TransportSocket``
    objects: enough of a socket for code that asks where a server listens."""

    type = socket.SOCK_STREAM
    proto = socket.IPPROTO_TCP

    def __init__(self, listener: TcpListener) -> None:
        self._listener = listener

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if self._listener.ipv6 else socket.AF_INET

    def getsockname(self) -> tuple[str, int] | tuple[str, int, int, int]:
        return sockaddr(self._listener.local_endpoint)

    def fileno(self) -> int:
        return -1  # no OS descriptor: the socket lives in ztnode's stack

    def __repr__(self) -> str:
        return f"<ztnode.ListeningSocket {self.family.name} {self.getsockname()}>"


class ConnectedSocket:
    """``get_extra_info("socket")`` of a connection, as asyncio gives a ``TransportSocket``:
    the addresses and kind, for code (uvicorn's, for one) that reads the peer from it; there is
    no OS descriptor to read or write."""

    type = socket.SOCK_STREAM
    proto = socket.IPPROTO_TCP

    def __init__(self, sock: TcpSocket) -> None:
        self._sock = sock

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self._sock.local_endpoint[0] else socket.AF_INET

    def getpeername(self) -> tuple[str, int] | tuple[str, int, int, int]:
        return sockaddr(self._sock.remote_endpoint)

    def getsockname(self) -> tuple[str, int] | tuple[str, int, int, int]:
        return sockaddr(self._sock.local_endpoint)

    def fileno(self) -> int:
        return -1

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        """TCP_NODELAY and SO_KEEPALIVE reach the connection (what aiohttp and others set
        through this object); any other option is ENOPROTOOPT, as for an unknown option."""
        on = bool(int.from_bytes(value, "little") if isinstance(value, bytes) else value)
        if (level, option) == (socket.IPPROTO_TCP, socket.TCP_NODELAY):
            self._sock.set_nodelay(on)
        elif (level, option) == (socket.SOL_SOCKET, socket.SO_KEEPALIVE):
            self._sock.set_keepalive(on)
        else:
            raise OSError(errno.ENOPROTOOPT, "option not available on a ztnode connection")

    def __repr__(self) -> str:
        return f"<ztnode.ConnectedSocket {self.getsockname()} -> {self.getpeername()}>"


class TcpServer(asyncio.AbstractServer):
    """Listening sockets on a network (``asyncio.Server``'s interface): one per address
    family it serves (IPv4, IPv6, or both on the same port)."""

    def __init__(
        self,
        net: Network,
        listeners: list[TcpListener],
        factory: Callable[[], asyncio.BaseProtocol],
        tls: TlsOptions | None = None,
    ) -> None:
        self._net = net
        self._listeners = listeners
        self._factory = factory
        self._tls = tls
        self._closed = asyncio.get_running_loop().create_future()
        for lst in listeners:
            lst.user = self
        net._transports.add(self)

    @property
    def port(self) -> int:
        return self._listeners[0].port

    @property
    def sockets(self) -> tuple[ListeningSocket, ...]:
        """As ``asyncio.Server.sockets``: one socket-like object per listening address."""
        return tuple(ListeningSocket(lst) for lst in self._listeners)

    def address(self) -> tuple[str, int]:
        return self._listeners[0].local_endpoint

    def addresses(self) -> list[tuple[str, int]]:
        return [lst.local_endpoint for lst in self._listeners]

    def accept_ready(self) -> None:
        for lst in self._listeners:
            while (sock := lst.accept()) is not None:
                try:
                    protocol = self._factory()
                except Exception:
                    log.exception("server protocol factory failed")
                    sock.abort(self._net.node._now())
                    continue
                if self._tls is None:
                    transport = _TcpTransport(self._net, sock, protocol)
                    protocol.connection_made(transport)
                else:  # the protocol meets its client when the handshake is done
                    tls_proto, waiter = self._tls.wrap(protocol)
                    waiter.add_done_callback(log_failed_handshake)
                    transport = _TcpTransport(self._net, sock, tls_proto)
                    tls_proto.connection_made(transport)
                transport.read_ready()
        self._net.node.service.flush_soon()

    def close(self) -> None:
        if all(lst.closed for lst in self._listeners):
            return
        for lst in self._listeners:
            lst.close(self._net.node._now())
        self._net._transports.discard(self)
        self._net.node.service.flush_soon()
        if not self._closed.done():
            self._closed.set_result(None)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._closed.get_loop()

    def is_serving(self) -> bool:
        return not all(lst.closed for lst in self._listeners)

    async def start_serving(self) -> None:
        return None

    async def serve_forever(self) -> None:
        await asyncio.shield(self._closed)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    async def __aenter__(self) -> TcpServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()
