"""The blocking socket facade end to end: a root/controller and two members over loopback UDP in
one process (BlockingLocalWorld), driven from plain threads with stdlib-style calls, next to
OS sockets in select(), under http.client and socketserver, on IPv4 and IPv6 (rfc4193).

Waits are generous (seconds) and only bound a hang: no assertion depends on how fast anything
happens."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import http.client
import http.server
import random
import select
import selectors
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from ztnode.sockets.blocking import (
    BlockingNetwork,
    BlockingNode,
    Socket,
)
from ztnode.sockets.blocking.signals import _Signal
from ztnode.testing.blocking import BlockingLocalWorld
from ztnode.transport.busypoll import BusyPollSelector

pytestmark = pytest.mark.e2e  # starts processes or uses real sockets (loopback only)

IDS = test_identities()
WAIT = 20.0  # bounds a hang; never expected to elapse


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlockingLocalWorld]:
    with BlockingLocalWorld(
        tmp_path_factory.mktemp("blocking"), members=2, identities=IDS[:3]
    ) as w:
        yield w


@pytest.fixture
def nets(world: BlockingLocalWorld) -> tuple[BlockingNetwork, BlockingNetwork]:
    a, b = world.networks
    return a, b


class Bg(threading.Thread):
    """A thread whose exception or result comes back on ``wait``."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        super().__init__(daemon=True)
        self.fn, self.args = fn, args
        self.result: Any = None
        self.exc: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except BaseException as e:
            self.exc = e

    def wait(self, timeout: float = 60.0) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "background thread hung"
        if self.exc is not None:
            raise self.exc
        return self.result


def fam(family: int) -> socket.AddressFamily:
    return socket.AF_INET6 if family == 6 else socket.AF_INET


def addr(host: str, port: int, family: int) -> tuple[Any, ...]:
    return (host, port, 0, 0) if family == 6 else (host, port)


def recv_exactly(s: Socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "EOF before the expected bytes"
        out += chunk
    return bytes(out)


def recv_all(s: Socket) -> bytes:
    out = bytearray()
    while chunk := s.recv(1 << 20):
        out += chunk
    return bytes(out)


def echo_server(
    net: BlockingNetwork, family: int = 4, *, resets: bool = False
) -> tuple[Socket, int, Bg]:
    """A facade listener that echoes every connection in its own thread until closed;
    ``resets`` when the test resets its clients on purpose."""
    srv = net.socket(fam(family))
    srv.bind(("", 0))
    srv.listen()
    port = srv.getsockname()[1]

    def serve_one(c: Socket) -> None:
        with c:
            c.settimeout(WAIT)
            try:
                while data := c.recv(65536):
                    c.sendall(data)
            except ConnectionResetError:
                if not resets:
                    raise

    def loop() -> None:
        workers = []
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                break
            workers.append(Bg(serve_one, c))
        for w in workers:
            w.wait()

    return srv, port, Bg(loop)


# ---------------------------------------------------------------------------------------------
# TCP
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
def test_tcp_echo_against_asyncio_server(world: BlockingLocalWorld, family: int) -> None:
    a, b = world.networks

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = world.run(b.network.start_server(echo, port=7100 + family, family=family))
    try:
        with a.socket(fam(family)) as s:
            s.settimeout(WAIT)
            s.connect((b.address(family), 7100 + family))
            assert s.getpeername() == addr(b.address(family), 7100 + family, family)
            local = s.getsockname()
            assert local[0] == a.address(family) and local[1] > 0
            assert len(local) == (4 if family == 6 else 2)
            s.sendall(b"hello\n")
            assert recv_exactly(s, 6) == b"hello\n"
            s.sendall(b"x" * 100_000)
            assert recv_exactly(s, 100_000) == b"x" * 100_000
            s.shutdown(socket.SHUT_WR)
            assert s.recv(10) == b""  # the server closes after our FIN
    finally:
        world.call(server.close)


@pytest.mark.parametrize("family", [4, 6])
def test_bulk_5mb_both_ways_sha256(
    nets: tuple[BlockingNetwork, BlockingNetwork], family: int
) -> None:
    a, b = nets
    srv, port, loop = echo_server(b, family)
    data = random.Random(family).randbytes(5_000_000)
    try:
        with a.socket(fam(family)) as s:
            s.settimeout(WAIT)
            s.connect((b.address(family), port))

            def pump() -> None:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)

            sender = Bg(pump)
            got = recv_all(s)
            sender.wait()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        srv.close()
        loop.wait()


def test_recv_into_peek_waitall_and_recvfrom_on_tcp(
    nets: tuple[BlockingNetwork, BlockingNetwork],
) -> None:
    a, b = nets
    srv, port, loop = echo_server(b)
    try:
        with a.create_connection((b.address(4), port), timeout=WAIT) as s:
            s.sendall(b"abcdef")
            assert s.recv(3, socket.MSG_WAITALL) == b"abc"
            assert recv_exactly(s, 3) == b"def"
            s.sendall(b"0123456789")
            assert s.recv(10, socket.MSG_WAITALL | 0) == b"0123456789"
            s.sendall(b"peek")
            while len(s.recv(4, socket.MSG_PEEK)) < 4:
                pass
            assert s.recv(4, socket.MSG_PEEK) == b"peek"
            buf = bytearray(10)
            assert s.recv_into(buf) == 4 and buf[:4] == b"peek"
            s.sendall(b"from")
            data, where = s.recvfrom(4, socket.MSG_WAITALL)
            assert (data, where) == (b"from", None)
            s.sendall(b"into")
            view = memoryview(bytearray(8))
            n, where = s.recvfrom_into(view, 4, socket.MSG_WAITALL)
            assert (bytes(view[:n]), where) == (b"into", None)
            with pytest.raises(ValueError):
                s.recv_into(bytearray(2), 5)
            with pytest.raises(OSError) as ei:
                s.recv(1, socket.MSG_OOB)
            assert ei.value.errno == errno.EOPNOTSUPP
    finally:
        srv.close()
        loop.wait()


def test_connection_refused_then_reconnect(nets: tuple[BlockingNetwork, BlockingNetwork]) -> None:
    a, b = nets
    with a.socket() as s:
        s.settimeout(WAIT)
        with pytest.raises(ConnectionRefusedError) as ei:
            s.connect((b.address(4), 4444))
        assert ei.value.errno == errno.ECONNREFUSED
        assert s.connect_ex((b.address(4), 4444)) == errno.ECONNREFUSED
        srv, port, loop = echo_server(b)
        try:
            s.connect((b.address(4), port))  # a failed connect leaves the socket reusable
            s.sendall(b"again")
            assert recv_exactly(s, 5) == b"again"
            assert s.connect_ex((b.address(4), port)) == errno.EISCONN
        finally:
            s.close()
            srv.close()
            loop.wait()
    with a.socket(socket.AF_INET6) as s6:
        s6.settimeout(WAIT)
        with pytest.raises(ConnectionRefusedError):
            s6.connect((b.address(6), 4444))


def test_timeouts(nets: tuple[BlockingNetwork, BlockingNetwork]) -> None:
    a, b = nets
    srv = b.create_server(("", 0))
    port = srv.getsockname()[1]
    try:
        srv.settimeout(0.05)
        with pytest.raises(TimeoutError):
            srv.accept()
        srv.settimeout(WAIT)
        with a.socket() as s:
            s.settimeout(WAIT)
            s.connect((b.address(4), port))
            conn, _ = srv.accept()
            with conn:
                s.settimeout(0.1)
                assert s.gettimeout() == 0.1
                with pytest.raises(socket.timeout) as ei:
                    s.recv(10)
                assert isinstance(ei.value, TimeoutError)
                conn.sendall(b"late")
                s.settimeout(WAIT)
                assert recv_exactly(s, 4) == b"late"  # a timeout does not break the socket
        # No member has this address: the SYN never gets an answer.
        with a.socket() as s:
            s.settimeout(0.2)
            with pytest.raises(TimeoutError):
                s.connect(("10.147.17.250", 80))
            assert s.connect_ex(("10.147.17.250", 80)) == errno.EAGAIN
    finally:
        srv.close()


def test_nonblocking_and_select_with_os_sockets(
    nets: tuple[BlockingNetwork, BlockingNetwork],
) -> None:
    a, b = nets
    srv = b.create_server(("", 0))
    srv.settimeout(WAIT)
    port = srv.getsockname()[1]
    osa, osb = socket.socketpair()
    s = a.socket()
    try:
        s.setblocking(False)
        assert not s.getblocking() and s.gettimeout() == 0.0
        with pytest.raises(BlockingIOError) as ei:
            s.connect((b.address(4), port))
        assert ei.value.errno == errno.EINPROGRESS
        assert select.select([], [s], [], WAIT)[1] == [s]
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        assert s.getpeername() == (b.address(4), port)
        conn, _ = srv.accept()
        conn.settimeout(WAIT)

        with pytest.raises(BlockingIOError) as ei:
            s.recv(10)
        assert ei.value.errno == errno.EAGAIN
        assert select.select([s, osa], [], [], 0)[0] == []

        osb.send(b"os")
        assert select.select([s, osa], [], [], WAIT)[0] == [osa]
        assert osa.recv(10) == b"os"
        conn.sendall(b"zt")
        assert select.select([s, osa], [], [], WAIT)[0] == [s]
        assert s.recv(10) == b"zt"
        assert select.select([s, osa], [], [], 0)[0] == []  # level-triggered: drained is quiet

        with selectors.DefaultSelector() as sel:
            sel.register(s, selectors.EVENT_READ, "zt")
            sel.register(osa, selectors.EVENT_READ, "os")
            conn.sendall(b"1")
            osb.send(b"2")
            seen: dict[str, bytes] = {}
            while len(seen) < 2:
                events = sel.select(WAIT)
                assert events, "selector timed out"
                for key, _ in events:
                    sock = key.fileobj
                    assert isinstance(sock, Socket | socket.socket)
                    seen[key.data] = sock.recv(10)
            assert seen == {"zt": b"1", "os": b"2"}
            assert sel.select(0) == []

        conn.close()  # EOF is readable, and stays readable
        assert select.select([s], [], [], WAIT)[0] == [s]
        assert s.recv(10) == b""
        assert select.select([s], [], [], 0)[0] == [s]
    finally:
        s.close()
        srv.close()
        osa.close()
        osb.close()


def test_writability_follows_send_room(nets: tuple[BlockingNetwork, BlockingNetwork]) -> None:
    """A peer that does not read stalls the sender: the descriptor stops being writable, a
    blocking sendall times out, and reading on the other side makes it writable again."""
    a, b = nets
    srv = b.create_server(("", 0))
    srv.settimeout(WAIT)
    port = srv.getsockname()[1]
    chunk = bytes(65536)
    try:
        with a.socket() as s:
            s.settimeout(WAIT)
            s.connect((b.address(4), port))
            conn, _ = srv.accept()
            with conn:
                s.setblocking(False)
                sent = 0
                while select.select([], [s], [], 1.0)[1]:
                    with contextlib.suppress(BlockingIOError):  # the room may be in flight
                        sent += s.send(chunk)
                    assert sent < 64 * 1024 * 1024, "never stalled"
                assert sent > 0
                with pytest.raises(BlockingIOError):
                    s.send(chunk)
                s.settimeout(0.2)
                with pytest.raises(TimeoutError):
                    s.sendall(chunk)
                conn.settimeout(WAIT)
                received = 0
                while not select.select([], [s], [], 0)[1]:
                    got = conn.recv(1 << 20)
                    assert got
                    received += len(got)
                assert received > 0
    finally:
        srv.close()


@pytest.mark.slow
def test_accept_loop_with_several_clients(nets: tuple[BlockingNetwork, BlockingNetwork]) -> None:
    a, b = nets
    srv = b.create_server(("", 0), backlog=2)
    srv.settimeout(WAIT)
    port = srv.getsockname()[1]
    n = 8
    peers: list[tuple[str, int]] = []

    def server() -> None:
        workers = []

        def serve(c: Socket) -> None:
            with c:
                c.settimeout(WAIT)
                name = recv_exactly(c, 4)
                c.sendall(b"hi " + name)

        for _ in range(n):
            c, peer = srv.accept()
            peers.append(peer)
            assert c.getpeername() == peer
            workers.append(Bg(serve, c))
        for w in workers:
            w.wait()

    def client(i: int) -> tuple[bytes, int]:
        with a.create_connection((b.address(4), port), timeout=WAIT) as s:
            s.sendall(b"c%03d" % i)
            return recv_exactly(s, 7), s.getsockname()[1]

    try:
        srv_thread = Bg(server)
        clients = [Bg(client, i) for i in range(n)]
        results = [c.wait() for c in clients]
        srv_thread.wait()
    finally:
        srv.close()
    assert [r[0] for r in results] == [b"hi c%03d" % i for i in range(n)]
    assert sorted(p[1] for p in peers) == sorted(r[1] for r in results)
    assert {p[0] for p in peers} == {a.address(4)}


def test_connect_to_own_address(nets: tuple[BlockingNetwork, BlockingNetwork]) -> None:
    a, _ = nets
    for family in (4, 6):
        srv, port, loop = echo_server(a, family)
        try:
            with a.socket(fam(family)) as s:
                s.settimeout(WAIT)
                s.connect((a.address(family), port))
                assert s.getsockname()[0] == s.getpeername()[0] == a.address(family)
                s.sendall(b"me")
                assert recv_exactly(s, 2) == b"me"
        finally:
            srv.close()
            loop.wait()
    with a.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(WAIT)
        u.bind(("", 0))
        u.sendto(b"self", (a.address(4), u.getsockname()[1]))
        assert u.recvfrom(10) == (b"self", (a.address(4), u.getsockname()[1]))


def test_names_and_binding(nets: tuple[BlockingNetwork, BlockingNetwork]) -> None:
    a, b = nets
    for family in (4, 6):
        wild = "::" if family == 6 else "0.0.0.0"
        with b.socket(fam(family)) as srv, a.socket(fam(family)) as cli:
            assert srv.family == fam(family) and srv.type == socket.SOCK_STREAM
            assert srv.proto == 0
            assert srv.getsockname() == addr(wild, 0, family)
            srv.bind(("", 0))
            port = srv.getsockname()[1]
            assert port > 0 and srv.getsockname() == addr(wild, port, family)  # before listen
            srv.listen(5)
            assert srv.getsockname() == addr(wild, port, family)
            assert srv.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
            with pytest.raises(OSError) as ei:
                srv.getpeername()
            assert ei.value.errno == errno.ENOTCONN

            cli.settimeout(WAIT)
            cli.bind((a.address(family), 0))
            cport = cli.getsockname()[1]
            cli.connect((b.address(family), port))
            assert cli.getsockname() == addr(a.address(family), cport, family)
            srv.settimeout(WAIT)
            conn, peer = srv.accept()
            with conn:
                assert peer == cli.getsockname()
                assert conn.getpeername() == peer
                assert conn.getsockname() == addr(b.address(family), port, family)
                assert cli.getpeername() == conn.getsockname()
                assert "laddr" in repr(conn) and "raddr" in repr(conn)
    with a.socket() as s:
        with pytest.raises(OSError) as ei:
            s.bind((b.address(4), 0))  # not one of ours
        assert ei.value.errno == errno.EADDRNOTAVAIL
        with pytest.raises(socket.gaierror):
            s.connect(("example.com", 80))
        with pytest.raises(OverflowError):
            s.connect((b.address(4), 70000))
        with pytest.raises(OSError) as ei:
            s.connect((b.address(6), 80))
        assert ei.value.errno == errno.EAFNOSUPPORT
        with pytest.raises(TypeError):
            s.connect(b.address(4))
    srv1 = b.create_server(("", 0))
    try:
        with b.socket() as s2, pytest.raises(OSError) as ei:
            s2.bind(("", srv1.getsockname()[1]))
        assert ei.value.errno == errno.EADDRINUSE
    finally:
        srv1.close()
    with pytest.raises(OSError):
        a.socket(socket.AF_UNIX)
    nb = a.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    assert not nb.getblocking()
    nb.close()


def test_close_semantics(nets: tuple[BlockingNetwork, BlockingNetwork]) -> None:
    a, b = nets
    s = a.socket()
    assert s.fileno() >= 0
    s.close()
    s.close()  # idempotent
    assert s.fileno() == -1
    for call in (
        lambda: s.send(b"x"),
        lambda: s.recv(1),
        lambda: s.connect((b.address(4), 80)),
        s.getsockname,
        lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1),
    ):
        with pytest.raises(OSError) as ei:
            call()
        assert ei.value.errno == errno.EBADF
    with a.socket() as s2:
        pass
    assert s2.fileno() == -1

    srv = b.create_server(("", 0))
    srv.settimeout(WAIT)
    port = srv.getsockname()[1]

    def pair() -> tuple[Socket, Socket]:
        c = a.create_connection((b.address(4), port), timeout=WAIT)
        conn, _ = srv.accept()
        conn.settimeout(WAIT)
        return c, conn

    try:
        # An orderly close: the peer reads EOF.
        c, conn = pair()
        with c:
            conn.close()
            assert c.recv(10) == b""
        # Unread data at close resets the connection (as Linux does).
        c, conn = pair()
        with c:
            c.sendall(b"unread")
            assert select.select([conn], [], [], WAIT)[0] == [conn]
            conn.close()
            with pytest.raises(ConnectionResetError):
                c.recv(10)
            with pytest.raises(BrokenPipeError):
                c.sendall(b"more")
        # SO_LINGER with a zero timeout: close() is an abort.
        c, conn = pair()
        with c:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            assert conn.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8) == struct.pack(
                "ii", 1, 0
            )
            conn.close()
            with pytest.raises(ConnectionResetError):
                c.recv(10)
        # Send after our own SHUT_WR is a broken pipe; the peer sees EOF, we can still read.
        c, conn = pair()
        with c, conn:
            c.shutdown(socket.SHUT_WR)
            with pytest.raises(BrokenPipeError):
                c.send(b"x")
            assert conn.recv(10) == b""
            conn.sendall(b"still")
            assert recv_exactly(c, 5) == b"still"
        # close() from another thread ends a blocked recv with EBADF.
        c, conn = pair()
        with conn:
            blocked = Bg(c.recv, 10)
            c.close()
            with pytest.raises(OSError) as ei:
                blocked.wait()
            assert ei.value.errno == errno.EBADF
    finally:
        srv.close()


def test_closing_a_listener_resets_unaccepted_connections(
    nets: tuple[BlockingNetwork, BlockingNetwork],
) -> None:
    a, b = nets
    srv = b.create_server(("", 0))
    port = srv.getsockname()[1]
    with a.create_connection((b.address(4), port), timeout=WAIT) as c:
        assert select.select([srv], [], [], WAIT)[0] == [srv]  # queued, never accepted
        srv.close()
        with pytest.raises(ConnectionResetError):
            c.recv(10)


def test_makefile(nets: tuple[BlockingNetwork, BlockingNetwork]) -> None:
    a, b = nets
    srv = b.create_server(("", 0))
    srv.settimeout(WAIT)
    port = srv.getsockname()[1]
    lines = [f"line {i} {'z' * i}\n" for i in range(200)]

    def server() -> None:
        conn, _ = srv.accept()
        with conn, conn.makefile("rwb") as f:
            first = f.readline()
            f.write(first.upper())
            f.write("".join(lines).encode())
            f.flush()

    try:
        t = Bg(server)
        s = a.create_connection((b.address(4), port), timeout=WAIT)
        wf = s.makefile("wb", buffering=0)
        wf.write(b"hello\n")
        rf = s.makefile("r", encoding="utf-8", newline="\n")
        assert rf.readline() == "HELLO\n"
        s.close()  # the files keep the socket open until they close
        assert s.fileno() >= 0
        assert list(rf) == lines
        rf.close()
        assert s.fileno() >= 0
        wf.close()
        assert s.fileno() == -1
        t.wait()
    finally:
        srv.close()


def test_http_client_against_socketserver(nets: tuple[BlockingNetwork, BlockingNetwork]) -> None:
    """Both stdlib HTTP halves on the facade: socketserver's select loop and accept on one
    node, http.client (keep-alive, makefile-based responses) on the other."""
    a, b = nets

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = f"path={self.path} from={self.client_address[0]}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            digest = hashlib.sha256(body).hexdigest().encode()
            self.send_response(201)
            self.send_header("Content-Length", str(len(digest)))
            self.end_headers()
            self.wfile.write(digest)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class ZtServer(socketserver.TCPServer):
        allow_reuse_address = True

        def __init__(self) -> None:
            super().__init__(("", 0), Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = b.socket()  # type: ignore[assignment]
            self.server_bind()
            self.server_activate()

    server = ZtServer()
    port = server.server_address[1]
    assert port > 0
    serving = Bg(server.serve_forever, 0.05)
    try:
        conn = http.client.HTTPConnection(b.address(4), port, timeout=WAIT)
        conn._create_connection = a.create_connection  # type: ignore[attr-defined]
        for path in ("/one", "/two?x=1"):
            conn.request("GET", path)
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.read() == f"path={path} from={a.address(4)}".encode()
        payload = random.Random(7).randbytes(300_000)
        conn.request("POST", "/upload", body=payload)
        resp = conn.getresponse()
        assert resp.status == 201
        assert resp.read() == hashlib.sha256(payload).hexdigest().encode()
        conn.close()
    finally:
        server.shutdown()
        serving.wait()
        server.server_close()


# ---------------------------------------------------------------------------------------------
# UDP
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
def test_udp_sendto_recvfrom(nets: tuple[BlockingNetwork, BlockingNetwork], family: int) -> None:
    a, b = nets
    with (
        b.socket(fam(family), socket.SOCK_DGRAM) as srv,
        a.socket(fam(family), socket.SOCK_DGRAM) as cli,
    ):
        srv.settimeout(WAIT)
        cli.settimeout(WAIT)
        srv.bind((b.address(family), 0))
        port = srv.getsockname()[1]
        assert srv.getsockname() == addr(b.address(family), port, family)
        assert cli.sendto(b"ping", (b.address(family), port)) == 4
        cport = cli.getsockname()[1]  # sendto bound it
        data, peer = srv.recvfrom(100)
        assert (data, peer) == (b"ping", addr(a.address(family), cport, family))
        srv.sendto(b"pong", peer)
        assert cli.recvfrom(100) == (b"pong", addr(b.address(family), port, family))

        cli.sendto(b"x" * 100, (b.address(family), port))
        cli.sendto(b"second", (b.address(family), port))
        assert srv.recv(10) == b"x" * 10  # the rest of a datagram is dropped
        buf = bytearray(16)
        n, peer = srv.recvfrom_into(buf)
        assert bytes(buf[:n]) == b"second" and peer[1] == cport

        cli.connect((b.address(family), port))
        assert cli.getpeername() == addr(b.address(family), port, family)
        cli.send(b"connected")
        assert srv.recv(100) == b"connected"

        with pytest.raises(OSError) as ei:
            cli.sendto(b"x" * 70_000, (b.address(family), port))
        assert ei.value.errno == errno.EMSGSIZE
        srv.settimeout(0.05)
        with pytest.raises(TimeoutError):
            srv.recvfrom(10)
        srv.setblocking(False)
        with pytest.raises(BlockingIOError):
            srv.recvfrom(10)
        assert select.select([srv], [srv], [], 0) == ([], [srv], [])
        cli.send(b"sel")
        assert select.select([srv], [], [], WAIT)[0] == [srv]
        assert srv.recv(10) == b"sel"
        assert select.select([srv], [], [], 0)[0] == []


def test_connected_udp_learns_port_unreachable(
    nets: tuple[BlockingNetwork, BlockingNetwork],
) -> None:
    a, b = nets
    with a.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(WAIT)
        u.connect((b.address(4), 4999))
        u.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            u.recv(10)
    with a.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        with pytest.raises(OSError) as ei:
            u.send(b"nowhere")
        assert ei.value.errno == errno.EDESTADDRREQ


def test_udp_multicast_membership(nets: tuple[BlockingNetwork, BlockingNetwork]) -> None:
    a, b = nets
    group = "239.7.7.7"
    mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("0.0.0.0"))
    with (
        b.socket(socket.AF_INET, socket.SOCK_DGRAM) as r,
        a.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
    ):
        r.bind(("", 5401))
        r.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        r.settimeout(0.5)
        got = None
        for _ in range(40):  # the subscription travels to the root before frames follow it
            s.sendto(b"to the group", (group, 5401))
            try:
                got = r.recvfrom(100)
                break
            except TimeoutError:
                continue
        assert got is not None and got[0] == b"to the group"
        assert got[1][0] == a.address(4)
        r.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, mreq)
        with pytest.raises(OSError):
            r.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, mreq)
    with a.socket() as t, pytest.raises(OSError) as ei:
        t.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    assert ei.value.errno == errno.ENOPROTOOPT


# ---------------------------------------------------------------------------------------------
# Options, nodes, the descriptor
# ---------------------------------------------------------------------------------------------


def test_socket_options(world: BlockingLocalWorld) -> None:
    a, b = world.networks
    srv, port, loop = echo_server(b)
    try:
        with a.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.settimeout(WAIT)
            s.connect((b.address(4), port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 131072)
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 65536
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 131072
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 4) == struct.pack("i", 1)
            s.sendall(b"sync")  # the option posts ran before this reply came back
            assert recv_exactly(s, 4) == b"sync"
            stream = s._stream
            assert stream is not None and stream.handle is not None
            cfg = world.call(lambda: stream.handle.conn.config)  # type: ignore[union-attr]
            assert cfg.nodelay and cfg.keepalive and cfg.keepalive_idle_ms == 30_000
            assert cfg.send_buffer == 131072
            with pytest.raises(OSError) as ei:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, 1)
            assert ei.value.errno == errno.ENOPROTOOPT
            with pytest.raises(OSError) as ei:
                s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
            assert ei.value.errno == errno.ENOPROTOOPT
        with a.create_connection((b.address(4), port), timeout=WAIT) as plain:
            # Options never set keep the stack's configuration, and getsockopt reports it.
            pstream = plain._stream
            assert pstream is not None and pstream.handle is not None
            pcfg = world.call(lambda: pstream.handle.conn.config)  # type: ignore[union-attr]
            assert plain.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == pcfg.send_buffer
            assert plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == pcfg.recv_buffer
            assert world.call(lambda: (pcfg.send_buffer, pcfg.nodelay)) == (
                world.call(lambda: a.network.stack.config.tcp.send_buffer),
                world.call(lambda: a.network.stack.config.tcp.nodelay),
            )
        with a.socket(socket.AF_INET6) as s6:
            assert s6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        with a.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            with pytest.raises(OSError):
                u.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    finally:
        srv.close()
        loop.wait()


def test_blocking_node_of_its_own(world: BlockingLocalWorld, tmp_path: Path) -> None:
    """A BlockingNode with its own loop thread (busy-polling, :mod:`ztnode.transport.busypoll`)
    joins the world's network beside the world's members (several nodes and loops in one
    process); stopping it ends its sockets' calls."""
    home = tmp_path / "own"
    home.mkdir()
    IDS[3].save(home / "identity.secret", include_private=True)
    root = world.world.root
    assert root is not None
    ctl, clock = root.service.controller, root.service.clock
    world.call(
        lambda: ctl.update_member(
            world.network_id, IDS[3].address, {"authorized": True}, clock.now()
        )
    )
    world.call(root.service.controller_changed)
    a, _ = world.networks
    srv, port, loop = echo_server(a, resets=True)  # a stopping node resets its connections
    node = BlockingNode(
        home, planet=world.planet, allow_loopback=True, bind=("127.0.0.1",), busy_poll_us=200
    )
    selector = node._thread.loop._selector  # type: ignore[attr-defined]
    assert isinstance(selector, BusyPollSelector) and selector.spin_us == 200
    try:
        with node:
            assert node.address == f"{IDS[3].address:010x}"
            net = node.join(world.network_id, timeout=WAIT)
            assert net.status == "OK" and net.address(4).startswith("10.147.17.")
            assert node.network(world.network_id) is net and node.networks == [net]
            assert net.ping(a.address(4), timeout=WAIT) > 0
            s = net.create_connection((a.address(4), port), timeout=WAIT)
            s.sendall(b"own loop")
            assert recv_exactly(s, 8) == b"own loop"
            assert selector.stats()["spins"] > 0  # it polled after that traffic
            blocked = Bg(s.recv, 10)
        with pytest.raises(ConnectionAbortedError):
            blocked.wait()
        with pytest.raises(OSError):
            s.sendall(b"after")
        s.close()
        with net.socket() as late, pytest.raises(OSError):
            late.connect((a.address(4), port))
    finally:
        node.stop()
        srv.close()
        loop.wait()


def test_blocking_node_refuses_a_bad_busy_poll_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "never"
    with pytest.raises(ValueError, match=r"^busy_poll_us: -1 is not a number of microseconds"):
        BlockingNode(home, busy_poll_us=-1)
    monkeypatch.setenv("ZTNODE_BUSY_POLL", "lots")
    with pytest.raises(ValueError, match=r"^ZTNODE_BUSY_POLL=lots: not a number"):
        BlockingNode(home)
    assert not home.exists()  # nothing made


def test_signal_descriptor_levels() -> None:
    sig = _Signal()
    try:
        fd = sig.fileno()
        assert select.select([fd], [fd], [], 0) == ([], [fd], [])
        for _ in range(3):
            sig.set(readable=True, writable=True)
            assert select.select([fd], [fd], [], 0) == ([fd], [fd], [])
            sig.set(readable=True, writable=False)
            assert select.select([fd], [fd], [], 0) == ([fd], [], [])
            sig.set(readable=False, writable=False)
            assert select.select([fd], [fd], [], 0) == ([], [], [])
            sig.set(readable=False, writable=True)
            assert select.select([fd], [fd], [], 0) == ([], [fd], [])
    finally:
        sig.close()
    assert sig.fileno() == -1
    sig.set(True, True)  # harmless after close
