"""The proxies into the overlay (``ztnode.sockets.proxy``) end to end on a local world: member A
runs them on this machine's loopback, member B serves HTTP, HTTPS and an echo on the overlay.
Clients are what users have: curl (through SOCKS5 and the HTTP proxy, HTTPS by CONNECT),
httpx and requests, and a SOCKS5 handshake spelled out byte by byte for the error replies;
then credentials, and port forwards both ways."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.helpers.data import test_identities
from ztnode.sockets.aio import Network, Node
from ztnode.sockets.proxy import Credentials, HttpProxy, PortForward, PortPublish, Socks5Proxy
from ztnode.testing.local import LocalZtWorld
from ztnode.testing.tls import TestCa, make_ca

pytestmark = pytest.mark.e2e

IDS = test_identities()
REQUIRE = os.environ.get("ZTNODE_REQUIRE_INTEROP", "") not in ("", "0")
Body = Callable[[Node, Network, Network, TestCa], Awaitable[None]]


def run(body: Body, tmp_path: Path, timeout: float = 90.0) -> None:
    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3]) as w:
            a, b = w.networks
            ca = make_ca(tmp_path / "ca", [b.address(4), b.address(6)])
            servers = [
                await b.start_server(_http, port=80, family=0),
                await b.start_server(_http, port=443, family=0, ssl=ca.server_context()),
                await b.start_server(_echo, port=7, family=0),
            ]
            try:
                await asyncio.wait_for(body(w.members[0], a, b, ca), timeout)
            finally:
                for s in servers:
                    s.close()

    asyncio.run(main())


async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    path = head.split(b" ")[1].decode()
    body = f"hello {path} over the overlay".encode()
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    writer.close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def curl(*args: str) -> tuple[int, str, str]:
    if shutil.which("curl") is None:
        if REQUIRE:
            pytest.fail("curl is missing (.ci/run installs it)")
        pytest.skip("curl is not installed")
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "20", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_curl_through_socks5_and_the_http_proxy(tmp_path: Path) -> None:
    async def body(node: Node, a: Network, b: Network, ca: TestCa) -> None:
        socks, http = Socks5Proxy(node), HttpProxy(node)
        _, sport = await socks.start("127.0.0.1", 0)
        _, hport = await http.start("127.0.0.1", 0)
        try:
            for family in (4, 6):
                host = b.address(family)
                url_host = host if family == 4 else f"[{host}]"
                rc, out, err = await curl("--socks5", f"127.0.0.1:{sport}", f"http://{url_host}/s")
                assert (rc, out) == (0, "hello /s over the overlay"), err
                rc, out, err = await curl("-x", f"http://127.0.0.1:{hport}", f"http://{url_host}/h")
                assert (rc, out) == (0, "hello /h over the overlay"), err
                rc, out, err = await curl(
                    "-x", f"http://127.0.0.1:{hport}", "--cacert", str(ca.ca_file),
                    f"https://{url_host}/tls",
                )  # fmt: skip
                assert (rc, out) == (0, "hello /tls over the overlay"), err
            # A closed port: SOCKS reply 5 (connection refused), an HTTP 502 naming the cause.
            rc, _, err = await curl("--socks5", f"127.0.0.1:{sport}", f"http://{b.address(4)}:81/")
            assert rc != 0 and "(5)" in err
            rc, out, err = await curl(
                "-x",
                f"http://127.0.0.1:{hport}",
                "-w",
                "%{http_code}",
                f"http://{b.address(4)}:81/",
            )
            assert out.endswith("502") and "refused" in out, (out, err)
        finally:
            await socks.close()
            await http.close()

    run(body, tmp_path)


def test_httpx_and_requests_through_the_http_proxy(tmp_path: Path) -> None:
    httpx = pytest.importorskip("httpx")
    requests = pytest.importorskip("requests")

    async def body(node: Node, a: Network, b: Network, ca: TestCa) -> None:
        http = HttpProxy(node)
        _, port = await http.start("127.0.0.1", 0)
        proxy = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(proxy=proxy, verify=ca.client_context()) as client:
                r = await client.get(f"http://{b.address(4)}/x")
                assert r.text == "hello /x over the overlay"
                r = await client.get(f"https://{b.address(4)}/y")
                assert r.text == "hello /y over the overlay"

            def blocking() -> str:
                proxies = {"http": proxy, "https": proxy}
                r = requests.get(
                    f"https://{b.address(4)}/z", proxies=proxies, verify=str(ca.ca_file), timeout=20
                )
                return str(r.text)

            assert await asyncio.to_thread(blocking) == "hello /z over the overlay"
        finally:
            await http.close()

    run(body, tmp_path)


async def _socks_connect(
    port: int, dest: bytes, dport: int, auth: tuple[bytes, bytes] | None = None
) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01" + (b"\x02" if auth else b"\x00"))
    method = await reader.readexactly(2)
    if method[1] == 0xFF:
        return -1, reader, writer
    if auth is not None:
        user, password = auth
        writer.write(bytes((1, len(user))) + user + bytes((len(password),)) + password)
        if (await reader.readexactly(2))[1] != 0:
            return -2, reader, writer
    atyp = 1 if len(dest) == 4 else 4
    writer.write(bytes((5, 1, 0, atyp)) + dest + struct.pack("!H", dport))
    reply = await reader.readexactly(4)
    await reader.readexactly((4 if reply[3] == 1 else 16) + 2)
    return reply[1], reader, writer


def test_socks5_replies_and_credentials(tmp_path: Path) -> None:
    import ipaddress

    async def body(node: Node, a: Network, b: Network, ca: TestCa) -> None:
        creds = Credentials.parse("alice:s3cret")
        socks = Socks5Proxy(node, creds)
        http = HttpProxy(node, creds)
        _, sport = await socks.start("127.0.0.1", 0)
        _, hport = await http.start("127.0.0.1", 0)
        dest = ipaddress.ip_address(b.address(4)).packed
        try:
            code, _, w = await _socks_connect(sport, dest, 7)  # no credentials offered
            assert code == -1
            w.close()
            code, _, w = await _socks_connect(sport, dest, 7, (b"alice", b"wrong"))
            assert code == -2
            w.close()
            code, r, w = await _socks_connect(sport, dest, 7, (b"alice", b"s3cret"))
            assert code == 0
            w.write(b"through socks")
            assert await r.readexactly(13) == b"through socks"
            w.close()
            code, _, w = await _socks_connect(
                sport, bytes([192, 0, 2, 1]), 7, (b"alice", b"s3cret")
            )
            assert code == 3  # network unreachable: on none of our networks
            w.close()
            code, _, w = await _socks_connect(sport, dest, 81, (b"alice", b"s3cret"))
            assert code == 5  # connection refused
            w.close()
            # The HTTP proxy: 407 without credentials, through with them.
            r, w = await asyncio.open_connection("127.0.0.1", hport)
            w.write(f"GET http://{b.address(4)}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert (await r.readline()).startswith(b"HTTP/1.1 407")
            w.close()
            token = base64.b64encode(b"alice:s3cret").decode()
            r, w = await asyncio.open_connection("127.0.0.1", hport)
            w.write(
                f"GET http://{b.address(4)}/ok HTTP/1.1\r\nHost: x\r\n"
                f"Proxy-Authorization: Basic {token}\r\n\r\n".encode()
            )
            assert (await r.read()).endswith(b"hello /ok over the overlay")
            w.close()
        finally:
            await socks.close()
            await http.close()

    run(body, tmp_path)


def test_port_forwards_both_ways(tmp_path: Path) -> None:
    async def body(node: Node, a: Network, b: Network, ca: TestCa) -> None:
        # Local port -> B's overlay echo.
        fwd = PortForward(node, b.address(6), 7)
        _, lport = await fwd.start("127.0.0.1", 0)
        r, w = await asyncio.open_connection("127.0.0.1", lport)
        w.write(b"forwarded")
        assert await r.readexactly(9) == b"forwarded"
        w.close()
        await fwd.close()

        # A's overlay port -> an echo on this machine's loopback, reached by B.
        async def local_echo(rd: asyncio.StreamReader, wr: asyncio.StreamWriter) -> None:
            wr.write(b"local:" + await rd.readexactly(9))
            await wr.drain()
            wr.close()

        local = await asyncio.start_server(local_echo, "127.0.0.1", 0)
        pub = PortPublish(a, 0, "127.0.0.1", local.sockets[0].getsockname()[1])
        oport = await pub.start()
        for family in (4, 6):
            r, w = await b.open_connection(a.address(family), oport)
            w.write(b"published")
            assert await r.readexactly(15) == b"local:published"
            w.close()
        await pub.close()
        local.close()

    run(body, tmp_path)


def test_grpc_through_the_http_proxy_to_a_published_server(tmp_path: Path) -> None:
    """grpcio opens its own sockets (no loop to patch): its client goes through the HTTP
    proxy (CONNECT, grpc's own ``grpc.http_proxy`` option) to a gRPC server of this machine
    that another member publishes on the overlay."""
    grpc = pytest.importorskip("grpc")
    from concurrent import futures

    def upper(request: bytes, context: object) -> bytes:
        return request.upper()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "demo.Shout", {"Upper": grpc.unary_unary_rpc_method_handler(upper)}
    )
    server.add_generic_rpc_handlers((handler,))
    local_port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    async def body(node: Node, a: Network, b: Network, ca: TestCa) -> None:
        pub = PortPublish(b, 50051, "127.0.0.1", local_port)
        await pub.start()
        http = HttpProxy(node)
        _, hport = await http.start("127.0.0.1", 0)

        def call() -> bytes:
            options = [("grpc.http_proxy", f"http://127.0.0.1:{hport}")]
            with grpc.insecure_channel(f"{b.address(4)}:50051", options=options) as channel:
                rpc = channel.unary_unary("/demo.Shout/Upper")
                return bytes(rpc(b"grpc over the overlay", timeout=20))

        try:
            assert await asyncio.to_thread(call) == b"GRPC OVER THE OVERLAY"
        finally:
            await http.close()
            await pub.close()

    try:
        run(body, tmp_path)
    finally:
        server.stop(None)
