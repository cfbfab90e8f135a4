"""Two controller instances on one PostgreSQL database, as real nodes on loopback: what an
operator of several controller machines counts on.

A root of its own, controller instances A and B (the same controller identity, each a node
with its own home and port, both on the same database) and a member. The member joins through
A; an operator authorises it through B's HTTP API, and A, hearing the change, pushes the
config; B's API shows what A stored. Then A stops (as a machine that dies: no goodbye), the
operator renames the network through B, and the member's next periodic refresh (ZeroTier's 60 s)
is answered by B: B greeted the member when it started (it read where A had served it from the
shared database), so the member has a path to B, which it takes once its path to A goes quiet
(a ZeroTier peer keeps an unexpired path, even a dead one, for 243 s and does not relay around
it, so without the greeting it would be four minutes). Slow by nature: ZeroTier's own periods.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from ztnode.sockets.aio import Node
from ztnode.testing.local import DEFAULT_NETWORK, planet_for
from ztnode.transport.httpapi import fetch_json
from ztnode.transport.localapi import serve_local_api

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
# The member's refresh period is 60 s; its path to the dead instance goes quiet within 20 s.
REFRESH_BOUND_S = 100

IDS = test_identities()
ROOT_ID, CTL_ID, MEMBER_ID = IDS[0], IDS[1], IDS[2]


def _home(base: Path, name: str, identity: Any) -> Path:
    home = base / name
    home.mkdir()
    identity.save(home / "identity.secret", include_private=True)
    return home


def test_authorised_through_b_served_by_a_then_b_answers_when_a_is_gone(
    tmp_path: Path, pg_url: str
) -> None:
    async def run() -> None:
        root_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        root_sock.bind(("127.0.0.1", 0))
        planet = planet_for(ROOT_ID, root_sock.getsockname()[1])
        common: dict[str, Any] = {"planet": planet, "allow_loopback": True}
        root = Node(_home(tmp_path, "root", ROOT_ID), sockets=(root_sock,), **common)
        a = Node(_home(tmp_path, "a", CTL_ID), bind=("127.0.0.1",), controller_db=pg_url, **common)
        b = Node(_home(tmp_path, "b", CTL_ID), bind=("127.0.0.1",), controller_db=pg_url, **common)
        member = Node(_home(tmp_path, "m", MEMBER_ID), bind=("127.0.0.1",), **common)
        started: list[Node] = []
        api = None
        try:
            for node in (root, a, member):
                await node.start()
                started.append(node)
            spec = {**DEFAULT_NETWORK, "name": "shared"}  # with an IP pool: join waits for one
            nwid = int(str(a.controller.create_network(spec)["id"]), 16)
            join = asyncio.create_task(member.join(nwid, timeout=60, wait_authorized=True))
            deadline = time.monotonic() + 30  # the member asks A (and is recorded, unauthorised)
            while not any(m["id"] == member.address for m in a.controller.members(nwid)):
                assert time.monotonic() < deadline, "the member never reached controller A"
                await asyncio.sleep(0.1)

            # A recorded where the member is (its requests came direct after the first).
            from ztnode.controller.pgstore import PostgresStore

            watcher = PostgresStore(pg_url)
            try:
                deadline = time.monotonic() + 30
                while not watcher.recently_seen(0, 10):
                    assert time.monotonic() < deadline, "A never recorded where the member is"
                    await asyncio.sleep(0.2)
            finally:
                watcher.close()
            await b.start()  # greets the member at once
            started.append(b)
            api, port = await serve_local_api(b.service)
            token = (b.service.home.path / "authtoken.secret").read_text().strip()
            path = f"/controller/network/{nwid:016x}/member/{member.address}"
            status, body = await fetch_json(
                "127.0.0.1", port, "POST", path, token, {"authorized": True}
            )
            assert status == 200 and body["authorized"] is True, body
            net = await asyncio.wait_for(join, 30)  # A heard it and pushed the config
            assert net.status == "OK"

            # B's API answers with what was stored when the member was served.
            status, body = await fetch_json("127.0.0.1", port, "GET", path, token)
            assert status == 200 and body["authorized"] is True
            assert body["ipAssignments"] == [net.address(4)], body

            await a.stop()  # instance A is gone
            started.remove(a)
            status, body = await fetch_json(
                "127.0.0.1", port, "POST", f"/controller/network/{nwid:016x}", token,
                {"name": "after-failover"},
            )  # fmt: skip
            assert status == 200, body
            core = member.service.node
            assert core is not None
            deadline = time.monotonic() + REFRESH_BOUND_S
            while True:  # bounded: the member's refresh reaches B
                cn = core.network(nwid)
                if cn is not None and cn.config is not None and cn.config.name == "after-failover":
                    break
                assert time.monotonic() < deadline, "the member's refresh was never answered"
                await asyncio.sleep(0.25)
            assert net.status == "OK"
        finally:
            if api is not None:
                await api.close()
            for node in reversed(started):
                await node.stop()

    asyncio.run(run())
