"""TLS on the asyncio API, by every standard route: ``ssl=`` on connections and servers,
``StreamWriter.start_tls`` and ``loop.start_tls``, buffered protocols, certificate checks and
their errors, IPv4 and IPv6; on a local world over loopback."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from tests.helpers.data import test_identities
from ztnode.sockets.aio import Network
from ztnode.testing.local import LocalZtWorld
from ztnode.testing.tls import TestCa, make_ca

pytestmark = pytest.mark.e2e

IDS = test_identities()


def run(coro_fn, tmp_path: Path, timeout: float = 90.0) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3]) as w:
            a, b = w.networks
            ca = make_ca(tmp_path / "ca", [b.address(4), b.address(6)])
            await asyncio.wait_for(coro_fn(a, b, ca), timeout)

    asyncio.run(main())


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.mark.parametrize("family", [4, 6])
def test_tls_streams_both_ways(tmp_path: Path, family: int) -> None:
    async def body(a: Network, b: Network, ca: TestCa) -> None:
        server = await b.start_server(_echo, port=443, family=family, ssl=ca.server_context())
        reader, writer = await a.open_connection(b.address(family), 443, ssl=ca.client_context())
        tls = writer.get_extra_info("ssl_object")
        assert isinstance(tls, ssl.SSLObject) and tls.version() in ("TLSv1.2", "TLSv1.3")
        assert writer.get_extra_info("peercert")["subjectAltName"]
        payload = bytes(range(256)) * 2000  # 512 KB: many records, flow control on the way
        writer.write(payload)
        await writer.drain()
        assert await reader.readexactly(len(payload)) == payload
        writer.close()
        await writer.wait_closed()
        server.close()

    run(body, tmp_path)


def test_a_wrong_name_or_an_unknown_ca_is_refused_with_the_stdlib_error(tmp_path: Path) -> None:
    async def body(a: Network, b: Network, ca: TestCa) -> None:
        server = await b.start_server(_echo, port=443, ssl=ca.server_context())
        with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|doesn't match"):
            await a.open_connection(
                b.address(4), 443, ssl=ca.client_context(), server_hostname="other.test"
            )
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await a.open_connection(b.address(4), 443, ssl=True)  # the system CAs only
        # The name in the certificate, asked for explicitly, passes.
        _, writer = await a.open_connection(
            b.address(4), 443, ssl=ca.client_context(), server_hostname="server.test"
        )
        writer.close()
        server.close()

    run(body, tmp_path)


def test_starttls_upgrades_a_plain_connection(tmp_path: Path) -> None:
    """A plain greeting, then both sides switch to TLS on the same connection (as SMTP's and
    IMAP's STARTTLS do) with ``StreamWriter.start_tls`` and ``loop.start_tls``."""

    async def body(a: Network, b: Network, ca: TestCa) -> None:
        done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 ready for TLS\n")
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"220 go ahead\n")
            await writer.drain()
            await writer.start_tls(ca.server_context())
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            done.set_result(line)
            writer.close()

        server = await b.start_server(serve, port=25)
        reader, writer = await a.open_connection(b.address(4), 25)
        assert await reader.readline() == b"220 ready for TLS\n"
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"220 go ahead\n"
        await writer.start_tls(ca.client_context(), server_hostname=b.address(4))
        assert writer.get_extra_info("ssl_object") is not None
        writer.write(b"secret over tls\n")
        assert await reader.readline() == b"SECRET OVER TLS\n"
        assert await done == b"secret over tls\n"
        writer.close()
        server.close()

    run(body, tmp_path)


def test_buffered_protocols_plain_and_tls(tmp_path: Path) -> None:
    class Collect(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buf = bytearray(1000)  # small on purpose: many get_buffer rounds
            self.got = bytearray()
            self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def get_buffer(self, sizehint: int) -> memoryview:
            # A memoryview, not the bytearray: asyncio's TLS protocol slices the buffer it is
            # given, and a bytearray slice is a copy (so it is on kernel sockets too).
            return memoryview(self.buf)

        def buffer_updated(self, nbytes: int) -> None:
            self.got += self.buf[:nbytes]

        def eof_received(self) -> bool:
            return False

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.closed.done():
                self.closed.set_result(None)

    async def body(a: Network, b: Network, ca: TestCa) -> None:
        payload = bytes(range(256)) * 400

        async def send_all(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(payload)
            await writer.drain()
            writer.close()

        plain = await b.start_server(send_all, port=80)
        secure = await b.start_server(send_all, port=443, ssl=ca.server_context())
        for port, tls in ((80, None), (443, ca.client_context())):
            _, proto = await a.create_connection(Collect, b.address(4), port, ssl=tls)
            assert isinstance(proto, Collect)
            await asyncio.wait_for(proto.closed, 20)
            assert bytes(proto.got) == payload, port
        plain.close()
        secure.close()

    run(body, tmp_path)


def test_tls_arguments_follow_asyncio_rules(tmp_path: Path) -> None:
    async def body(a: Network, b: Network, ca: TestCa) -> None:
        with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
            await a.open_connection(b.address(4), 1, server_hostname="x")
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
            await a.open_connection(b.address(4), 1, ssl_handshake_timeout=5)
        with pytest.raises(TypeError, match="SSLContext"):
            await b.start_server(_echo, port=1, ssl=True)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="family"):
            await b.start_server(_echo, port=1, family=99)

    run(body, tmp_path)
