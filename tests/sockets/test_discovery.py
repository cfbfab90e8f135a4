"""mDNS/DNS-SD and LLMNR between members over real UDP on loopback: names by ``.local`` and by a
single label, services advertised, browsed, renamed on conflict and withdrawn, and the
resolver's fallback order."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.helpers.data import test_identities
from ztnode.sockets.discovery import ServiceBrowser, ServiceChange
from ztnode.testing.local import LocalZtWorld

pytestmark = pytest.mark.e2e

IDS = test_identities()


async def next_change(browser: ServiceBrowser, timeout: float = 10.0) -> ServiceChange:
    return await asyncio.wait_for(anext(browser), timeout)


def test_names_by_mdns_and_llmnr_between_members(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3]) as w:
            (na, nb), (a, b) = w.members, w.networks
            assert a.names.discovery is not None and b.names.discovery is not None
            assert await a.resolve(f"zt-{nb.address}.local", family=4) == [b.address(4)]
            assert await a.resolve(f"zt-{nb.address}", family=6) == [b.address(6)]
            nc, c = await w.add_member(IDS[3], hostname="printer")
            assert c is not None
            assert await a.resolve("printer.local") == [c.address(4), c.address(6)]
            assert await b.resolve("PRINTER", family=socket.AF_INET) == [c.address(4)]
            with pytest.raises(socket.gaierror) as nx:
                await a.resolve("nobody-here.local")
            assert nx.value.errno == socket.EAI_NONAME  # on a link, silence means no such name
            assert "mDNS" in str(nx.value)

            # connect by an mDNS name
            async def hello(r: asyncio.StreamReader, wr: asyncio.StreamWriter) -> None:
                wr.write(b"hi from " + nc.hostname.encode())
                wr.close()

            await c.start_server(hello, None, 7100)
            r, _ = await a.open_connection("printer.local", 7100)
            assert await r.read() == b"hi from printer"
            assert na.names.of(a).discovery.counters["send_errors"] == 0  # type: ignore[union-attr]

    asyncio.run(main())


def test_services_advertised_browsed_renamed_and_withdrawn(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=3, identities=IDS[:4]) as w:
            (_na, nb, _nc), (a, b, c) = w.members, w.networks
            browser = a.browse("_http._tcp")
            ad = await b.advertise("Team wiki", "_http._tcp", 8080, txt={"path": "/wiki"})
            assert ad.name == "Team wiki"
            added = await next_change(browser)
            assert added.kind == "added"
            svc = added.service
            assert (svc.instance, svc.port, svc.txt) == ("Team wiki", 8080, {"path": b"/wiki"})
            assert svc.host.rstrip(".") == f"zt-{nb.address}.local"
            assert b.address(4) in svc.addresses
            # the same name from another member: probing finds it taken, renames
            second = await c.advertise("Team wiki", "_http._tcp", 8081)
            assert second.name == "Team wiki (2)"
            change = await next_change(browser)
            assert (change.kind, change.service.port) == ("added", 8081)
            assert set(browser.services) == {
                "Team wiki._http._tcp.local.",
                "Team wiki (2)._http._tcp.local.",
            }
            ad.close()  # goodbye: the browser drops it within about a second
            gone = await next_change(browser, 5.0)
            assert (gone.kind, gone.service.instance) == ("removed", "Team wiki")
            browser.close()
            second.close()

    asyncio.run(main())
