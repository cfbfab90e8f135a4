"""TLS on the blocking facade: ``context.wrap_socket`` on ztnode sockets both ways (a wrapped
listener's accept, a wrapped client), ``http.client.HTTPSConnection`` and ``urllib`` over the
overlay with a test CA, certificate errors as the stdlib raises them, and OS sockets still
wrapped by the stdlib's own ``SSLSocket``."""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from tests.helpers.httpserver import greeting_handler
from ztnode.sockets.blocking import BlockingNetwork, TlsSocket
from ztnode.testing.blocking import BlockingLocalWorld
from ztnode.testing.tls import TestCa, make_ca

pytestmark = pytest.mark.e2e

IDS = test_identities()
WAIT = 20.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlockingLocalWorld]:
    with BlockingLocalWorld(tmp_path_factory.mktemp("tls"), members=2, identities=IDS[:3]) as w:
        yield w


@pytest.fixture(scope="module")
def ca(world: BlockingLocalWorld, tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    b = world.networks[1]
    return make_ca(tmp_path_factory.mktemp("ca"), [b.address(4), b.address(6)])


def serve_echo(listener: Any, conns: int) -> threading.Thread:
    def run() -> None:
        for _ in range(conns):
            conn, _ = listener.accept()
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_wrapped_listener_and_client_echo(
    world: BlockingLocalWorld, ca: TestCa, family: int
) -> None:
    a, b = world.networks
    fam = 4 if family == socket.AF_INET else 6
    listener = b.create_server((b.address(fam), 0), family=family)
    server = ca.server_context().wrap_socket(listener, server_side=True)
    assert isinstance(server, TlsSocket)
    t = serve_echo(server, 1)
    port = listener.getsockname()[1]
    raw = a.create_connection((b.address(fam), port), timeout=WAIT)
    with ca.client_context().wrap_socket(raw, server_hostname=b.address(fam)) as s:
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        sans = [v.lower() for k, v in s.getpeercert()["subjectAltName"] if k == "IP Address"]
        assert b.address(fam) in sans
        payload = bytes(range(256)) * 1000
        s.sendall(payload)
        got = bytearray()
        while len(got) < len(payload):
            got += s.recv(65536)
        assert bytes(got) == payload
    t.join(WAIT)
    server.close()


def test_certificate_errors_are_the_stdlibs(world: BlockingLocalWorld, ca: TestCa) -> None:
    a, b = world.networks
    listener = b.create_server((b.address(4), 0))
    server = ca.server_context().wrap_socket(listener, server_side=True)
    port = listener.getsockname()[1]

    def refuse_quietly() -> None:
        for _ in range(2):
            try:
                conn, _ = server.accept()
                conn.close()
            except (ssl.SSLError, OSError):
                pass

    t = threading.Thread(target=refuse_quietly, daemon=True)
    t.start()
    for ctx, name, match in (
        (ca.client_context(), "other.test", "mismatch|doesn't match"),
        (ssl.create_default_context(), b.address(4), "certificate verify failed"),
    ):
        raw = a.create_connection((b.address(4), port), timeout=WAIT)
        with pytest.raises(ssl.SSLCertVerificationError, match=match):
            ctx.wrap_socket(raw, server_hostname=name)
        raw.close()
    t.join(WAIT)
    server.close()
    with pytest.raises(ValueError, match="check_hostname requires server_hostname"):
        ssl.create_default_context().wrap_socket(a.socket())


_Hello = greeting_handler("secure")


def https_server(b: BlockingNetwork, ca: TestCa) -> socketserver.TCPServer:
    class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
        daemon_threads = True
        allow_reuse_address = True

        def __init__(self) -> None:
            super().__init__(("", 0), _Hello, bind_and_activate=False)
            self.socket.close()
            self.socket = b.socket()  # type: ignore[assignment]
            self.server_bind()
            self.server_activate()
            self.socket = ca.server_context().wrap_socket(self.socket, server_side=True)

    return Server()


def test_http_client_and_urllib_over_https(
    world: BlockingLocalWorld, ca: TestCa, tmp_path: Path
) -> None:
    import http.client

    a, b = world.networks
    server = https_server(b, ca)
    port = server.server_address[1]
    t = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    t.start()
    try:
        conn = http.client.HTTPSConnection(
            b.address(4), port, timeout=WAIT, context=ca.client_context()
        )
        conn._create_connection = a.create_connection  # type: ignore[attr-defined]
        for path in ("/one", "/two"):  # keep-alive: both on one TLS connection
            conn.request("GET", path)
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, f"secure {path}".encode())
        conn.close()
        opener = a.url_opener(context=ca.client_context())
        with opener.open(f"https://{b.address(4)}:{port}/via-urllib", timeout=WAIT) as r:
            assert r.read() == b"secure /via-urllib"
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            a.url_opener().open(f"https://{b.address(4)}:{port}/", timeout=WAIT)
    finally:
        server.shutdown()
        t.join(WAIT)
        server.server_close()


def test_os_sockets_are_wrapped_by_the_stdlib_as_before() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(srv.getsockname())
    wrapped = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).wrap_socket(
        cli, server_hostname="x", do_handshake_on_connect=False
    )
    assert type(wrapped) is ssl.SSLSocket
    wrapped.close()
    srv.close()
