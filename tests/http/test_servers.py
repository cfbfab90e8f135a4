"""The servers' own lives: uvicorn's lifespan, graceful close, serving one address or all of
them, the errors at start (a port taken, an app whose startup fails, settings that make no
sense on the overlay), and wsgiref's server the same way. Asyncio parts run on the shared
world's loop, where its nodes live."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import threading
from typing import Any

import httpx
import pytest
import requests

from tests.http.apps import LifespanApp, app, pattern, wsgi_app
from tests.http.conftest import Served
from ztnode.http.asgi import serve_asgi, serve_asgi_blocking
from ztnode.http.httpx_transport import AsyncZtTransport, ZtTransport
from ztnode.http.requests_adapter import session
from ztnode.http.wsgi import serve_wsgi

pytestmark = pytest.mark.e2e


def nets(served: Served) -> tuple[Any, Any, Any]:
    """The asyncio node of A, and A's and B's asyncio networks."""
    world = served.world.world
    return world.members[0], world.networks[0], world.networks[1]


def test_close_is_graceful_and_runs_the_lifespan_shutdown(served: Served) -> None:
    node, _, b = nets(served)

    async def main() -> None:
        lifespan = LifespanApp()
        server = await serve_asgi(b, lifespan, port=0)
        serving = asyncio.create_task(server.serve_forever())
        async with httpx.AsyncClient(transport=AsyncZtTransport(node), timeout=20) as client:
            in_flight = asyncio.create_task(client.get(server.url + "stream"))
            await asyncio.sleep(0.03)  # the response has begun
            await server.close()
            resp = await in_flight
            assert resp.status_code == 200 and len(resp.content) > 0  # finished, not cut
            with pytest.raises(httpx.ConnectError, match="refused"):
                await client.get(server.url)
        await asyncio.wait_for(serving, 5)  # serve_forever returns once closed
        assert not server.is_serving()
        assert lifespan.events == ["startup", "shutdown"]
        await server.close()  # a second close is harmless

    served.world.run(main(), 60)


def test_one_address_only(served: Served) -> None:
    node, _, b = nets(served)

    async def main() -> None:
        six = b.address(6)
        async with await serve_asgi(b, app, host=six, port=0) as server:
            assert server.url == f"http://[{six}]:{server.port}/"
            assert server.addresses == [(six, server.port)]
            transport = AsyncZtTransport(node)
            async with httpx.AsyncClient(transport=transport, timeout=20) as client:
                assert (await client.get(server.url)).json()["scheme"] == "http"
                with pytest.raises(httpx.ConnectError, match="refused"):
                    await client.get(f"http://{b.address(4)}:{server.port}/")

    served.world.run(main(), 60)


def test_cancelled_serve_forever_closes(served: Served) -> None:
    _, _, b = nets(served)

    async def main() -> None:
        lifespan = LifespanApp()
        server = await serve_asgi(b, lifespan, port=0)
        serving = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0.05)
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        assert not server.is_serving()
        assert lifespan.events == ["startup", "shutdown"]

    served.world.run(main(), 60)


def test_startup_errors(served: Served) -> None:
    _, _, b = nets(served)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="lifespan startup failed"):
            await serve_asgi(b, LifespanApp(fail_startup=True), port=0)
        with pytest.raises(RuntimeError, match="lifespan startup failed"):
            await serve_asgi(b, app, port=0, lifespan="on")  # app has no lifespan
        with pytest.raises(TypeError, match="uds, workers"):
            await serve_asgi(b, app, uds="/tmp/x.sock", workers=2)
        first = await serve_asgi(b, app, port=0)
        second_app = LifespanApp()
        with pytest.raises(OSError) as taken:
            await serve_asgi(b, second_app, port=first.port)
        assert taken.value.errno == errno.EADDRINUSE
        assert second_app.events == ["startup", "shutdown"]  # uvicorn's order on a bind error
        await first.close()

    served.world.run(main(), 60)


def test_blocking_asgi_server(served: Served) -> None:
    lifespan = LifespanApp()
    with serve_asgi_blocking(served.b, lifespan, port=0) as server:
        assert lifespan.events == ["startup"]
        with session(served.client) as s:
            assert s.get(server.url, timeout=20).json()["state"] == {"greeting": "set at startup"}
        waiter = threading.Thread(target=server.serve_forever)
        waiter.start()
    waiter.join(10)
    assert not waiter.is_alive()  # serve_forever returned when the server closed
    assert lifespan.events == ["startup", "shutdown"]
    assert not server.is_serving()


def test_wsgi_on_all_addresses_or_one(served: Served) -> None:
    b = served.b
    with serve_wsgi(b, wsgi_app, port=0) as both, session(served.client) as s:
        assert both.url == f"http://{b.address(4)}:{both.port}/"
        assert [p for _, p in both.addresses] == [both.port, both.port]
        six = f"http://[{b.address(6)}]:{both.port}/"
        assert s.get(both.url, timeout=20).json()["client"] == [served.a.address(4)]
        assert s.get(six, timeout=20).json()["client"] == [served.a.address(6)]
    with serve_wsgi(b, wsgi_app, host=b.address(6), port=0, threads=False) as one:
        assert one.url == f"http://[{b.address(6)}]:{one.port}/"
        with session(served.client) as s:
            assert s.get(one.url, timeout=20).json()["server"] == "wsgi"
            with pytest.raises(requests.ConnectionError, match="refused"):
                s.get(f"http://{b.address(4)}:{one.port}/", timeout=20)


def test_wsgi_serve_forever_close_and_errors(served: Served) -> None:
    b = served.b
    server = serve_wsgi(b, wsgi_app, port=0, background=False)
    runner = threading.Thread(target=server.serve_forever)
    runner.start()
    with session(served.client) as s:
        assert s.get(server.url, timeout=20).json()["server"] == "wsgi"
        with pytest.raises(OSError) as taken:
            serve_wsgi(b, wsgi_app, port=server.port)
        assert taken.value.errno == errno.EADDRINUSE
        server.close()
        runner.join(10)
        assert not runner.is_alive()
        with pytest.raises(requests.ConnectionError, match="refused"):
            s.get(server.url, timeout=20)
    with pytest.raises(RuntimeError, match="closed"):
        server.start()


def test_wsgi_https(served: Served) -> None:
    ca = served.ca
    with (
        serve_wsgi(served.b, wsgi_app, port=0, ssl=ca.server_context()) as server,
        session(served.client) as s,
    ):
        assert server.url.startswith("https://")
        answer = s.get(server.url + "tls", verify=str(ca.ca_file), timeout=20).json()
        assert answer["path"] == "/tls"
        # A client that never speaks TLS does not hold up the others (handshakes run in the
        # request threads).
        with served.a.create_connection((served.b.address(4), server.port), 20) as idle:
            assert s.get(server.url, verify=str(ca.ca_file), timeout=20).status_code == 200
            idle.shutdown(socket.SHUT_WR)
        assert json.loads(s.get(server.url, verify=str(ca.ca_file), timeout=20).text)


def test_blocking_clients_see_idle_connections_closed_by_the_server(served: Served) -> None:
    """uvicorn closes a connection idle past ``timeout_keep_alive``: the pools must notice
    (the readiness descriptor says it is readable) and connect again instead of failing."""
    with (
        serve_asgi_blocking(served.b, app, port=0, timeout_keep_alive=1) as server,
        httpx.Client(transport=ZtTransport(served.client), timeout=20) as client,
        session(served.client) as s,
    ):
        size = 2_000_000
        with client.stream("GET", f"{server.url}bytes?n={size}") as resp:
            assert resp.read() == pattern(0, size)
        for get in (lambda: client.get(server.url).json(), lambda: s.get(server.url).json()):
            before = get()["client"]
            threading.Event().wait(1.6)
            assert get()["client"] != before
