"""Implementations of a stream under test, behind two small adapters: kernel TCP on loopback is
the reference every check must pass first; ztnode's asyncio streams and blocking sockets must
then behave the same. One in-process world (root, controller, two members over loopback UDP)
serves the whole module: the asyncio checks run on its loop thread, the blocking ones in the
test's thread."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from ztnode.sockets.blocking import BlockingNetwork, Socket
from ztnode.testing.blocking import BlockingLocalWorld

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
WAIT = 20.0  # bounds every wait; never expected to elapse


@dataclass
class AsyncImpl:
    """Opens a server and a client connection, asyncio style; ``reset`` closes a connection
    with a RST (the kernel needs SO_LINGER 0 for that, ztnode's transport aborts)."""

    name: str
    serve: Callable[[Handler], Awaitable[tuple[Any, str, int]]]
    connect: Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
    closed_port: Callable[[], Awaitable[tuple[str, int]]]
    reset: Callable[[asyncio.StreamWriter], None]


@dataclass
class BlockingImpl:
    """Makes server and client sockets, stdlib style."""

    name: str
    server_socket: Callable[[], socket.socket | Socket]
    client_socket: Callable[[], socket.socket | Socket]
    host: str  # the server's address
    client_host: str  # the client's own address


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlockingLocalWorld]:
    base: Path = tmp_path_factory.mktemp("conformance")
    with BlockingLocalWorld(base, members=2, identities=test_identities()[:3]) as w:
        yield w


def _kernel_async() -> AsyncImpl:
    async def serve(handler: Handler) -> tuple[Any, str, int]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        return server, "127.0.0.1", server.sockets[0].getsockname()[1]

    async def connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)

    async def closed_port() -> tuple[str, int]:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # bound once, never listened on: nothing accepts there
        return "127.0.0.1", port

    def reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    return AsyncImpl("kernel", serve, connect, closed_port, reset)


def _ztnode_async(a: BlockingNetwork, b: BlockingNetwork) -> AsyncImpl:
    host = b.address(4)

    async def serve(handler: Handler) -> tuple[Any, str, int]:
        server = await b.network.start_server(handler, host, 0)
        return server, host, server.port

    async def connect(h: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await a.network.open_connection(h, port, timeout=WAIT)

    async def closed_port() -> tuple[str, int]:
        return host, 40999

    def reset(writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    return AsyncImpl("ztnode", serve, connect, closed_port, reset)


@pytest.fixture(params=["kernel", "ztnode"])
def aimpl(request: pytest.FixtureRequest, world: BlockingLocalWorld) -> AsyncImpl:
    if request.param == "kernel":
        return _kernel_async()
    return _ztnode_async(world.networks[0], world.networks[1])


@pytest.fixture
def arun(world: BlockingLocalWorld) -> Callable[[Awaitable[Any]], Any]:
    """Run a check's coroutine on the world's loop (where ztnode's objects live), bounded."""

    def run(coro: Awaitable[Any]) -> Any:
        async def bounded() -> Any:
            return await asyncio.wait_for(coro, WAIT * 3)

        return world.run(bounded(), WAIT * 4)

    return run


@pytest.fixture(params=["kernel", "ztnode"])
def bimpl(request: pytest.FixtureRequest, world: BlockingLocalWorld) -> BlockingImpl:
    if request.param == "kernel":
        return BlockingImpl("kernel", socket.socket, socket.socket, "127.0.0.1", "127.0.0.1")
    a, b = world.networks
    return BlockingImpl("ztnode", b.socket, a.socket, b.address(4), a.address(4))
