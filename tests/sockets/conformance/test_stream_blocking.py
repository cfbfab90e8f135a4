"""Stream conformance, blocking sockets: every check runs on the kernel's ``socket.socket``
over loopback (the reference) and on ztnode's blocking ``Socket``, and must observe the same."""

from __future__ import annotations

import hashlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.sockets.conformance.conftest import WAIT, BlockingImpl

pytestmark = pytest.mark.e2e  # real sockets on loopback


@contextmanager
def connected(
    impl: BlockingImpl, serve: Callable[[Any], None] | None = None
) -> Iterator[tuple[Any, Any]]:
    """A client socket connected to a server socket; ``serve`` runs with the accepted socket in
    a thread (bounded), else the accepted socket is handed back for the test to use."""
    listener = impl.server_socket()
    listener.bind((impl.host, 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    client = impl.client_socket()
    client.settimeout(WAIT)
    client.connect((impl.host, port))
    listener.settimeout(WAIT)
    conn, _ = listener.accept()
    conn.settimeout(WAIT)
    thread = None
    if serve is not None:
        thread = threading.Thread(target=serve, args=(conn,), daemon=True)
        thread.start()
    try:
        yield client, conn
    finally:
        if thread is not None:
            thread.join(WAIT)
            assert not thread.is_alive()
        for s in (client, conn, listener):
            s.close()


def _echo(conn: Any) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def _recv_all(s: Any) -> bytes:
    out = bytearray()
    while chunk := s.recv(65536):
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("size", [1, 1400, 2_000_000])
def test_sendall_echo(bimpl: BlockingImpl, size: int) -> None:
    with connected(bimpl, _echo) as (client, _):
        data = os.urandom(size)
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(_recv_all(client)), daemon=True)
        reader.start()
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        reader.join(WAIT)
        assert not reader.is_alive()
        assert hashlib.sha256(got[0]).digest() == hashlib.sha256(data).digest()


def test_recv_returns_at_most_n_and_at_least_one(bimpl: BlockingImpl) -> None:
    with connected(bimpl) as (client, conn):
        conn.sendall(b"0123456789")
        first = client.recv(4)
        assert 1 <= len(first) <= 4
        rest = b""
        while len(first + rest) < 10:
            rest += client.recv(100)
        assert first + rest == b"0123456789"


def test_half_close_then_answer(bimpl: BlockingImpl) -> None:
    with connected(bimpl) as (client, conn):
        client.sendall(b"question")
        client.shutdown(socket.SHUT_WR)
        assert _recv_all(conn) == b"question"  # EOF reached
        assert conn.recv(10) == b""  # and stays
        conn.sendall(b"answer")
        conn.close()
        assert _recv_all(client) == b"answer"
        assert client.recv(10) == b""


def test_timeout_on_a_quiet_connection(bimpl: BlockingImpl) -> None:
    with connected(bimpl) as (client, _):
        client.settimeout(0.2)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            client.recv(10)
        assert 0.15 <= time.monotonic() - start < 5


def test_nonblocking_recv_without_data(bimpl: BlockingImpl) -> None:
    with connected(bimpl) as (client, conn):
        client.setblocking(False)
        with pytest.raises(BlockingIOError):
            client.recv(10)
        conn.sendall(b"now")
        deadline = time.monotonic() + WAIT
        while True:
            try:
                assert client.recv(10) == b"now"
                break
            except BlockingIOError:
                assert time.monotonic() < deadline
                time.sleep(0.005)


def test_select_sees_data_and_eof(bimpl: BlockingImpl) -> None:
    with connected(bimpl) as (client, conn):
        assert select.select([client], [], [], 0.05)[0] == []
        conn.sendall(b"ping")
        assert select.select([client], [], [], WAIT)[0] == [client]
        assert client.recv(10) == b"ping"
        conn.shutdown(socket.SHUT_WR)
        assert select.select([client], [], [], WAIT)[0] == [client]
        assert client.recv(10) == b""
        assert select.select([], [client], [], WAIT)[1] == [client]  # still writable


def test_makefile_readline(bimpl: BlockingImpl) -> None:
    with connected(bimpl) as (client, conn):
        conn.sendall(b"first line\nsecond")
        conn.shutdown(socket.SHUT_WR)
        f = client.makefile("rb")
        assert f.readline() == b"first line\n"
        assert f.read() == b"second"
        f.close()


def test_connect_to_a_closed_port_is_refused(bimpl: BlockingImpl) -> None:
    probe = bimpl.server_socket()
    probe.bind((bimpl.host, 0))
    port = probe.getsockname()[1]
    probe.close()  # bound once, never listened on
    s = bimpl.client_socket()
    s.settimeout(WAIT)
    try:
        with pytest.raises(ConnectionRefusedError):
            s.connect((bimpl.host, port))
    finally:
        s.close()


def test_addresses(bimpl: BlockingImpl) -> None:
    with connected(bimpl) as (client, conn):
        peer, mine = client.getpeername(), client.getsockname()
        assert peer[0] == bimpl.host and mine[0] == bimpl.client_host
        assert conn.getpeername() == mine and conn.getsockname() == peer


def test_reset_by_peer(bimpl: BlockingImpl) -> None:
    with connected(bimpl) as (client, conn):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()
        with pytest.raises(ConnectionResetError):
            client.recv(10)
