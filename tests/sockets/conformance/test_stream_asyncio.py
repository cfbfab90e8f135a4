"""Stream conformance, asyncio: every check runs on kernel TCP (the reference) and on ztnode's
``open_connection``/``start_server`` streams, and must observe the same."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.sockets.conformance.conftest import WAIT, AsyncImpl

pytestmark = pytest.mark.e2e  # real sockets on loopback

Run = Callable[[Awaitable[Any]], Any]


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _pair(
    impl: AsyncImpl, handler: Any
) -> tuple[Any, asyncio.StreamReader, asyncio.StreamWriter]:
    server, host, port = await impl.serve(handler)
    reader, writer = await impl.connect(host, port)
    return server, reader, writer


async def _close(server: Any, writer: asyncio.StreamWriter) -> None:
    writer.close()
    await asyncio.wait_for(writer.wait_closed(), WAIT)
    server.close()


@pytest.mark.parametrize("size", [1, 1400, 1_000_000])
def test_echo_both_ways(aimpl: AsyncImpl, arun: Run, size: int) -> None:
    async def check() -> None:
        server, reader, writer = await _pair(aimpl, _echo)
        data = os.urandom(size)
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        got = await asyncio.wait_for(reader.read(), WAIT)  # to EOF: the server closes after
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        await _close(server, writer)

    arun(check())


def test_half_close_lets_the_other_side_answer(aimpl: AsyncImpl, arun: Run) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read()  # everything up to the client's FIN
        assert reader.at_eof()
        writer.write(b"got " + str(len(request)).encode())
        await writer.drain()
        writer.close()

    async def check() -> None:
        server, reader, writer = await _pair(aimpl, handler)
        writer.write(b"x" * 5000)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), WAIT) == b"got 5000"
        assert reader.at_eof()
        assert await reader.read(10) == b""  # and again, still EOF
        await _close(server, writer)

    arun(check())


def test_readexactly_and_readuntil(aimpl: AsyncImpl, arun: Run) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"line one\nline two\npartial")
        await writer.drain()
        writer.close()

    async def check() -> None:
        server, reader, writer = await _pair(aimpl, handler)
        assert await reader.readuntil(b"\n") == b"line one\n"
        assert await reader.readline() == b"line two\n"
        with pytest.raises(asyncio.IncompleteReadError) as e:
            await asyncio.wait_for(reader.readexactly(100), WAIT)
        assert e.value.partial == b"partial"
        await _close(server, writer)

    arun(check())


def test_connection_refused(aimpl: AsyncImpl, arun: Run) -> None:
    async def check() -> None:
        host, port = await aimpl.closed_port()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(aimpl.connect(host, port), WAIT)

    arun(check())


def test_drain_holds_a_fast_writer_back_and_loses_nothing(aimpl: AsyncImpl, arun: Run) -> None:
    size = 4_000_000
    started = asyncio.Event()

    async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(started.wait(), WAIT)
        await asyncio.sleep(0.3)  # the writer meets a full window meanwhile
        h, n = hashlib.sha256(), 0
        while chunk := await reader.read(65536):
            h.update(chunk)
            n += len(chunk)
        writer.write(f"{n} {h.hexdigest()}".encode())
        await writer.drain()
        writer.close()

    async def check() -> None:
        server, reader, writer = await _pair(aimpl, slow_reader)
        data = os.urandom(size)
        started.set()
        for i in range(0, size, 100_000):
            writer.write(data[i : i + 100_000])
            await asyncio.wait_for(writer.drain(), WAIT)
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), WAIT)
        assert answer == f"{size} {hashlib.sha256(data).hexdigest()}".encode()
        await _close(server, writer)

    arun(check())


def test_both_directions_at_once(aimpl: AsyncImpl, arun: Run) -> None:
    size = 1_000_000
    theirs = os.urandom(size)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send() -> None:
            writer.write(theirs)
            await writer.drain()
            writer.write_eof()

        got, _ = await asyncio.gather(reader.read(), send())
        assert len(got) == size
        writer.close()

    async def check() -> None:
        server, reader, writer = await _pair(aimpl, handler)
        ours = os.urandom(size)

        async def send() -> None:
            writer.write(ours)
            await writer.drain()
            writer.write_eof()

        got, _ = await asyncio.wait_for(asyncio.gather(reader.read(), send()), WAIT)
        assert got == theirs
        await _close(server, writer)

    arun(check())


def test_twenty_connections_at_once(aimpl: AsyncImpl, arun: Run) -> None:
    async def check() -> None:
        server, host, port = await aimpl.serve(_echo)

        async def one(i: int) -> bytes:
            reader, writer = await aimpl.connect(host, port)
            writer.write(f"hello {i}".encode())
            writer.write_eof()
            got = await reader.read()
            writer.close()
            await writer.wait_closed()
            return got

        got = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(20))), WAIT)
        assert got == [f"hello {i}".encode() for i in range(20)]
        server.close()

    arun(check())


def test_reset_by_peer(aimpl: AsyncImpl, arun: Run) -> None:
    accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(writer)

    async def check() -> None:
        server, reader, writer = await _pair(aimpl, handler)
        peer = await asyncio.wait_for(accepted.get(), WAIT)
        aimpl.reset(peer)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), WAIT)
        writer.close()
        server.close()

    arun(check())


def test_close_and_extra_info(aimpl: AsyncImpl, arun: Run) -> None:
    async def check() -> None:
        server, _reader, writer = await _pair(aimpl, _echo)
        peer = writer.get_extra_info("peername")
        mine = writer.get_extra_info("sockname")
        assert isinstance(peer, tuple) and isinstance(peer[0], str) and isinstance(peer[1], int)
        assert isinstance(mine, tuple) and mine[1] > 0 and peer[1] > 0
        assert not writer.is_closing()
        writer.close()
        assert writer.is_closing()
        await asyncio.wait_for(writer.wait_closed(), WAIT)
        server.close()

    arun(check())
