"""ASGI apps (FastAPI, Starlette, Django, a plain callable) served on the overlay by uvicorn:
``server = await serve_asgi(network, app, port=80)``.

Why uvicorn driven step by step: ``Server.serve()`` installs signal handlers, which a library
must not take from its program (and cannot, off the main thread); its steps are public
(``Config.load``, ``Server.startup``, ``main_loop``, ``shutdown``) and are what this module
runs. The listener is the network's: ``startup`` is handed an empty list of sockets (the way a
process manager hands over sockets it made itself), so uvicorn binds nothing of the kernel's,
and the network's ``create_server`` listens with uvicorn's own protocol class for each
connection; the listener joins ``server.servers``, so uvicorn's graceful shutdown closes it and
waits for its connections and tasks as it does for its own. Nothing is patched: other servers
and clients on the same event loop are not affected.

The app runs on the node's event loop (for :func:`serve_asgi_blocking`, the node's loop thread):
code that blocks there stalls the node too. Needs the ``http`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as _ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, cast

import uvicorn

if TYPE_CHECKING:
    from ztnode.sockets.aio import Network
    from ztnode.sockets.aio_tcp import TcpServer
    from ztnode.sockets.blocking.node import BlockingNetwork, BlockingNode

__all__ = ["AsgiServer", "BlockingAsgiServer", "serve_asgi", "serve_asgi_blocking"]

log = logging.getLogger("ztnode.http")

App = Callable[..., Any] | str
# uvicorn settings that choose where or how to listen other than on the network, or run
# processes of their own: they have no meaning here.
_REFUSED = ("uds", "fd", "reload", "workers")


def _main_address(network: Network) -> str:
    """The address a server on all of the network's addresses is shown at: the IPv4 one, or
    the IPv6 one on a network without IPv4."""
    try:
        return network.address(4)
    except OSError:
        return network.address(6)


class AsgiServer:
    """An ASGI app served by uvicorn on a network (what :func:`serve_asgi` returns)."""

    def __init__(
        self,
        network: Network,
        server: uvicorn.Server,
        listener: TcpServer,
        host: str | None,
        tls: bool,
    ) -> None:
        self.network = network
        #: The uvicorn ``Server`` (its ``config``, ``server_state``...).
        self.uvicorn = server
        self.listener = listener
        self._host = host
        self._tls = tls
        self._task = asyncio.create_task(self._run(), name=f"uvicorn on {network.id_hex}")

    async def _run(self) -> None:
        await self.uvicorn.main_loop()
        await self.uvicorn.shutdown(sockets=[])

    @property
    def port(self) -> int:
        return self.listener.port

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where it listens (a wildcard address for every address of the family)."""
        return self.listener.addresses()

    @property
    def url(self) -> str:
        """``http(s)://address:port/`` with the address served (the network's IPv4 address
        when it serves them all)."""
        host = self._host if self._host is not None else _main_address(self.network)
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self._tls else 'http'}://{shown}:{self.port}/"

    def is_serving(self) -> bool:
        return not self._task.done()

    async def close(self) -> None:
        """Stop gracefully, as uvicorn does on SIGTERM: no new connections, idle ones closed,
        running requests finished (``timeout_graceful_shutdown`` bounds that), then the app's
        lifespan shutdown. Several calls wait for the same shutdown."""
        self.uvicorn.should_exit = True
        await asyncio.shield(self._task)

    async def serve_forever(self) -> None:
        """Until :meth:`close` (or uvicorn's ``limit_max_requests``); cancelled, it closes the
        server first, as ``asyncio.Server.serve_forever`` does."""
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            await self.close()
            raise

    async def __aenter__(self) -> AsgiServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "serving" if self.is_serving() else "closed"
        return f"<AsgiServer {self.url} {state}>"


async def serve_asgi(
    network: Network,
    app: App,
    *,
    port: int = 80,
    host: str | None = None,
    ssl: _ssl.SSLContext | None = None,
    lifespan: Literal["auto", "on", "off"] = "auto",
    log_level: str | int | None = "warning",
    **uvicorn_config: Any,
) -> AsgiServer:
    """Serve ``app`` with uvicorn on ``network``, on ``host`` (one of the network's addresses;
    None listens on all of them, IPv4 and IPv6, on one port) and ``port`` (0 picks one);
    ``ssl`` (a server context) makes it HTTPS. Returns once the app's lifespan startup is
    done and the port listens. ``uvicorn_config`` is ``uvicorn.Config``'s other settings
    (``timeout_keep_alive``, ``limit_concurrency``, ``root_path``, ``ssl_certfile``...);
    ``log_config`` defaults to None here, so the program's logging is left alone.

    Errors: ``OSError`` when the port cannot be had (after the app's lifespan startup, which
    is then shut down, as uvicorn orders it); RuntimeError when the app's startup fails."""
    refused = sorted(k for k in uvicorn_config if k in _REFUSED)
    if refused:
        raise TypeError(
            f"serve_asgi() does not take uvicorn's {', '.join(refused)}: it listens on the "
            "network, in this process"
        )
    uvicorn_config.setdefault("log_config", None)
    config = uvicorn.Config(
        app,
        host=host if host is not None else _main_address(network),
        port=port,
        lifespan=lifespan,
        log_level=log_level,
        **uvicorn_config,
    )
    try:
        config.load()
    except SystemExit:  # uvicorn exits when the app cannot be imported (logging why)
        raise RuntimeError(f"uvicorn could not load the ASGI app {app!r}") from None
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    try:
        await server.startup(sockets=[])
    except SystemExit:
        raise RuntimeError(
            "the ASGI app's lifespan startup failed (uvicorn.error's log says why)"
        ) from None

    def protocol() -> asyncio.Protocol:
        # What uvicorn makes for every connection it accepts itself.
        factory = cast(Any, config.http_protocol_class)
        made: asyncio.Protocol = factory(
            config=config, server_state=server.server_state, app_state=server.lifespan.state
        )
        return made

    tls = ssl if ssl is not None else config.ssl
    try:
        listener = await network.create_server(
            protocol, host, port, family=0, backlog=config.backlog, ssl=tls
        )
    except BaseException:
        with contextlib.suppress(Exception):
            await server.lifespan.shutdown()
        raise
    server.servers.append(cast(Any, listener))  # closed and waited for by server.shutdown()
    served = AsgiServer(network, server, listener, host, tls is not None)
    log.info("Uvicorn running on %s (ZeroTier network %s)", served.url, network.id_hex)
    return served


class BlockingAsgiServer:
    """:class:`AsgiServer` for threads: the server runs on the node's loop thread."""

    def __init__(self, node: BlockingNode, server: AsgiServer) -> None:
        self.node = node
        self.server = server

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.node.call(lambda: self.server.url)

    def is_serving(self) -> bool:
        return self.node.call(self.server.is_serving)

    def close(self, timeout: float | None = None) -> None:
        """Graceful shutdown (:meth:`AsgiServer.close`), waiting for it."""
        self.node.run(self.server.close(), timeout)

    def serve_forever(self) -> None:
        """Block until the server is closed (from another thread); interrupted (Ctrl-C), it
        closes the server."""
        try:
            self.node.run(self.server.serve_forever())
        except KeyboardInterrupt:
            self.close()
            raise

    def __enter__(self) -> BlockingAsgiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BlockingAsgiServer {self.url}>"


def serve_asgi_blocking(network: BlockingNetwork, app: App, **kwargs: Any) -> BlockingAsgiServer:
    """:func:`serve_asgi` on a :class:`~ztnode.sockets.blocking.BlockingNetwork`: the app runs
    on the node's loop thread; returns once it serves. Keyword arguments as
    :func:`serve_asgi`'s."""
    node = network.node
    server = node.run(serve_asgi(network.network, app, **kwargs))
    return BlockingAsgiServer(node, server)
