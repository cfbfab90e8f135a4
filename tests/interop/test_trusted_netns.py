"""Issue 19's acceptance for trusted paths: two ztnode nodes whose physical network is marked
trusted on both ends (local.conf ``physical`` with the same ``trustedPathId``) carry TCP over
cipher 2, with real UDP in a network namespace.

One namespace (layout "bridge"): our root+controller process on ``192.168.217.1``, node A (an
in-process :class:`ztnode.sockets.aio.Node`) on ``192.168.218.1`` and node B on
``192.168.219.1``. A and B trust ``192.168.218.0/24`` and ``192.168.219.0/24`` only, so what
they send the root keeps its crypto while what they send each other goes as cipher 2. Proof is
taken from the nodes' own counters (cipher-2 packets out at A, in at B) and from a spy on B's
dispatch of authenticated packets: every FRAME it received once A and B had a direct path came
as cipher 2, none as cipher 3 (or 1).

libzt is not in this test because libzt 1.8.4 has no way to configure a trusted path: its
public header (``include/ZeroTierSockets.h``, tag 1.8.4) has no ``zts_init_*`` or other call
for physical-path settings, only the read-only ``trusted_path_id`` field of a peer's path
(``zts_path_t``, line 845), and its service (``src/NodeService.cpp``) never calls the core's
``setPhysicalPathConfiguration``, reads no ``physical`` object and no ``trustedpaths`` file (the
one ``local.conf`` it names is the per-network ``networks.d/<id>.local.conf``, line 689, which
it only deletes on leave). A libzt peer would therefore refuse our cipher-2 packets, as any node
without the configuration does (see tests/core/test_trusted_world.py for that case).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from tests.helpers.data import test_identities
from tests.interop.conftest import need_root
from tests.interop.netns import NetNamespace
from tests.interop.world import ControllerWorld, authorized_network, controller_world, our_member
from ztnode.core.node import Node as CoreNode
from ztnode.core.path import Path as ZtPath
from ztnode.core.peer import Peer
from ztnode.transport import burst
from ztnode.transport.localapi import peer_json
from ztnode.wire.constants import Verb

IDS = test_identities()
ROOT_ID, A_ID, B_ID = IDS[0], IDS[1], IDS[2]
SLOT_ROOT, SLOT_A, SLOT_B = 0, 1, 2
P_A, P_B = 29972, 29973
SUBNET = "10.147.31"
TCP_PORT = 7020
BYTES = 4_000_000
TPID = 0x5EC0_0000_0019
PHYSICAL = {
    "192.168.218.0/24": {"trustedPathId": TPID},
    "192.168.219.0/24": {"trustedPathId": TPID},
}
NETWORK: dict[str, Any] = {
    "name": "trusted-paths",
    "private": True,
    "v4AssignMode": {"zt": True},
    "v6AssignMode": {"rfc4193": False, "6plane": False, "zt": False},
    "ipAssignmentPools": [{"ipRangeStart": f"{SUBNET}.1", "ipRangeEnd": f"{SUBNET}.100"}],
    "routes": [{"target": f"{SUBNET}.0/24", "via": None}],
}


def test_two_ztnode_nodes_carry_tcp_over_a_trusted_path(tmp_path: Path) -> None:
    need_root()
    with (
        NetNamespace(layout="bridge", count=3) as ns,
        controller_world(ns, tmp_path, ROOT_ID, ns.addresses[SLOT_ROOT]) as world,
    ):
        nwid = authorized_network(world.api, NETWORK, (A_ID, B_ID))
        for name in ("a", "b"):
            home = tmp_path / name
            home.mkdir()
            (home / "local.conf").write_text(json.dumps({"physical": PHYSICAL}))
        asyncio.run(asyncio.wait_for(scenario(ns, world, nwid, tmp_path), 120))


def direct(core: CoreNode, host: str) -> bool:
    """``core`` has a live direct path to the node at ``host``."""
    return any(
        p.path.remote[0] == host and p.path.alive(core.now)
        for peer in core.peers.values()
        for p in peer.paths
    )


def spy_frames(core: CoreNode) -> Counter[int]:
    """Count, by cipher suite, the FRAMEs ``core`` dispatches from now on (every authenticated
    packet, from whichever receive path, passes ``Switch._dispatch``)."""
    seen: Counter[int] = Counter()

    def observe(peer: Peer, buf: bytearray, path: ZtPath) -> None:
        if buf[27] & 0x1F == Verb.FRAME:
            seen[(buf[18] >> 3) & 7] += 1

    core.switch.dispatch_observer = observe
    return seen


async def scenario(ns: NetNamespace, world: ControllerWorld, nwid: str, tmp: Path) -> None:
    async with (
        our_member(ns, world.planet, tmp / "a", A_ID, SLOT_A, P_A) as a,
        our_member(ns, world.planet, tmp / "b", B_ID, SLOT_B, P_B) as b,
    ):
        na, nb = await asyncio.gather(a.join(nwid, timeout=40), b.join(nwid, timeout=40))
        core_a, core_b = a.service.node, b.service.node
        assert core_a is not None and core_b is not None
        assert core_a.physical.outbound_trust(ns.addresses[SLOT_B]) == TPID
        assert core_a.physical.outbound_trust(ns.addresses[SLOT_ROOT]) == 0
        # Until A and B found each other directly, frames go through the root with crypto.
        for _ in range(60):
            if direct(core_a, ns.addresses[SLOT_B]) and direct(core_b, ns.addresses[SLOT_A]):
                break
            with contextlib.suppress(TimeoutError):
                await na.ping(nb.address(4), timeout=0.5)
            await asyncio.sleep(0.25)
        else:
            raise AssertionError("A and B never had a direct path")
        frames_at_b = spy_frames(core_b)
        out_before = Counter(core_a.counters.ciphers_out)
        in_before = Counter(core_b.counters.ciphers_in)

        received = hashlib.sha256()
        count = {"n": 0}
        done = asyncio.get_running_loop().create_future()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while chunk := await reader.read(65536):
                count["n"] += len(chunk)
                received.update(chunk)
            writer.write(b"ok")
            await writer.drain()
            writer.close()
            if not done.done():
                done.set_result(None)

        server = await nb.start_server(serve, port=TCP_PORT)
        data = random.Random(19).randbytes(BYTES)
        try:
            reader, writer = await na.open_connection(nb.address(4), TCP_PORT, timeout=20)
            for at in range(0, BYTES, 262_144):
                writer.write(data[at : at + 262_144])
                await writer.drain()
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 60) == b"ok"
            await asyncio.wait_for(done, 10)
            writer.close()
        finally:
            server.close()
        assert count["n"] == BYTES
        assert received.hexdigest() == hashlib.sha256(data).hexdigest()

        out_a = Counter(core_a.counters.ciphers_out) - out_before
        in_b = Counter(core_b.counters.ciphers_in) - in_before
        assert out_a["NONE_TRUSTED_PATH"] > 1000, out_a
        assert in_b["NONE_TRUSTED_PATH"] > 1000, in_b
        assert core_b.counters.ciphers_out["NONE_TRUSTED_PATH"] > 0  # the ACKs back
        # Every data frame of the transfer came over the trusted path: none with crypto (the
        # spy sees records: the C reader joins runs of segments, one cipher per record).
        assert frames_at_b[2] > 50 and set(frames_at_b) == {2}, frames_at_b
        assert core_b.counters.drops["trusted_path_refused"] == 0
        # /peer shows the trusted path, as zerotier-cli peers would.
        peer_b = core_a.peer(B_ID.address)
        assert peer_b is not None
        shown = peer_json(core_a, peer_b, a.service.clock.now())["paths"]
        assert TPID in [p["trustedPathId"] for p in shown], shown
        if burst.AVAILABLE:  # the C guard handed them over, ungated, and refused none
            stats = [ep.burst_stats for ep in b.service.endpoints.values()]
            assert sum(st["trusted_path_passed"] for st in stats if st) > 1000, stats
            assert sum(st["tpath_refused"] for st in stats if st) == 0, stats
