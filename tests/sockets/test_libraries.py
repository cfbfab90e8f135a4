"""Libraries people already use, on the overlay with no glue of their own: websockets and
aiohttp's server through ``node.patch_loop()``, aiohttp's client through ``ZtConnector``,
plain ``asyncio.open_connection``/``start_server`` under the patch, and kernel sockets left
alone inside it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers.data import test_identities
from ztnode.testing.local import LocalZtWorld
from ztnode.testing.tls import make_ca

pytestmark = pytest.mark.e2e

IDS = test_identities()


def test_asyncio_calls_under_the_patch_go_over_the_overlay_or_the_kernel(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3]) as w:
            (na, nb), (_a, b) = w.members, w.networks

            async def shout(r: asyncio.StreamReader, wr: asyncio.StreamWriter) -> None:
                wr.write((await r.read(100)).upper())
                wr.close()

            kernel = await asyncio.start_server(shout, "127.0.0.1", 0)
            kport = kernel.sockets[0].getsockname()[1]
            with nb.patch_loop():
                overlay = await asyncio.start_server(shout, b.address(6), 0)
            oport = overlay.sockets[0].getsockname()[1]
            assert len(overlay.sockets[0].getsockname()) == 4  # an IPv6 overlay listener
            with na.patch_loop():
                r, wr = await asyncio.open_connection(b.address(6), oport)
                wr.write(b"overlay")
                assert await r.read() == b"OVERLAY"
                r, wr = await asyncio.open_connection("127.0.0.1", kport)  # the kernel's
                wr.write(b"kernel")
                assert await r.read() == b"KERNEL"
            loop = asyncio.get_running_loop()
            assert "create_connection" not in vars(loop)  # the patch is gone
            overlay.close()
            kernel.close()

    asyncio.run(main())


def test_websockets_both_ends_on_the_overlay(tmp_path: Path) -> None:
    websockets = pytest.importorskip("websockets")
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3]) as w:
            (na, nb), (_a, b) = w.members, w.networks
            ca = make_ca(tmp_path / "ca", [b.address(4)])

            async def echo(ws: websockets.asyncio.server.ServerConnection) -> None:
                async for message in ws:
                    await ws.send(f"echo: {message}")

            with nb.patch_loop():
                server = await serve(echo, b.address(4), 8765, ssl=ca.server_context())
            with na.patch_loop():
                async with connect(f"wss://{b.address(4)}:8765", ssl=ca.client_context()) as ws:
                    await ws.send("hello")
                    assert await ws.recv() == "echo: hello"
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_aiohttp_server_and_client(tmp_path: Path) -> None:
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web

    from ztnode.sockets.aiohttp_connector import ZtConnector

    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3]) as w:
            (na, nb), (a, b) = w.members, w.networks

            async def hello(request: web.Request) -> web.Response:
                return web.json_response({"path": request.path, "peer": request.remote})

            app = web.Application()
            app.router.add_get("/{tail:.*}", hello)
            runner = web.AppRunner(app)
            await runner.setup()
            with nb.patch_loop():
                site = web.TCPSite(runner, b.address(4), 8080)
                await site.start()
            async with aiohttp.ClientSession(connector=ZtConnector(na)) as session:
                for path in ("/one", "/two"):  # the second reuses the pooled connection
                    async with session.get(f"http://{b.address(4)}:8080{path}") as resp:
                        assert resp.status == 200
                        assert await resp.json() == {"path": path, "peer": a.address(4)}
                with pytest.raises(aiohttp.ClientConnectorError):
                    await session.get(f"http://{b.address(4)}:8081/")  # nobody listens
            await runner.cleanup()

    asyncio.run(main())
