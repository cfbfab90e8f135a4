"""One blocking local world for the HTTP tests of blocking clients (requests, httpx.Client,
http.client, urllib): member A is the client, member B serves the apps of
:mod:`tests.http.apps` (ASGI over HTTP and HTTPS, WSGI), and the root, pushed as the network's
DNS server, names B ``web.zt.example``. A kernel HTTP server on 127.0.0.1 stands for the rest
of the world, which clients must still reach past the overlay."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.data import test_identities
from tests.http.apps import app, wsgi_app
from ztnode.http.asgi import BlockingAsgiServer, serve_asgi_blocking
from ztnode.http.wsgi import WsgiServer, serve_wsgi
from ztnode.sockets.blocking import BlockingNetwork, BlockingNode
from ztnode.testing.blocking import BlockingLocalWorld
from ztnode.testing.local import LocalZtWorld
from ztnode.testing.tls import TestCa, make_ca

DOMAIN = "zt.example"
WEB = f"web.{DOMAIN}"


def unassigned(world: LocalZtWorld) -> str:
    """An address of the world's subnet that no node has (members and the root)."""
    nets = [*world.networks, *([world.root_network] if world.root_network else [])]
    taken = {str(a.ip) for n in nets for a in n.addresses}
    return next(f"10.147.17.{i}" for i in range(250, 200, -1) if f"10.147.17.{i}" not in taken)


@dataclass
class Served:
    """The world as the blocking tests see it."""

    world: BlockingLocalWorld
    client: BlockingNode
    a: BlockingNetwork
    b: BlockingNetwork
    ca: TestCa
    http: BlockingAsgiServer  # port 80
    https: BlockingAsgiServer  # port 443
    wsgi: WsgiServer  # port 8080

    def unassigned(self) -> str:
        """An address of the network's subnet that nobody has: a connection to it waits for
        address resolution that never comes."""
        return self.world.call(lambda: unassigned(self.world.world))


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("http-world")
    with BlockingLocalWorld(
        base, members=2, identities=test_identities()[:3], dns_domain=DOMAIN
    ) as world:
        a, b = world.networks
        world.call(lambda: world.world.name_member(world.world.members[1], "web"))
        ca = make_ca(base / "ca", [b.address(4), b.address(6)], names=(WEB,))
        servers = Served(
            world,
            world.members[0],
            a,
            b,
            ca,
            serve_asgi_blocking(b, app, port=80),
            serve_asgi_blocking(b, app, port=443, ssl=ca.server_context()),
            serve_wsgi(b, wsgi_app, port=8080),
        )
        try:
            yield servers
        finally:
            servers.wsgi.close()
            servers.https.close(timeout=60)
            servers.http.close(timeout=60)


class _KernelHello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "server": "kernel"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="package")
def kernel_url() -> Iterator[str]:
    """A kernel HTTP server on 127.0.0.1: what clients reach when the host is not the
    overlay's."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KernelHello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tmp_ca(tmp_path: Path) -> TestCa:
    """A CA that signed nothing the servers present: certificate checks must fail with it."""
    return make_ca(tmp_path / "other-ca", ["10.0.0.1"])
