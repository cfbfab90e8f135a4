"""Names over real UDP on loopback: the controller answering its members' names over the overlay,
members resolving and connecting by name, the static map, the node's own names, errors as the
stdlib raises them, and a DNS server of the test's own (a Zone) for TTLs, timeouts, TCP fallback
and NXDOMAIN."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from tests.helpers.data import test_identities
from ztnode.names.zone import Zone, answer
from ztnode.sockets.aio import Network
from ztnode.testing.local import LocalZtWorld

pytestmark = pytest.mark.e2e

IDS = test_identities()


async def echo_server(net: Network, port: int) -> None:
    async def upper(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write((await r.read(100)).upper())
        w.close()

    await net.start_server(upper, None, port)


def test_controller_answers_members_names_and_members_connect_by_name(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3], dns_domain="zt.test") as w:
            (na, nb), (a, b) = w.members, w.networks
            w.name_member(nb, "Web Server")
            await echo_server(b, 7000)
            assert b.names.dns_config() == ("zt.test", (w.root_network.address(4),))  # type: ignore[union-attr]
            got = await a.resolve("web-server.zt.test")
            assert got == [b.address(4), b.address(6)]  # IPv4 first, then the RFC 4193 one
            assert await a.resolve(f"zt-{nb.address}.zt.test", family=6) == [b.address(6)]
            assert await a.resolve("web-server", family=socket.AF_INET) == [b.address(4)]
            r, wr = await a.open_connection("web-server.zt.test", 7000)
            wr.write(b"by name")
            assert await r.read() == b"BY NAME"
            infos = await na.getaddrinfo("web-server.zt.test", "7000", type=socket.SOCK_STREAM)
            assert infos[0] == (
                socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (b.address(4), 7000),
            )
            with pytest.raises(socket.gaierror) as nx:
                await a.resolve("nobody.zt.test")
            assert nx.value.errno == socket.EAI_NONAME and "nobody.zt.test" in str(nx.value)
            with pytest.raises(socket.gaierror) as outside:
                await a.resolve("example.com")
            assert outside.value.errno == socket.EAI_NONAME and "outside" in str(outside.value)
            assert await na.lookup("example.com") == []  # not an overlay name: fall back
            # cached: the second ask sends nothing
            before = a.names.counters["lookups"]
            await a.resolve("web-server.zt.test")
            assert a.names.counters["lookups"] == before
            assert w.root_network is not None
            server = w.root.names.of(w.root_network).dns_server  # type: ignore[union-attr]
            assert server is not None and server.counters["answered"] >= 4
            # ... and all of it in the metrics
            from ztnode.transport.localapi import render_metrics

            root = w.root  # type: ignore[union-attr]
            text = render_metrics(
                root.service.node, root.service.host, root._now(), root.service.metric_sources
            )
            nwid = f"{w.network_id:016x}"
            assert f'ztnode_names_dns_server_total{{event="answered",network_id="{nwid}"}}' in text
            mine = render_metrics(na.service.node, na.service.host, na._now(), [na.names.metrics])
            assert f'ztnode_names_cache_entries{{network_id="{nwid}"}}' in mine
            assert 'protocol="mdns"' in mine and 'protocol="llmnr"' in mine

    asyncio.run(main())


def test_static_map_own_names_and_node_level_lookup(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3]) as w:
            na, (_a, b) = w.members[0], w.networks
            nc, c = await w.add_member(
                IDS[3], hosts={"db": b.address(4), "kernel-only": "127.0.0.1"}, hostname="box"
            )
            assert c is not None
            await echo_server(b, 7001)
            assert nc.hostname == "box" and na.hostname == f"zt-{na.address}"
            assert await c.resolve("DB.") == [b.address(4)]
            assert await c.resolve("box") == [c.address(4), c.address(6)]
            assert await c.resolve("box.local", family=6) == [c.address(6)]
            found = await nc.lookup("db")
            assert [(n.id, ip) for n, ip in found] == [(w.network_id, b.address(4))]
            assert await nc.lookup("kernel-only") == []  # mapped, but not on the overlay
            r, wr = await nc.networks[0].open_connection("db", 7001)
            wr.write(b"mapped")
            assert await r.read() == b"MAPPED"
            with pytest.raises(socket.gaierror):
                await nc.resolve("unheard-of.example")

    asyncio.run(main())


def test_resolver_against_a_zone_of_the_tests_own(tmp_path: Path) -> None:
    """TTL caching, TCP fallback for a big answer, a server that never answers, NXDOMAIN."""

    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3]) as w:
            (_na, _nb), (a, b) = w.members, w.networks
            zone = Zone("lab.test", ttl=1)
            zone.add("one", ["10.147.17.77"])
            zone.add("many", [f"10.147.18.{i}" for i in range(1, 120)])
            server = await b.serve_dns(zone)
            dead = "10.147.17.250"  # nobody there: its queries go unanswered
            w.root.controller.update_network(  # type: ignore[union-attr]
                w.network_id, {"dns": {"domain": "lab.test", "servers": [b.address(4), dead]}}
            )
            for _ in range(200):
                if a.names.pushed_dns()[1]:
                    break
                await asyncio.sleep(0.02)
            with pytest.raises(socket.gaierror, match="allowDNS is off"):
                await a.resolve("one.lab.test")  # the owner's DNS, not used unless allowed
            a.update_settings(allow_dns=True)
            assert a.settings.allow_dns
            assert await a.resolve("one.lab.test", family=4) == ["10.147.17.77"]
            assert a.names.counters["lookups"] == 1
            many = await a.resolve("many.lab.test", family=4)
            assert len(many) == 119 and a.names.counters["tcp_fallbacks"] == 1
            assert server.counters["tcp_connections"] == 1
            await a.resolve("one.lab.test", family=4)
            assert a.names.counters["lookups"] == 2  # from the cache
            await asyncio.sleep(1.1)
            await a.resolve("one.lab.test", family=4)
            assert a.names.counters["lookups"] == 3  # TTL 1 s: asked again
            with pytest.raises(socket.gaierror) as nx:
                await a.resolve("nope.lab.test")
            assert nx.value.errno == socket.EAI_NONAME
            server.close()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(socket.gaierror) as again:
                await a.resolve("other.lab.test")
            assert again.value.errno == socket.EAI_AGAIN
            assert 4.5 < loop.time() - t0 < 8  # the whole timeout, then a clear error
            assert server.counters["rate_limited"] == 0

    asyncio.run(main())


def test_zone_answer_is_what_dnspython_reads() -> None:
    """The server role's reply, end to end through dnspython's own query helper."""
    z = Zone("zt.test")
    z.add("x", ["10.0.0.1"])
    q = dns.message.make_query("x.zt.test", "A")
    r = dns.message.from_wire(answer(z, q.to_wire()) or b"")
    assert r.rcode() == dns.rcode.NOERROR and str(r.answer[0][0]) == "10.0.0.1"


def test_blocking_sockets_take_names(tmp_path: Path) -> None:
    """The blocking facade: getaddrinfo, create_connection and connect by name, as the stdlib's."""
    from ztnode.testing.blocking import BlockingLocalWorld

    with BlockingLocalWorld(tmp_path, members=2, identities=IDS[:3], dns_domain="zt.test") as w:
        (na, nb), (a, b) = w.members, w.networks
        w.world.name_member(nb.node, "files")
        srv = b.create_server(("", 2121))
        infos = a.getaddrinfo("files.zt.test", 2121, type=socket.SOCK_STREAM)
        assert [i[4] for i in infos] == [
            (b.address(4), 2121),
            (b.address(6), 2121, 0, 0),
        ]
        assert na.lookup("files.zt.test")[0][1] == b.address(4)
        c = a.create_connection(("files.zt.test", 2121), timeout=10)
        conn, peer = srv.accept()
        assert peer[0] == a.address(4)
        c.sendall(b"by name, blocking")
        assert conn.recv(100) == b"by name, blocking"
        srv6 = b.create_server(("", 2122), family=socket.AF_INET6)
        s6 = a.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s6.settimeout(10)
        s6.connect(("files.zt.test", 2122))  # the family's first address, as connect() does
        conn6, _ = srv6.accept()
        assert s6.getpeername()[0] == b.address(6)
        with pytest.raises(socket.gaierror) as nx:
            a.create_connection(("absent.zt.test", 2121))
        assert nx.value.errno == socket.EAI_NONAME
        for s in (c, conn, s6, conn6, srv, srv6):
            s.close()


def test_patch_loop_and_aiohttp_take_overlay_names(tmp_path: Path) -> None:
    """Under ``patch_loop`` overlay names connect over the overlay and others stay the
    kernel's; aiohttp's client resolves overlay names through ``ZtConnector``'s resolver."""
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web

    from ztnode.sockets.aiohttp_connector import ZtConnector

    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3]) as w:
            (_na, nb), (_a, b) = w.members, w.networks
            nc, _c = await w.add_member(IDS[3], hosts={"api": b.address(4)})
            app = web.Application()

            async def hello(request: web.Request) -> web.Response:
                return web.Response(text=f"hello {request.host}")

            app.router.add_get("/", hello)
            runner = web.AppRunner(app)
            await runner.setup()
            with nb.patch_loop():
                site = web.TCPSite(runner, b.address(4), 8088)
                await site.start()
            kernel = await asyncio.start_server(lambda r, wr: wr.close(), "127.0.0.1", 0)
            kport = kernel.sockets[0].getsockname()[1]
            loop = asyncio.get_running_loop()
            with nc.patch_loop():
                infos = await loop.getaddrinfo("api", 8088, type=socket.SOCK_STREAM)
                assert infos[0][4] == (b.address(4), 8088)
                r, wr = await asyncio.open_connection("api", 8088)
                wr.write(b"GET / HTTP/1.0\r\nHost: api\r\n\r\n")
                assert b"hello api" in await r.read()
                _, kw = await asyncio.open_connection("localhost", kport)  # the kernel's
                kw.close()
            async with (
                aiohttp.ClientSession(connector=ZtConnector(nc)) as session,
                session.get("http://api:8088/") as resp,
            ):
                assert await resp.text() == "hello api:8088"
            kernel.close()
            await runner.cleanup()

    asyncio.run(main())
