"""Two ztnode nodes bonded over two real veth cables (two namespaces, tests/interop/netns.py
LinkedPair): each node's Binder finds both interfaces and binds a socket on each, the bond
takes both links, and a TCP transfer over the overlay continues when the cable under it is
unplugged (``ip link set down``). The stall the application sees is measured and printed
(recorded in docs/performance.md, "Multipath")."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from tests.interop.conftest import need_root
from tests.interop.netns import LinkedPair, NetNamespace
from tests.interop.world import authorized_network, controller_world
from ztnode.identity import Identity
from ztnode.sockets.aio import Node
from ztnode.transport.ifaddrs import named_interface_addresses
from ztnode.wire.world import World

IDS = test_identities()
ROOT_ID, A_ID, B_ID = IDS[0], IDS[1], IDS[2]
SUBNET = "10.150.7"
NETWORK: dict[str, Any] = {
    "name": "bond-netns",
    "private": True,
    "v4AssignMode": {"zt": True},
    "v6AssignMode": {"rfc4193": False, "6plane": False, "zt": False},
    "ipAssignmentPools": [{"ipRangeStart": f"{SUBNET}.1", "ipRangeEnd": f"{SUBNET}.100"}],
    "routes": [{"target": f"{SUBNET}.0/24", "via": None}],
}
PORT = 29993
ROOT_PORT = 29983
TCP_PORT = 7100
BYTES = 24_000_000


def _node(ns: NetNamespace, home: Path, ident: Identity, planet: World) -> Node:
    """Our node with its Binder looking at, and binding in, ``ns`` (active-backup bonds)."""
    home.mkdir(parents=True, exist_ok=True)
    ident.save(home / "identity.secret", include_private=True)
    return Node(
        home,
        planet=planet,
        port=PORT,
        bonding={"defaultBondingPolicy": "active-backup"},
        interfaces=lambda: ns.in_namespace(named_interface_addresses),
        socket_factory=lambda host, port: ns.socket(_family(host), bind=(host, port)),
    )


def _eligible(node: Node, peer: int) -> set[str]:
    core = node.service.node
    bond = core.bond(peer) if core is not None else None
    return {bp.path.local[0] for bp in bond.paths if bp.eligible} if bond is not None else set()


@pytest.mark.slow
def test_a_transfer_outlives_its_cable(tmp_path: Path) -> None:
    need_root()
    with (
        LinkedPair(links=2) as pair,
        controller_world(pair.a, tmp_path, ROOT_ID, pair.ip_of(0, "a"), ROOT_PORT) as world,
    ):
        nwid = authorized_network(world.api, NETWORK, (A_ID, B_ID))
        result = asyncio.run(_scenario(pair, tmp_path, world.planet, nwid))
    print(f"\nbond failover under a TCP transfer: {result}")


async def _scenario(pair: LinkedPair, tmp_path: Path, planet: World, nwid: str) -> dict[str, Any]:
    a = _node(pair.a, tmp_path / "a", A_ID, planet)
    b = _node(pair.b, tmp_path / "b", B_ID, planet)
    await a.start()
    try:
        await b.start()
        try:
            return await _transfer_and_cut(pair, a, b, nwid)
        finally:
            await b.stop()
    finally:
        await a.stop()


async def _discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(65536):
        pass
    writer.close()


async def _transfer_and_cut(pair: LinkedPair, a: Node, b: Node, nwid: str) -> dict[str, Any]:
    # Each Binder bound one socket per cable.
    assert {h for h, _ in a.service.endpoints} == {pair.ip_of(0, "a"), pair.ip_of(1, "a")}
    assert {h for h, _ in b.service.endpoints} == {pair.ip_of(0, "b"), pair.ip_of(1, "b")}
    na, nb = await asyncio.gather(a.join(nwid, timeout=40), b.join(nwid, timeout=40))
    a_ip = na.address(4)
    warm_server = await na.start_server(_discard, port=TCP_PORT + 1)
    _, warm = await nb.open_connection(a_ip, TCP_PORT + 1)
    # Both cables known and usable on both sides before the test proper (bounded).
    deadline = time.monotonic() + 40
    while len(_eligible(a, B_ID.address)) < 2 or len(_eligible(b, A_ID.address)) < 2:
        assert time.monotonic() < deadline, (_eligible(a, B_ID.address), _eligible(b, A_ID.address))
        warm.write(b"warm")
        await warm.drain()
        await asyncio.sleep(0.2)
    warm.close()
    warm_server.close()

    received = hashlib.sha256()
    got = {"n": 0, "last": 0.0, "gap": 0.0, "cut_at": 0.0}
    done = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            now = time.monotonic()
            if got["cut_at"]:
                got["gap"] = max(got["gap"], now - got["last"])
            got["last"] = now
            got["n"] += len(chunk)
            received.update(chunk)
        writer.close()
        if not done.done():
            done.set_result(None)

    server = await na.start_server(serve, port=TCP_PORT)
    core_b = b.service.node
    assert core_b is not None
    data = random.Random(7).randbytes(BYTES)
    cut_link = -1
    cut_clock = 0
    try:
        _, writer = await nb.open_connection(a_ip, TCP_PORT)
        for sent in range(0, BYTES, 262_144):
            writer.write(data[sent : sent + 262_144])
            await writer.drain()
            if cut_link < 0 and got["n"] >= BYTES // 3:
                bond = core_b.bond(A_ID.address)
                assert bond is not None and bond.active is not None
                cut_link = 0 if bond.active.path.local[0] == pair.ip_of(0, "b") else 1
                got["cut_at"] = time.monotonic()
                await asyncio.to_thread(pair.cut, cut_link)
                cut_clock = b.service.clock.now()
        writer.close()
        await asyncio.wait_for(done, 60)
    finally:
        server.close()
    assert got["n"] == BYTES and cut_link >= 0
    assert received.hexdigest() == hashlib.sha256(data).hexdigest()
    bond = core_b.bond(A_ID.address)
    assert bond is not None and bond.active is not None
    assert bond.active.path.local[0] == pair.ip_of(1 - cut_link, "b")  # on the other cable now
    assert got["gap"] < 3.0, got  # generous for a loaded CI machine; typically well under 1 s
    bond_a = a.service.node.bond(B_ID.address) if a.service.node is not None else None
    return {
        "cut_link": cut_link,
        "gap_ms": round(got["gap"] * 1000),
        "failover_ms": bond.last_active_change - cut_clock,
        "receiver_failover_ms": bond_a.last_active_change - cut_clock if bond_a else None,
        "bytes": BYTES,
    }


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
