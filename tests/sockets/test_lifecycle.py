"""A node object's lifecycle and joins as a user meets them: stop and start again on the same
object, state that tells the truth while stopped, networks restored from the home at start, a
join before authorization that waits for it, stale refusals, offline told apart from refused;
and the controller in Python (``node.controller``)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.helpers.data import test_identities
from ztnode.crypto import c25519_generate
from ztnode.sockets.aio import Node
from ztnode.testing.local import LocalZtWorld
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import Root, World, WorldType

pytestmark = pytest.mark.e2e

IDS = test_identities()


def test_stop_then_start_the_same_node(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3]) as w:
            m = w.members[1]
            (net,) = m.networks
            await m.stop()
            assert not m.started and not m.online and m.networks == []
            assert net.status == "STOPPED"
            await m.start()
            assert m.started
            # The network from networks.d is back, as the same object.
            assert m.networks == [net]
            await net.wait_ready(30)
            await m.wait_online(30)
            assert await w.networks[0].ping(net.address(4), timeout=10) > 0

    asyncio.run(main())


def test_join_waits_for_authorization_and_stale_refusals_are_asked_again(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=1, identities=IDS[:3]) as w:
            node, _ = await w.add_member(IDS[2], authorize=False)
            with pytest.raises(PermissionError, match=f"ACCESS_DENIED.*{node.address}"):
                await node.join(w.network_id, timeout=20)
            # Authorized now: joining again asks again and succeeds.
            w.authorize(node)
            net = await node.join(w.network_id, timeout=20)
            assert net.status == "OK"
            # Deauthorized, then a join that waits while someone authorizes it.
            w.authorize(node, authorized=False)
            for _ in range(400):  # bounded: the refusal is pushed within milliseconds
                if net.status == "ACCESS_DENIED":
                    break
                await asyncio.sleep(0.05)
            assert net.status == "ACCESS_DENIED"

            async def authorize_later() -> None:
                await asyncio.sleep(1.0)
                w.authorize(node)

            later = asyncio.create_task(authorize_later())
            net = await node.join(w.network_id, timeout=30, wait_authorized=True)
            await later
            assert net.status == "OK" and net.addresses

    asyncio.run(main())


def test_a_join_with_no_root_reachable_says_offline(tmp_path: Path) -> None:
    async def main() -> None:
        pub, priv = c25519_generate(os.urandom)
        nowhere = Root(IDS[0].public(), (InetAddress.parse("127.0.0.1/9"),))  # discard port
        planet = World.make(WorldType.PLANET, 0x77, int(time.time() * 1000), pub, (nowhere,), priv)
        home = tmp_path / "alone"
        home.mkdir()
        IDS[1].save(home / "identity.secret", include_private=True)
        async with Node(home, planet=planet, allow_loopback=True, bind=("127.0.0.1",)) as n:
            with pytest.raises(TimeoutError, match="offline"):
                await n.join(0x1234567890ABCDEF, timeout=1.5)

    asyncio.run(main())


def test_the_controller_in_python(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=1, identities=IDS[:3]) as w:
            assert w.root is not None
            ctl = w.root.controller
            nwid = w.network_id
            assert f"{nwid:016x}" in ctl.networks()
            m = w.members[0]
            member = ctl.member(nwid, m.address)
            assert member["authorized"] is True and member["ipAssignments"]
            ctl.set_tags(nwid, m.address, {7: 3})
            assert ctl.member(nwid, m.address)["tags"] == [[7, 3]]
            ctl.set_rules(nwid, "drop not ethertype ipv4 and not ethertype arp;\naccept;")
            assert ctl.network(nwid)["rulesSource"].startswith("drop")
            with pytest.raises(LookupError):
                ctl.member(nwid, "00000000ff")
            with pytest.raises(ValueError):
                ctl.update_member(nwid, m.address, {"authorized": "yes"})
            other = ctl.create_network({"name": "second"})
            assert other["name"] == "second"
            ctl.delete_network(other["id"])
            assert other["id"] not in ctl.networks()
            with pytest.raises(RuntimeError, match="hosts no controller"):
                _ = m.controller.networks()

    asyncio.run(main())


def test_a_connect_to_an_address_nobody_holds_fails_fast_with_ehostunreach(
    tmp_path: Path,
) -> None:
    import errno

    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=1, identities=IDS[:3]) as w:
            (net,) = w.networks
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(OSError, match=r"10\.147\.17\.250 port 80.*no host answers") as e:
                await net.open_connection("10.147.17.250", 80)
            assert e.value.errno == errno.EHOSTUNREACH
            assert loop.time() - t0 < 10  # about three ARP tries, a second apart

    asyncio.run(main())


def test_a_reset_while_writing_is_the_writers_error_not_a_logged_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3]) as w:
            a, b = w.networks

            async def reset_soon(r: asyncio.StreamReader, wr: asyncio.StreamWriter) -> None:
                await r.readexactly(1000)
                wr.transport.abort()  # RST while the client keeps writing

            server = await b.start_server(reset_soon, port=9000)
            _, writer = await a.open_connection(b.address(4), 9000)
            with pytest.raises(ConnectionResetError):
                for _ in range(2000):  # bounded: the reset ends it long before
                    writer.write(bytes(10_000))
                    await writer.drain()
            server.close()

    with caplog.at_level("ERROR", logger="ztnode"):
        asyncio.run(main())
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
