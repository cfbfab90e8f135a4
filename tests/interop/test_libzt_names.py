"""Issue 15's interop acceptance for names: libzt 1.8.4 resolves names our controller serves, and
our node connects to libzt by name.

One namespace (layout "bridge"): our root+controller process on ``192.168.217.1``, our member (an
in-process :class:`ztnode.sockets.aio.Node`) on ``192.168.218.1``, libzt on ``192.168.219.1``.
The root joins its own network through its local API (as ``zerotier-cli join`` would); the
network pushes the domain ``zt.lab`` with the root's overlay address as its one DNS server, so
the root starts answering ``zt-<id>.zt.lab`` and members' names by itself (``--serve-dns
auto``). libzt sets that server in lwIP's resolver (``zts_dns_set_server``) and looks our
member up with ``zts_bsd_gethostbyname``, over the overlay. Our member resolves libzt's name
through the same server and opens a TCP connection to it by name. IPv4 only (LIBZT_PEER.md).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.helpers.data import test_identities
from tests.interop.conftest import need_root
from tests.interop.netns import NetNamespace
from tests.interop.peer import LibztPeer
from tests.interop.world import ControllerWorld, controller_world, join_beside_libzt, our_member

IDS = test_identities()
ROOT_ID, OUR_ID, LIBZT_ID = IDS[0], IDS[1], IDS[2]
SLOT_ROOT, SLOT_OURS, SLOT_LIBZT = 0, 1, 2
P_OURS, P_LIBZT = 29970, 29971
SUBNET = "10.147.27"
DOMAIN = "zt.lab"
TCP_PORT = 7010
NETWORK: dict[str, Any] = {
    "name": "libzt-names-interop",
    "private": True,
    "v4AssignMode": {"zt": True},
    "v6AssignMode": {"rfc4193": False, "6plane": False, "zt": False},
    "ipAssignmentPools": [{"ipRangeStart": f"{SUBNET}.1", "ipRangeEnd": f"{SUBNET}.100"}],
    "routes": [{"target": f"{SUBNET}.0/24", "via": None}],
}


def root_address(world: ControllerWorld, nwid: str, timeout: float = 30.0) -> str:
    """The root's IPv4 address on its own network, once its config has one."""
    deadline = time.monotonic() + timeout
    while True:
        got = world.api.call("GET", f"/network/{nwid}")
        for a in got.get("assignedAddresses") or []:
            if "." in a:
                return str(a).split("/", 1)[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"the root has no address on {nwid}: {got}")
        time.sleep(0.1)


def test_libzt_resolves_our_controllers_names_and_we_connect_to_libzt_by_name(
    libzt_installed: None, tmp_path: Path
) -> None:
    need_root()
    with (
        NetNamespace(layout="bridge", count=3) as ns,
        controller_world(ns, tmp_path, ROOT_ID, ns.addresses[SLOT_ROOT]) as world,
    ):
        nwid: str = world.api.call("POST", "/controller/network", NETWORK)["id"]
        for ident, name in ((ROOT_ID, "ns"), (OUR_ID, "ours"), (LIBZT_ID, "Libzt Box")):
            member = f"/controller/network/{nwid}/member/{ident.address:010x}"
            world.api.call("POST", member, {"authorized": True, "name": name})
        world.api.call("POST", f"/network/{nwid}", {})  # the root joins its own network
        server = root_address(world, nwid)
        world.api.call(
            "POST", f"/controller/network/{nwid}", {"dns": {"domain": DOMAIN, "servers": [server]}}
        )
        with LibztPeer(netns=ns.name) as lz:
            asyncio.run(scenario(ns, world, nwid, server, tmp_path, lz))


async def libzt_resolve(lz: LibztPeer, server: str, name: str) -> str:
    job = (await asyncio.to_thread(lz.call, "resolve", 10, server=server, name=name))["job"]
    done = await asyncio.to_thread(lz.wait_job, job, 40)
    return str(done["address"])


async def scenario(
    ns: NetNamespace, world: ControllerWorld, nwid: str, server: str, tmp: Path, lz: LibztPeer
) -> None:
    async with our_member(ns, world.planet, tmp / "ours", OUR_ID, SLOT_OURS, P_OURS) as node:
        net, lz_ip = await join_beside_libzt(
            ns, node, world.planet, nwid, lz, tmp / "libzt", LIBZT_ID, SLOT_LIBZT, P_LIBZT
        )
        ours = net.address(4)
        net.update_settings(allow_dns=True)  # ZeroTier's allowDNS: use the network's DNS
        assert net.names.dns_config() == (DOMAIN, (server,))
        # libzt asks our controller, over the overlay, with lwIP's own resolver
        assert await libzt_resolve(lz, server, f"ours.{DOMAIN}") == ours
        assert await libzt_resolve(lz, server, f"zt-{OUR_ID.address:010x}.{DOMAIN}") == ours
        # ... and we find libzt by the name the controller gave it, and connect by that name
        assert await net.resolve(f"libzt-box.{DOMAIN}", family=4) == [lz_ip]
        # libzt answers ARP only some seconds after its network is up (LIBZT_PEER.md): ping
        # it, by name, until it does
        for _ in range(30):
            try:
                await net.ping(f"libzt-box.{DOMAIN}", timeout=1.0)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("libzt never answered a ping")
        await asyncio.to_thread(lz.call, "tcp_server", 10, port=TCP_PORT, mode="echo")
        reader, writer = await net.open_connection(f"libzt-box.{DOMAIN}", TCP_PORT, timeout=20)
        message = b"hello libzt, found by name " * 100
        writer.write(message)
        await writer.drain()
        writer.write_eof()
        echoed = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        assert echoed == message
