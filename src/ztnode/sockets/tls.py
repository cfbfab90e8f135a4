"""TLS on ztnode's asyncio TCP transports, by the standard library's own TLS protocol.

Why this way: asyncio's TLS (``asyncio.sslproto.SSLProtocol``) is a protocol that sits between
any stream transport and the application's protocol, reading through the buffered-protocol
interface and writing with ``transport.write``. Our transports provide exactly that interface,
so the stdlib's TLS runs on them unchanged: the same handshake, certificate checks, timeouts,
shutdown and error messages as on a kernel socket, and ``loop.start_tls`` /
``StreamWriter.start_tls`` work too. This module holds asyncio's argument rules (which
combinations of ``ssl``, ``server_hostname`` and the timeouts are allowed) and builds the
wrapping protocol, so the connect and accept paths share them.

Other event loops: asyncio's own ``loop.start_tls`` takes any transport that says it can carry
TLS (``_start_tls_compatible``), but uvloop's takes only its own transports and raises
TypeError for ours. :func:`route_start_tls` therefore gives such a loop (only a loop that is not
asyncio's, once) a ``start_tls`` that runs :func:`start_tls` for ztnode's transports and hands
every other transport to the loop's own, so ``StreamWriter.start_tls`` and ``loop.start_tls``
work on the overlay under uvloop as under asyncio.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from asyncio import sslproto
from collections.abc import Callable
from typing import Any, cast

log = logging.getLogger("ztnode.sockets")

__all__ = ["TlsOptions", "client_options", "route_start_tls", "server_options", "start_tls"]

SslArg = _ssl.SSLContext | bool | None


class TlsOptions:
    """What one connection's TLS needs: the context, the name to check, the timeouts."""

    __slots__ = (
        "context",
        "handshake_timeout",
        "server_hostname",
        "server_side",
        "shutdown_timeout",
    )

    def __init__(
        self,
        context: _ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        handshake_timeout: float | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        self.context = context
        self.server_side = server_side
        self.server_hostname = server_hostname
        self.handshake_timeout = handshake_timeout
        self.shutdown_timeout = shutdown_timeout

    def wrap(
        self, app_protocol: asyncio.BaseProtocol, *, call_connection_made: bool = True
    ) -> tuple[sslproto.SSLProtocol, asyncio.Future[None]]:
        """The TLS protocol to give the transport, and the future its handshake completes
        (the application protocol's ``connection_made`` is called then, with the TLS
        transport, unless ``call_connection_made`` is False: an upgrade of a connection the
        protocol already has)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        # Timeouts are floats in asyncio's own signatures (typeshed says int here).
        timeouts: dict[str, Any] = {
            "ssl_handshake_timeout": self.handshake_timeout,
            "ssl_shutdown_timeout": self.shutdown_timeout,
        }
        proto = sslproto.SSLProtocol(
            loop,
            app_protocol,
            self.context,
            waiter,
            server_side=self.server_side,
            server_hostname=self.server_hostname,
            call_connection_made=call_connection_made,
            **timeouts,
        )
        return proto, waiter

    @staticmethod
    def app_transport(proto: sslproto.SSLProtocol) -> asyncio.Transport:
        """The transport the application sees once the handshake is done."""
        transport = cast(Any, proto)._get_app_transport()  # asyncio's own accessor
        assert isinstance(transport, asyncio.Transport)
        return transport


def _check_timeouts(ssl: object, handshake: float | None, shutdown: float | None) -> None:
    if not ssl:
        if handshake is not None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if shutdown is not None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
    for name, value in (("ssl_handshake_timeout", handshake), ("ssl_shutdown_timeout", shutdown)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} should be a positive number, got {value}")


def client_options(
    ssl: SslArg,
    host: str,
    server_hostname: str | None,
    handshake_timeout: float | None,
    shutdown_timeout: float | None,
) -> TlsOptions | None:
    """asyncio's rules for ``create_connection``: ``ssl=True`` means a default context; the
    name checked is ``server_hostname``, else the host connected to ('' turns the check off);
    ``server_hostname`` or a TLS timeout without ``ssl`` is a ValueError."""
    if server_hostname is not None and not ssl:
        raise ValueError("server_hostname is only meaningful with ssl")
    _check_timeouts(ssl, handshake_timeout, shutdown_timeout)
    if not ssl:
        return None
    if ssl is True:
        context = _ssl.create_default_context()
    elif isinstance(ssl, _ssl.SSLContext):
        context = ssl
    else:
        raise TypeError(f"ssl must be an SSLContext, True or None, not {type(ssl).__name__}")
    name = host if server_hostname is None else server_hostname
    return TlsOptions(
        context,
        server_side=False,
        server_hostname=name or None,
        handshake_timeout=handshake_timeout,
        shutdown_timeout=shutdown_timeout,
    )


def server_options(
    ssl: _ssl.SSLContext | None,
    handshake_timeout: float | None,
    shutdown_timeout: float | None,
) -> TlsOptions | None:
    """asyncio's rules for ``create_server``: ``ssl`` is an SSLContext or None."""
    _check_timeouts(ssl, handshake_timeout, shutdown_timeout)
    if ssl is None:
        return None
    if not isinstance(ssl, _ssl.SSLContext):
        raise TypeError(f"ssl argument must be an SSLContext or None, got {ssl!r}")
    return TlsOptions(
        ssl,
        server_side=True,
        handshake_timeout=handshake_timeout,
        shutdown_timeout=shutdown_timeout,
    )


async def start_tls(
    transport: asyncio.Transport,
    protocol: asyncio.BaseProtocol,
    sslcontext: _ssl.SSLContext,
    *,
    server_side: bool = False,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> asyncio.Transport:
    """TLS over an open ztnode connection, with ``loop.start_tls``'s signature and behaviour:
    reading pauses while the TLS protocol takes the transport's place, the handshake runs,
    and the TLS transport is returned (``protocol`` keeps its connection: no second
    ``connection_made``). A failed handshake closes the connection and raises."""
    if not isinstance(sslcontext, _ssl.SSLContext):
        raise TypeError(
            f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}"
        )
    _check_timeouts(sslcontext, ssl_handshake_timeout, ssl_shutdown_timeout)
    options = TlsOptions(
        sslcontext,
        server_side=server_side,
        server_hostname=server_hostname,
        handshake_timeout=ssl_handshake_timeout,
        shutdown_timeout=ssl_shutdown_timeout,
    )
    tls_protocol, waiter = options.wrap(protocol, call_connection_made=False)
    loop = asyncio.get_running_loop()
    transport.pause_reading()
    transport.set_protocol(tls_protocol)
    made = loop.call_soon(tls_protocol.connection_made, transport)
    resumed = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except BaseException:
        transport.close()
        made.cancel()
        resumed.cancel()
        raise
    return options.app_transport(tls_protocol)


_ROUTED = "_ztnode_start_tls_routed"


def route_start_tls(
    loop: asyncio.AbstractEventLoop, ours: Callable[[asyncio.BaseTransport], bool]
) -> None:
    """Make ``loop.start_tls`` take ztnode's transports (``ours`` says which are) on a loop
    whose own ``start_tls`` would refuse them (module docstring). asyncio's loops are left as
    they are; a loop is patched once, on the instance, and nothing else about it changes."""
    if isinstance(loop, asyncio.BaseEventLoop) or vars(loop).get(_ROUTED):
        return
    inner: Callable[..., Any] = loop.start_tls

    async def routed(
        transport: asyncio.BaseTransport,
        protocol: asyncio.BaseProtocol,
        sslcontext: _ssl.SSLContext,
        **kwargs: Any,
    ) -> asyncio.Transport | None:
        if isinstance(transport, asyncio.Transport) and ours(transport):
            return await start_tls(transport, protocol, sslcontext, **kwargs)
        result: asyncio.Transport | None = await inner(transport, protocol, sslcontext, **kwargs)
        return result

    setattr(loop, "start_tls", routed)  # noqa: B010 (an instance patch)
    setattr(loop, _ROUTED, True)


def log_failed_handshake(waiter: asyncio.Future[None]) -> None:
    """A server's handshake that failed is the client's problem: logged at debug, never an
    'exception was never retrieved' warning."""
    if waiter.cancelled():
        return
    exc = waiter.exception()
    if exc is not None:
        log.debug("TLS handshake with a client failed: %s", exc)
