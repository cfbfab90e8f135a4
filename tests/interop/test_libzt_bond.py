"""A bonding ztnode node and a plain libzt 1.8.4 peer, each with two cables (two namespaces
joined by two veth pairs, tests/interop/netns.py LinkedPair). libzt's API cannot enable a
bond, so this proves the other half of ZeroTierOne's behaviour (protocol-multipath.md section
1): a non-bonding core tolerates a bonding peer's heartbeats and QoS reports, paths are learned
on both cables (our bond sees libzt answer on each), traffic flows, and when the cable under
the transfer is unplugged both sides carry on: our bond fails over at once, libzt by its
ordinary path choice (a path silent for 19 s loses to a live one), as ZeroTierOne does
without a bond. The stall is printed (docs/performance.md, "Multipath")."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from tests.interop.conftest import need_root
from tests.interop.netns import LinkedPair
from tests.interop.peer import LibztPeer
from tests.interop.test_bond_netns import NETWORK, _node
from tests.interop.world import (
    authorized_network,
    controller_world,
    start_libzt_member,
    wait_libzt_addresses,
)
from ztnode.sockets.aio import Network, Node
from ztnode.wire.world import World

IDS = test_identities()
ROOT_ID, OUR_ID, LIBZT_ID = IDS[0], IDS[3], IDS[4]
ROOT_PORT = 29983
LZ_PORT = 29995
SINK_PORT = 7200
BYTES = 6_000_000


@pytest.mark.slow
def test_a_bonding_node_and_libzt_survive_a_cable_together(
    tmp_path: Path, libzt_installed: None
) -> None:
    need_root()
    with (
        LinkedPair(links=2) as pair,
        controller_world(pair.a, tmp_path, ROOT_ID, pair.ip_of(0, "a"), ROOT_PORT) as world,
        LibztPeer(netns=pair.b.name) as lz,
    ):
        nwid = authorized_network(world.api, NETWORK, (OUR_ID, LIBZT_ID))
        result = asyncio.run(_scenario(pair, tmp_path, world.planet, nwid, lz))
    print(f"\nbonding ztnode with libzt through a cable cut: {result}")


async def _scenario(
    pair: LinkedPair, tmp_path: Path, planet: World, nwid: str, lz: LibztPeer
) -> dict[str, Any]:
    node = _node(pair.a, tmp_path / "ours", OUR_ID, planet)
    await node.start()
    try:
        join = asyncio.ensure_future(node.join(nwid, timeout=40))
        await asyncio.to_thread(
            start_libzt_member, lz, tmp_path / "lz", LIBZT_ID, planet, LZ_PORT, nwid, []
        )
        lz_ip = (await asyncio.to_thread(wait_libzt_addresses, lz, nwid, 40))[4]
        net = await join
        return await _transfer(pair, node, net, lz, lz_ip)
    finally:
        await node.stop()


async def _transfer(
    pair: LinkedPair, node: Node, net: Network, lz: LibztPeer, lz_ip: str
) -> dict[str, Any]:
    # Warm up with UDP echoes until our bond has libzt answering on both cables.
    echo = await asyncio.to_thread(lz.call, "udp_echo_server", 30, port=SINK_PORT + 1)
    transport, proto = await _udp(net)
    deadline = time.monotonic() + 60
    while len(_answering(node, LIBZT_ID.address)) < 2 or proto.replies == 0:
        assert time.monotonic() < deadline, (_answering(node, LIBZT_ID.address), proto.replies)
        transport.sendto(b"warm", (lz_ip, SINK_PORT + 1))
        await asyncio.sleep(0.3)
    transport.close()
    await asyncio.to_thread(lz.stop_job, echo["job"])
    core = node.service.node
    assert core is not None
    bond = core.bond(LIBZT_ID.address)
    assert bond is not None and {bp.path.remote[0] for bp in bond.paths} >= {
        pair.ip_of(0, "b"),
        pair.ip_of(1, "b"),
    }

    srv = await asyncio.to_thread(
        lz.call, "tcp_server", 30, port=SINK_PORT, mode="sink", rt=True, lifetime=150
    )
    data = random.Random(11).randbytes(BYTES)
    reader, writer = await net.open_connection(lz_ip, SINK_PORT)
    cut_link, t_cut, t_done, cut_clock = -1, 0.0, 0.0, 0
    try:
        for off in range(0, BYTES, 65_536):
            writer.write(data[off : off + 65_536])
            await writer.drain()
            if cut_link < 0 and off >= BYTES // 3:
                assert bond.active is not None
                cut_link = 0 if bond.active.path.local[0] == pair.ip_of(0, "a") else 1
                t_cut, cut_clock = time.monotonic(), node.service.clock.now()
                await asyncio.to_thread(pair.cut, cut_link)
        writer.write_eof()
        # lwIP may close with RST once it has everything (see test_libzt_sockets).
        with contextlib.suppress(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 120)
        t_done = time.monotonic()
    finally:
        writer.transport.abort()
    got = await asyncio.to_thread(lz.wait_job, srv["job"], 60)
    now_ms = node.service.clock.now()
    assert got["bytes"] == BYTES and got["sha256"] == hashlib.sha256(data).hexdigest(), got
    assert bond.active is not None
    state = [(bp.path, bp.eligible, bp.alive, now_ms - bp.last_in) for bp in bond.paths]
    assert bond.active.path.local[0] == pair.ip_of(1 - cut_link, "a"), (state, bond.failovers)
    qos_in = core.counters.verbs_in.get("QOS_MEASUREMENT", 0)
    return {
        "cut_link": cut_link,
        "our_failover_ms": bond.last_active_change - cut_clock,
        "cut_to_done_s": round(t_done - t_cut, 1),
        "qos_from_libzt": qos_in,
    }


def _answering(node: Node, peer: int) -> set[str]:
    """Our sockets on which libzt's answers arrived since the path joined the bond."""
    core = node.service.node
    bond = core.bond(peer) if core is not None else None
    if bond is None:
        return set()
    return {bp.path.local[0] for bp in bond.paths if bp.last_in > bp.nominated}


class _Echoes(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.replies += 1


async def _udp(net: Network) -> tuple[asyncio.DatagramTransport, _Echoes]:
    return await net.create_datagram_endpoint(_Echoes, local_addr=("0.0.0.0", 0))
