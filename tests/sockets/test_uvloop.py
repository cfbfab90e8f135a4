"""ztnode on uvloop (the ``uvloop`` extra): a local world's members exchange TCP (small, bulk,
STARTTLS, through ``patch_loop``), UDP and ping on a program's ``uvloop.run``, and the blocking
facade's loop thread runs on uvloop when the program installs uvloop's policy. Everything on
loopback, every byte checked.

What uvloop does differently and these prove handled: ``loop.time()`` counts whole milliseconds
(ping measures with ``perf_counter``), ``loop.start_tls`` takes only uvloop's own transports
(:func:`ztnode.sockets.tls.route_start_tls`), the loop is a different class (the instance patches
of ``patch_loop``). The rest of the suite runs on uvloop with ``pytest --loop uvloop``.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.data import test_identities
from ztnode.sockets.aio import Network
from ztnode.testing.blocking import BlockingLocalWorld
from ztnode.testing.local import LocalZtWorld
from ztnode.testing.tls import make_ca

uvloop = pytest.importorskip(
    "uvloop",
    reason="uvloop is not installed (pip install 'ztnode[uvloop]'; the test and dev extras add it)",
)

pytestmark = pytest.mark.e2e  # real sockets, loopback only

IDS = test_identities()
WAIT = 20.0  # bounds a hang; never expected to elapse


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _tcp_echo(a: Network, b: Network, family: int) -> None:
    reader, writer = await a.open_connection(b.address(family), 7)
    rng = random.Random(family)
    for size in (1, 1400, 300_000):
        data = rng.randbytes(size)
        writer.write(data)
        assert await asyncio.wait_for(reader.readexactly(size), WAIT) == data
    writer.close()
    await writer.wait_closed()


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data[::-1], addr)


class _UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.put_nowait(data)


def test_local_world_on_uvloop(tmp_path: Path) -> None:
    async def main() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3]) as w:
            a, b = w.networks
            servers = [await b.start_server(_echo, b.address(f), 7) for f in (4, 6)]
            for family in (4, 6):
                await _tcp_echo(a, b, family)

            # UDP both ways, IPv4 and IPv6: the reply is the datagram reversed.
            for family in (4, 6):
                st, _ = await b.create_datagram_endpoint(
                    _UdpEcho, local_addr=(b.address(family), 5300)
                )
                ct, cp = await a.create_datagram_endpoint(
                    _UdpClient, remote_addr=(b.address(family), 5300)
                )
                assert isinstance(cp, _UdpClient)
                for i in range(5):
                    payload = f"datagram {i} over IPv{family}".encode()
                    ct.sendto(payload)
                    assert await asyncio.wait_for(cp.got.get(), WAIT) == payload[::-1]
                st.close()
                ct.close()

            # A round trip on loopback is well under a millisecond, uvloop's clock's grain.
            rtt = await a.ping(b.address(4))
            assert 0 < rtt < 2

            # Libraries' own connect (asyncio.open_connection -> loop.create_connection),
            # routed onto the overlay by patching the uvloop instance.
            with w.members[0].patch_loop():
                reader, writer = await asyncio.open_connection(b.address(6), 7)
                writer.write(b"through the loop")
                assert await asyncio.wait_for(reader.readexactly(16), WAIT) == b"through the loop"
                writer.close()
            for server in servers:
                server.close()

            # STARTTLS both sides with StreamWriter.start_tls (uvloop's loop.start_tls refuses
            # ztnode's transports; ztnode routes them to the stdlib's TLS).
            ca = make_ca(tmp_path / "ca", [b.address(4)])
            server_context = ca.server_context()

            async def tls_server(r: asyncio.StreamReader, wr: asyncio.StreamWriter) -> None:
                assert await r.readline() == b"STARTTLS\n"
                wr.write(b"220 go ahead\n")
                await wr.drain()
                await wr.start_tls(server_context)
                wr.write((await r.readline()).upper())
                await wr.drain()
                wr.close()

            tls_srv = await b.start_server(tls_server, port=25)
            reader, writer = await a.open_connection(b.address(4), 25)
            writer.write(b"STARTTLS\n")
            assert await asyncio.wait_for(reader.readline(), WAIT) == b"220 go ahead\n"
            await writer.start_tls(ca.client_context(), server_hostname=b.address(4))
            assert writer.get_extra_info("ssl_object") is not None
            writer.write(b"secret over tls\n")
            assert await asyncio.wait_for(reader.readline(), WAIT) == b"SECRET OVER TLS\n"
            writer.close()
            tls_srv.close()

    uvloop.run(asyncio.wait_for(main(), 120))


@pytest.fixture
def uvloop_policy() -> Iterator[None]:
    """uvloop's policy for the test, as a program installing it would; restored after."""
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(previous)


@pytest.mark.usefixtures("uvloop_policy")
def test_blocking_sockets_on_a_uvloop_thread(tmp_path: Path) -> None:
    with BlockingLocalWorld(tmp_path, members=2, identities=IDS[:3]) as w:
        assert isinstance(w.loop, uvloop.Loop)
        a, b = w.networks
        host = b.address(4)

        # TCP: a listener on b, a client on a, one connection echoed by this thread.
        srv = b.socket(socket.AF_INET)
        srv.bind(("", 0))
        srv.listen()
        srv.settimeout(WAIT)
        port = srv.getsockname()[1]
        client = a.socket(socket.AF_INET)
        client.settimeout(WAIT)
        client.connect((host, port))
        conn, _ = srv.accept()
        conn.settimeout(WAIT)
        data = random.Random(7).randbytes(100_000)
        client.sendall(data)
        got = bytearray()
        while len(got) < len(data):
            chunk = conn.recv(65536)
            assert chunk, "EOF before the data"
            got += chunk
        assert got == data
        for s in (client, conn, srv):
            s.close()

        # UDP: sendto and recvfrom both ways.
        u_b = b.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u_b.bind(("", 0))
        u_b.settimeout(WAIT)
        u_a = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u_a.settimeout(WAIT)
        u_a.sendto(b"hello from a", (host, u_b.getsockname()[1]))
        payload, sender = u_b.recvfrom(2048)
        assert payload == b"hello from a"
        u_b.sendto(b"hello from b", sender)
        assert u_a.recvfrom(2048)[0] == b"hello from b"
        u_a.close()
        u_b.close()


def test_node_daemon_runs_on_uvloop_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ZTNODE_LOOP=uvloop ztnode node``: says so at start, serves its local API (what
    ``ztnode info`` asks), and stops cleanly on SIGINT (uvloop's signal handling)."""
    from tests.cli.test_cli_node import info_json, node, stop, write_planet

    monkeypatch.setenv("ZTNODE_LOOP", "uvloop")
    planet_file = tmp_path / "planet"
    write_planet(planet_file, IDS[0], 1)  # nobody answers there: the node stays offline
    home = tmp_path / "home"
    with node(home, planet_file) as p:
        assert info_json(home)["online"] is False
        assert stop(p) == 0
        out = p.output()
        assert "event loop: uvloop" in out and "state saved" in out
        assert "Traceback" not in out
