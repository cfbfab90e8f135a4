"""``httpx.AsyncClient(transport=AsyncZtTransport(node))`` on a world of its own per test (the
client on the node's loop, as asyncio programs have it) against :func:`serve_asgi` on member B:
plain and TLS, IPv4 and IPv6, names, bodies both ways, keep-alive, lifespan state, the kernel
past the overlay, and failures as httpx's exceptions."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.helpers.data import test_identities
from tests.http.apps import STREAM_CHUNKS, LifespanApp, chunk, pattern
from tests.http.conftest import DOMAIN, WEB, unassigned
from ztnode.http.asgi import serve_asgi
from ztnode.http.httpx_transport import AsyncZtTransport, async_transport
from ztnode.sockets.aio import Network, Node
from ztnode.testing.local import LocalZtWorld
from ztnode.testing.tls import make_ca

pytestmark = pytest.mark.e2e

IDS = test_identities()
Body = Callable[[LocalZtWorld, Node, Network, Network], Awaitable[None]]


def run(tmp_path: Path, body: Body, timeout: float = 90.0) -> None:
    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3], dns_domain=DOMAIN) as w:
            w.name_member(w.members[1], "web")
            a, b = w.networks
            await asyncio.wait_for(body(w, w.members[0], a, b), timeout)

    asyncio.run(main())


def test_get_post_stream_keepalive_and_lifespan(tmp_path: Path) -> None:
    async def body(w: LocalZtWorld, node: Node, a: Network, b: Network) -> None:
        app = LifespanApp()
        server = await serve_asgi(b, app, port=0)
        assert app.events == ["startup"]
        async with httpx.AsyncClient(transport=async_transport(node), timeout=20) as client:
            first = (await client.get(server.url)).json()
            second = (await client.get(server.url + "again")).json()
            assert first["client"][0] == a.address(4)
            assert first["client"] == second["client"]  # one TCP connection for both
            assert first["state"] == {"greeting": "set at startup"}

            data = os.urandom(400_000)
            echoed = (await client.post(server.url + "echo", content=data)).json()
            assert echoed == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}

            async with client.stream("GET", server.url + "stream") as resp:
                assert "content-length" not in resp.headers
                parts = [part async for part in resp.aiter_bytes()]
            assert b"".join(parts) == b"".join(chunk(i) for i in range(STREAM_CHUNKS))

            six = f"http://[{b.address(6)}]:{server.port}/six"
            assert (await client.get(six)).json()["path"] == "/six"
            named = (await client.get(f"http://{WEB}:{server.port}/named")).json()
            assert named["host"] == f"{WEB}:{server.port}"
        await server.close()
        assert app.events == ["startup", "shutdown"]

    run(tmp_path, body)


def test_slow_reader_and_server_closed_idle_connection(tmp_path: Path) -> None:
    async def body(w: LocalZtWorld, node: Node, a: Network, b: Network) -> None:
        server = await serve_asgi(b, LifespanApp(), port=80, timeout_keep_alive=1)
        async with httpx.AsyncClient(transport=AsyncZtTransport(node), timeout=20) as client:
            size = 3_000_000
            got = bytearray()
            async with client.stream("GET", f"{server.url}bytes?n={size}") as resp:
                async for part in resp.aiter_bytes():
                    got += part
                    if len(got) < 1_000_000:
                        await asyncio.sleep(0.01)  # a slow reader: the window closes, reopens
            assert len(got) == size and got == pattern(0, size)

            before = (await client.get(server.url)).json()["client"]
            await asyncio.sleep(1.6)  # uvicorn closes the idle connection after 1 s
            after = (await client.get(server.url)).json()["client"]
            assert after != before  # seen closed while idle (is_readable), so a new one
        await server.close()

    run(tmp_path, body)


def test_https(tmp_path: Path) -> None:
    async def body(w: LocalZtWorld, node: Node, a: Network, b: Network) -> None:
        ca = make_ca(tmp_path / "ca", [b.address(4), b.address(6)], names=(WEB,))
        other = make_ca(tmp_path / "other", [b.address(4)])
        async with await serve_asgi(b, LifespanApp(), port=443, ssl=ca.server_context()) as srv:
            assert srv.url == f"https://{b.address(4)}:443/"
            transport = AsyncZtTransport(node, verify=ca.client_context())
            async with httpx.AsyncClient(transport=transport, timeout=20) as client:
                for url in (srv.url, f"https://[{b.address(6)}]/", f"https://{WEB}/"):
                    resp = await client.get(url)
                    assert resp.json()["scheme"] == "https"
                stream = resp.extensions["network_stream"]
                assert stream.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
                assert stream.get_extra_info("network") is a  # the client's side of it
            wrong = AsyncZtTransport(node, verify=other.client_context())
            async with httpx.AsyncClient(transport=wrong, timeout=20) as client:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await client.get(srv.url)

    run(tmp_path, body)


def test_kernel_hosts_past_the_overlay(tmp_path: Path) -> None:
    async def kernel_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nkernel")
        await writer.drain()
        writer.close()

    async def body(w: LocalZtWorld, node: Node, a: Network, b: Network) -> None:
        kernel = await asyncio.start_server(kernel_http, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{kernel.sockets[0].getsockname()[1]}/"
        async with httpx.AsyncClient(transport=AsyncZtTransport(node), timeout=20) as client:
            assert (await client.get(url)).text == "kernel"
        only = AsyncZtTransport(node, overlay_only=True)
        async with httpx.AsyncClient(transport=only, timeout=20) as client:
            with pytest.raises(httpx.ConnectError, match="not on any ZeroTier network"):
                await client.get(url)
        kernel.close()

    run(tmp_path, body)


def test_failures_are_httpx_exceptions(tmp_path: Path) -> None:
    async def body(w: LocalZtWorld, node: Node, a: Network, b: Network) -> None:
        server = await serve_asgi(b, LifespanApp(), port=80)
        async with httpx.AsyncClient(transport=AsyncZtTransport(node), timeout=20) as client:
            with pytest.raises(httpx.ConnectError, match="refused"):
                await client.get(f"http://{b.address(4)}:9/")
            with pytest.raises(httpx.ReadTimeout):
                await client.get(server.url + "hang", timeout=httpx.Timeout(20, read=0.5))
            with pytest.raises(httpx.ConnectTimeout):
                slow = httpx.Timeout(20, connect=0.5)
                await client.get(f"http://{unassigned(w)}/", timeout=slow)
            with pytest.raises(httpx.ConnectError, match="nosuch"):
                await client.get(f"http://nosuch.{DOMAIN}/")
            assert (await client.get(server.url)).status_code == 200
        await server.close()

    run(tmp_path, body)
