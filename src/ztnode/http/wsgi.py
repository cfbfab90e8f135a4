"""WSGI apps (Flask, Django, Bottle, a plain callable) served on the overlay by the standard
library's server: ``server = serve_wsgi(blocking_network, app, port=80)``.

Why wsgiref on the blocking facade: ``wsgiref.simple_server`` is ``socketserver`` underneath,
which is written against a socket object: it binds, listens and accepts through it and waits on
its ``fileno()`` with ``selectors``. The facade's :class:`~ztnode.sockets.blocking.Socket` has
those methods and a real readiness descriptor, so the stdlib server runs unchanged with its
listening socket on the network, handlers reading and writing through ``makefile``. Two
things differ from ``make_server``: the listening socket is the network's (never a kernel
one, which ``TCPServer.__init__`` would make), and the server's name is its address, where
``HTTPServer.server_bind`` asks the system's resolver (``socket.getfqdn``), which for an overlay
address can wait for DNS timeouts. Serving every address of the network (``host`` None) takes
two listeners, IPv4 and IPv6 on one port, each with its loop on a thread.

For production loads a real WSGI server is the better choice where it takes a socket object;
this one is the stdlib's: simple, one request per connection (HTTP/1.0), a thread per request
with ``threads`` (the default).
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl as _ssl
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

if TYPE_CHECKING:
    from ztnode.sockets.blocking.node import BlockingNetwork

__all__ = ["WsgiServer", "serve_wsgi"]

log = logging.getLogger("ztnode.http")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Handler(WSGIRequestHandler):
    """wsgiref's handler, logging to ``ztnode.http.wsgi`` instead of printing to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s - %s", self.address_string(), format % args)


class _OverlayWsgiServer(WSGIServer):
    """wsgiref's server with its listening socket on a network (module docstring)."""

    allow_reuse_address = True

    def __init__(
        self,
        network: BlockingNetwork,
        address: tuple[str, int],
        family: socket.AddressFamily,
        app: WsgiApp,
        ssl: _ssl.SSLContext | None,
    ) -> None:
        # BaseServer's constructor only: TCPServer's would open a kernel socket.
        socketserver.BaseServer.__init__(self, address, _Handler)
        self.address_family = family
        self.request_queue_size = 128
        self._listener = network.socket(family, socket.SOCK_STREAM)
        self.socket = cast(socket.socket, self._listener)
        try:
            self.server_bind()
            self.server_activate()
            if ssl is not None:
                # Accepted connections are TLS; the handshake runs in the request's thread,
                # on its first read, so a slow client does not hold up accepting.
                self.socket = ssl.wrap_socket(
                    self.socket, server_side=True, do_handshake_on_connect=False
                )
        except BaseException:
            self.server_close()
            raise
        self.set_app(app)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("WSGI request from %s failed", client_address)


class _ThreadingOverlayWsgiServer(socketserver.ThreadingMixIn, _OverlayWsgiServer):
    """A thread per request; closing does not wait for requests still running."""

    daemon_threads = True
    block_on_close = False


class WsgiServer:
    """A WSGI app served on a network (what :func:`serve_wsgi` returns): one listener per
    address family served, each with its ``serve_forever`` loop on a thread once started."""

    def __init__(
        self, network: BlockingNetwork, servers: list[_OverlayWsgiServer], tls: bool
    ) -> None:
        self.network = network
        self.servers = servers
        self._tls = tls
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def port(self) -> int:
        return self.servers[0].server_port

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(s.server_name, s.server_port) for s in self.servers]

    @property
    def url(self) -> str:
        """``http(s)://address:port/``: the network's IPv4 address when it serves them all."""
        host = self.servers[0].server_name
        if host in ("0.0.0.0", "::"):
            addresses = self.network.addresses
            v4 = [a for a in addresses if a.version == 4]
            host = str((v4 or addresses)[0].ip)
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self._tls else 'http'}://{shown}:{self.port}/"

    def start(self) -> WsgiServer:
        """Serve in the background (idempotent)."""
        with self._lock:
            if self._closed.is_set():
                raise RuntimeError("the server is closed")
            if not self._threads:
                for server in self.servers:
                    t = threading.Thread(
                        target=server.serve_forever,
                        name=f"wsgi {server.server_name} port {server.server_port}",
                        daemon=True,
                    )
                    t.start()
                    self._threads.append(t)
        return self

    def serve_forever(self) -> None:
        """Block until :meth:`close` (from another thread); interrupted (Ctrl-C), it closes
        the server."""
        self.start()
        try:
            self._closed.wait()
        except KeyboardInterrupt:
            self.close()
            raise

    def shutdown(self) -> None:
        """Stop the serving loops (as ``socketserver``'s ``shutdown``); requests already
        accepted finish in their threads."""
        with self._lock:
            threads, self._threads = self._threads, []
        if threads:  # socketserver's shutdown() waits for a loop, so only when one runs
            for server in self.servers:
                server.shutdown()
        for t in threads:
            t.join()

    def close(self) -> None:
        """Shut down and close the listening sockets."""
        self.shutdown()
        for server in self.servers:
            server.server_close()
        self._closed.set()

    def __enter__(self) -> WsgiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<WsgiServer {self.url}{' closed' if self._closed.is_set() else ''}>"


def serve_wsgi(
    network: BlockingNetwork,
    app: WsgiApp,
    *,
    port: int = 80,
    host: str | None = None,
    threads: bool = True,
    ssl: _ssl.SSLContext | None = None,
    background: bool = True,
) -> WsgiServer:
    """Serve ``app`` on ``network`` with wsgiref: on ``host`` (one of the network's
    addresses; None: all of them, IPv4 and IPv6 on one port) and ``port`` (0 picks one);
    ``threads``: a thread per request; ``ssl`` (a server context) makes it HTTPS. With
    ``background`` (the default) it serves at once from threads of its own; otherwise call
    ``start()`` or ``serve_forever()``. ``OSError`` when the port cannot be had."""
    kind = _ThreadingOverlayWsgiServer if threads else _OverlayWsgiServer
    if host is not None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        servers = [kind(network, (host, port), family, app, ssl)]
    else:
        first = kind(network, ("", port), socket.AF_INET, app, ssl)
        try:
            second = kind(network, ("", first.server_port), socket.AF_INET6, app, ssl)
        except BaseException:
            first.server_close()
            raise
        servers = [first, second]
    server = WsgiServer(network, servers, ssl is not None)
    if background:
        server.start()
    return server
