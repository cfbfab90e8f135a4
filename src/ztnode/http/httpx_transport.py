"""httpx on the overlay: ``httpx.AsyncClient(transport=AsyncZtTransport(node))`` and
``httpx.Client(transport=ZtTransport(blocking_node))``.

Why a transport with a network backend of ours: httpx hands requests to httpcore, whose
connection pool opens every connection through a *network backend* (``connect_tcp`` returns a
stream with ``read``, ``write`` and ``start_tls``). Replacing that one piece keeps the rest
httpx's and httpcore's: pooling and keep-alive, HTTP/1.1 and HTTP/2, ``verify``/``cert``,
retries, timeouts, limits, proxies. Each connection is routed by its host: the node's
``lookup`` names the network and the addresses (an IP literal a network routes, an overlay
name); any other host goes to httpcore's own backend, kernel sockets, unless ``overlay_only``.

httpx's transports build their pool with no way to name a backend, so these set it on the pool
httpx built (``_network_backend``, where httpcore's pools and proxies keep it); the tests run
against the httpx and httpcore that CI installs (the ``http`` extra).

Timeouts follow each side's kernel backend: the asyncio one bounds the whole connect (lookup
and every address) by the connect timeout, as httpcore's anyio backend does; the blocking one
gives each address the whole timeout, as ``socket.create_connection`` does for httpcore's sync
backend. The asyncio transport must be used on the node's event loop; the blocking one from
any thread but the node's loop thread.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import httpcore
import httpx

from ztnode.http._routing import (
    SocketOption,
    connect_blocking,
    lookup_blocking,
    not_on_overlay,
    unbracket,
)

if TYPE_CHECKING:
    from ztnode.sockets.aio import Network, Node
    from ztnode.sockets.blocking.facade import Socket
    from ztnode.sockets.blocking.node import BlockingNode
    from ztnode.sockets.blocking.tls import TlsSocket

__all__ = [
    "AsyncZtBackend",
    "AsyncZtTransport",
    "ZtBackend",
    "ZtTransport",
    "async_transport",
    "transport",
]

_T = TypeVar("_T")
_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
# Received bytes kept before the connection's window is closed (reading paused), and the
# level at which it opens again: enough for a few TLS records between httpcore's reads.
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024


# ---------------------------------------------------------------------------------------------
# asyncio
# ---------------------------------------------------------------------------------------------


class _Pipe(asyncio.Protocol):
    """The protocol under one overlay connection: what arrived, waiting for httpcore's next
    ``read``, with flow control both ways (a slow reader closes the TCP window; a slow peer
    makes ``write`` wait). It stays the protocol after ``start_tls``: asyncio's TLS delivers
    the plaintext to it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._lost = False
        self._error: BaseException | None = None
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._writing_paused = False

    # the transport's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._wake()
        if len(self._buffer) > _HIGH_WATER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake()
        return None  # close our side too: HTTP has nothing to say after the server's EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = self._eof = True
        self._error = exc
        self._writing_paused = False
        self._wake()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake()

    def _wake(self) -> None:
        for waiter in (self._read_waiter, self._drain_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    # httpcore's side

    @property
    def readable(self) -> bool:
        """Whether a read would return at once: data, EOF or an error waits (httpcore asks
        this of idle connections to tell a server that closed them)."""
        return bool(self._buffer) or self._eof

    async def read(self, max_bytes: int) -> bytes:
        while not self._buffer:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._read_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        if self._reading_paused and len(self._buffer) <= _LOW_WATER and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def write(self, data: bytes) -> None:
        transport = self.transport
        if self._lost or transport is None or transport.is_closing():
            raise self._error or ConnectionResetError("the connection is closed")
        transport.write(data)
        while self._writing_paused and not self._lost:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
        if self._lost and self._error is not None:
            raise self._error


async def _bounded(
    work: Awaitable[_T],
    timeout: float | None,
    on_timeout: type[httpcore.TimeoutException],
    on_error: type[httpcore.NetworkError],
    what: str,
) -> _T:
    """``work`` within ``timeout``, its failures as httpcore's exceptions (which httpx maps to
    its own): the timeout as ``on_timeout``, any OSError (TLS errors and ``gaierror``
    included) as ``on_error``."""
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            return await work
    except OSError as exc:
        if isinstance(exc, TimeoutError) and scope.expired():
            raise on_timeout(f"{what}: timed out after {timeout} s") from None
        raise on_error(f"{what}: {exc}") from exc


class _AsyncOverlayStream(httpcore.AsyncNetworkStream):
    """One overlay connection as httpcore reads and writes it."""

    def __init__(self, network: Network, pipe: _Pipe, transport: asyncio.Transport) -> None:
        self.network = network
        self._pipe = pipe
        self._transport = transport
        self._peer = transport.get_extra_info("peername")

    def _where(self) -> str:
        peer = self._peer
        return f"{peer[0]} port {peer[1]}" if peer else "overlay connection"

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await _bounded(
            self._pipe.read(max_bytes),
            timeout,
            httpcore.ReadTimeout,
            httpcore.ReadError,
            f"reading from {self._where()}",
        )

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        await _bounded(
            self._pipe.write(buffer),
            timeout,
            httpcore.WriteTimeout,
            httpcore.WriteError,
            f"writing to {self._where()}",
        )

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """TLS over this connection by asyncio's own TLS (``loop.start_tls``): the stdlib's
        handshake, certificate checks and errors, as on a kernel socket."""
        loop = asyncio.get_running_loop()
        try:
            tls = await _bounded(
                loop.start_tls(
                    self._transport, self._pipe, ssl_context, server_hostname=server_hostname
                ),
                timeout,
                httpcore.ConnectTimeout,
                httpcore.ConnectError,
                f"TLS handshake with {self._where()}",
            )
        except BaseException:
            self._transport.abort()
            raise
        if tls is None:  # the connection closed during the handshake
            raise httpcore.ConnectError(f"TLS handshake with {self._where()}: connection closed")
        self._pipe.transport = tls
        return _AsyncOverlayStream(self.network, self._pipe, tls)

    def get_extra_info(self, info: str) -> Any:
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "is_readable":
            return self._pipe.readable
        if info == "network":
            return self.network
        # ssl_object, peername, sockname, ztnode_socket... as the transport has them; there is
        # no OS socket ("socket" is None).
        return self._transport.get_extra_info(info)


class AsyncZtBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend over an asyncio :class:`~ztnode.sockets.aio.Node`: overlay
    hosts through the node, others through ``fallback`` (httpcore's anyio backend, kernel
    sockets, when None) unless ``overlay_only``."""

    def __init__(
        self,
        node: Node,
        *,
        overlay_only: bool = False,
        fallback: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.node = node
        self.overlay_only = overlay_only
        self.fallback = fallback if fallback is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """The overlay when ``lookup`` places ``host`` there (``local_address`` and
        ``socket_options`` are the kernel's and do not apply; TCP_NODELAY is set, as httpcore
        sets it); the fallback otherwise."""
        host = unbracket(host)
        stream = await _bounded(
            self._connect_overlay(host, port),
            timeout,
            httpcore.ConnectTimeout,
            httpcore.ConnectError,
            f"connecting to {host} port {port}",
        )
        if stream is not None:
            return stream
        if self.overlay_only:
            raise httpcore.ConnectError(str(not_on_overlay(host, self.node.address)))
        return await self.fallback.connect_tcp(
            host,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def _connect_overlay(self, host: str, port: int) -> _AsyncOverlayStream | None:
        """A stream to the first of the host's overlay addresses that accepts; None when the
        host is not on the overlay; the first failure when no address accepts."""
        targets = await self.node.lookup(host)
        errors: list[OSError] = []
        for net, ip in targets:
            try:
                transport, pipe = await net.create_connection(_Pipe, ip, port)
            except OSError as exc:
                errors.append(exc)
                continue
            assert isinstance(transport, asyncio.Transport) and isinstance(pipe, _Pipe)
            handle = transport.get_extra_info("ztnode_socket")
            if handle is not None:
                handle.set_nodelay(True)
            return _AsyncOverlayStream(net, pipe, transport)
        if errors:
            raise errors[0]
        return None

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Unix sockets are the machine's own: the fallback's."""
        return await self.fallback.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AsyncZtTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose connections go through ``node`` for overlay hosts
    (module docstring). The keyword arguments are httpx's (``verify``, ``cert``, ``http1``,
    ``http2``, ``limits``, ``retries``, ``proxy``...); a proxy is reached the same way, so a
    proxy on the overlay works too."""

    def __init__(self, node: Node, *, overlay_only: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend = AsyncZtBackend(node, overlay_only=overlay_only)
        _set_backend(self._pool, self.backend)


def async_transport(node: Node, **kwargs: Any) -> AsyncZtTransport:
    """:class:`AsyncZtTransport` for ``node`` (``httpx.AsyncClient(transport=...)``)."""
    return AsyncZtTransport(node, **kwargs)


# ---------------------------------------------------------------------------------------------
# blocking
# ---------------------------------------------------------------------------------------------


class _BlockingOverlayStream(httpcore.NetworkStream):
    """One overlay connection (a ztnode socket, or the TLS socket over it) as httpcore's sync
    side reads and writes it; errors mapped as httpcore's own sync backend maps the kernel's."""

    def __init__(self, sock: Socket | TlsSocket) -> None:
        self._sock = sock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            self._sock.settimeout(timeout)
            return self._sock.recv(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(f"reading from {self._where()}: {exc}") from exc
        except OSError as exc:
            raise httpcore.ReadError(f"reading from {self._where()}: {exc}") from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._sock.settimeout(timeout)
            self._sock.sendall(buffer)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(f"writing to {self._where()}: {exc}") from exc
        except OSError as exc:
            raise httpcore.WriteError(f"writing to {self._where()}: {exc}") from exc

    def close(self) -> None:
        self._sock.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        """``ssl_context.wrap_socket`` over the ztnode socket (it takes them: see
        :mod:`ztnode.sockets.blocking.tls`)."""
        where = self._where()
        try:
            self._sock.settimeout(timeout)
            # wrap_socket takes ztnode sockets and returns a TlsSocket for them.
            wrapped = ssl_context.wrap_socket(
                cast(socket.socket, self._sock), server_hostname=server_hostname
            )
        except TimeoutError as exc:
            self._sock.close()
            raise httpcore.ConnectTimeout(f"TLS handshake with {where}: {exc}") from exc
        except OSError as exc:
            self._sock.close()
            raise httpcore.ConnectError(f"TLS handshake with {where}: {exc}") from exc
        return _BlockingOverlayStream(cast("TlsSocket", wrapped))

    def _where(self) -> str:
        try:
            peer = self._sock.getpeername()
        except OSError:
            return "overlay connection"
        return f"{peer[0]} port {peer[1]}"

    def get_extra_info(self, info: str) -> Any:
        sock = self._sock
        if info == "ssl_object":
            # The TLS socket has SSLObject's methods (selected_alpn_protocol, version,
            # getpeercert...), which is what httpcore asks of it.
            return sock if hasattr(sock, "selected_alpn_protocol") else None
        if info == "client_addr":
            return sock.getsockname()
        if info == "server_addr":
            return sock.getpeername()
        if info == "socket":
            return sock
        if info == "network":
            return sock.network
        if info == "is_readable":
            return self._readable()
        return None

    def _readable(self) -> bool:
        """As httpcore's ``is_socket_readable``: the readiness descriptor polled at once (TLS
        bytes already decrypted count too)."""
        pending = getattr(self._sock, "pending", None)
        if pending is not None and pending() > 0:
            return True
        fd = self._sock.fileno()
        if fd < 0:
            return True
        ready, _, _ = select.select([fd], [], [], 0)
        return bool(ready)


class ZtBackend(httpcore.NetworkBackend):
    """httpcore's sync network backend over a
    :class:`~ztnode.sockets.blocking.BlockingNode`: overlay hosts through the node's blocking
    sockets, others through ``fallback`` (httpcore's sync backend, kernel sockets, when None)
    unless ``overlay_only``."""

    def __init__(
        self,
        node: BlockingNode,
        *,
        overlay_only: bool = False,
        fallback: httpcore.NetworkBackend | None = None,
    ) -> None:
        self.node = node
        self.overlay_only = overlay_only
        self.fallback = fallback if fallback is not None else httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        host = unbracket(host)
        try:
            targets = lookup_blocking(self.node, host)
        except OSError as exc:
            raise httpcore.ConnectError(f"connecting to {host} port {port}: {exc}") from exc
        if not targets:
            if self.overlay_only:
                raise httpcore.ConnectError(str(not_on_overlay(host, self.node.address)))
            return self.fallback.connect_tcp(
                host,
                port,
                timeout=timeout,
                local_address=local_address,
                socket_options=socket_options,
            )
        options = [*(socket_options or ()), _NODELAY]
        source = (local_address, 0) if local_address is not None else None
        try:
            sock = connect_blocking(
                targets, port, timeout, source_address=source, socket_options=options
            )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"connecting to {host} port {port}: {exc}") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"connecting to {host} port {port}: {exc}") from exc
        return _BlockingOverlayStream(sock)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        return self.fallback.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )


class ZtTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connections go through ``node`` (a
    :class:`~ztnode.sockets.blocking.BlockingNode`) for overlay hosts; keyword arguments as
    httpx's."""

    def __init__(self, node: BlockingNode, *, overlay_only: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend = ZtBackend(node, overlay_only=overlay_only)
        _set_backend(self._pool, self.backend)


def transport(node: BlockingNode, **kwargs: Any) -> ZtTransport:
    """:class:`ZtTransport` for ``node`` (``httpx.Client(transport=...)``)."""
    return ZtTransport(node, **kwargs)


def _set_backend(pool: object, backend: object) -> None:
    """Give the pool httpx built our backend (module docstring); an httpcore that keeps it
    elsewhere fails here, loudly, instead of sending requests through the kernel."""
    if not hasattr(pool, "_network_backend"):
        raise RuntimeError(
            f"httpcore {httpcore.__version__}'s {type(pool).__name__} keeps no "
            "_network_backend: this httpcore is not one ztnode.http supports"
        )
    pool._network_backend = backend
