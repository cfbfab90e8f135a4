"""Bonds over two rate-limited cables: throughput of each policy against one cable, and the
active-backup failover gap. ``python -m bench --only bond`` (root: network namespaces).

Two namespaces joined by two veth cables (tests.interop.netns.LinkedPair), each cable shaped
to :data:`RATE` both ways with ``tc tbf`` so the cables, not the CPU, bound one path. Our
root+controller runs in namespace ``a``; the two members (in this process, one event loop)
bind a socket per cable through their Binder. Per policy: TCP from b to a over 1 and 4
connections for a few seconds, bytes counted at the receiver. "one cable" is active-backup,
which uses one cable at a time by design. The failover row unplugs the cable under an
active-backup transfer and reports the longest pause the receiver saw (median of the runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

RATE = "100mbit"
POLICIES = ("active-backup", "balance-rr", "balance-xor", "balance-aware")
PORT = 7300


def rows(quick: bool) -> list[dict[str, Any]]:
    import os

    if os.geteuid() != 0:
        return [{"case": "bonds", "result": "skipped: needs root (network namespaces)"}]
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> list[dict[str, Any]]:
    from tests.helpers.data import test_identities
    from tests.interop.netns import LinkedPair
    from tests.interop.test_bond_netns import NETWORK
    from tests.interop.world import ControllerProcess, make_planet

    ids = test_identities()
    seconds = 2.0 if quick else 5.0
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, LinkedPair(links=2) as pair:
        base = Path(tmp)
        for k in range(2):
            for ns, side in ((pair.a, "a"), (pair.b, "b")):
                subprocess.run(
                    ["tc", "-n", ns.name, "qdisc", "add", "dev", f"l{side}{k}", *_tbf()],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
        root_ip = pair.ip_of(0, "a")
        planet = make_planet(ids[0], root_ip, 29983)
        (base / "planet").write_bytes(planet.to_bytes())
        (base / "root").mkdir()
        ids[0].save(base / "root" / "identity.secret", include_private=True)
        root = ControllerProcess(pair.a, base / "root", base / "planet", root_ip, 29983)
        try:
            api = root.wait_ready(20)
            nwid: str = api.call("POST", "/controller/network", NETWORK)["id"]
            for ident in ids[1:3]:
                member = f"/controller/network/{nwid}/member/{ident.address:010x}"
                api.call("POST", member, {"authorized": True})
            for i, policy in enumerate(POLICIES):
                pair_nodes = await _pair(pair, base / f"p{i}", ids, planet, nwid, policy)
                try:
                    a, b, na, nb = pair_nodes
                    for flows in (1, 4):
                        rate = await _throughput(na, nb, flows, seconds)
                        label = "one cable (active-backup)" if i == 0 else policy
                        out.append({"case": f"{label}, {flows} TCP", "MB/s": f"{rate / 1e6:.1f}"})
                    if policy == "active-backup":
                        gaps = [
                            await _failover_gap(pair, a, b, na, nb, ids)
                            for _ in range(1 if quick else 3)
                        ]
                        out.append(
                            {
                                "case": "active-backup failover under TCP (pause seen)",
                                "MB/s": f"{statistics.median(gaps):.0f} ms "
                                f"({', '.join(f'{g:.0f}' for g in gaps)})",
                            }
                        )
                finally:
                    await pair_nodes[1].stop()
                    await pair_nodes[0].stop()
        finally:
            root.stop()
    return out


def _tbf() -> list[str]:
    return ["root", "tbf", "rate", RATE, "burst", "64kb", "latency", "20ms"]


async def _pair(pair: Any, home: Path, ids: list[Any], planet: Any, nwid: str, policy: str) -> Any:
    from tests.interop.test_bond_netns import _eligible
    from ztnode.sockets.aio import Node
    from ztnode.transport.ifaddrs import named_interface_addresses

    nodes = []
    for ns, ident, name in ((pair.a, ids[1], "a"), (pair.b, ids[2], "b")):
        h = home / name
        h.mkdir(parents=True)
        ident.save(h / "identity.secret", include_private=True)
        node = Node(
            h,
            planet=planet,
            port=29993,
            bonding={"defaultBondingPolicy": policy},
            interfaces=lambda ns=ns: ns.in_namespace(named_interface_addresses),
            socket_factory=lambda host, port, ns=ns: ns.socket(_family(host), bind=(host, port)),
        )
        await node.start()
        nodes.append(node)
    a, b = nodes
    na, nb = await asyncio.gather(a.join(nwid, timeout=40), b.join(nwid, timeout=40))
    sink = await na.start_server(_discard, port=PORT)
    _, w = await nb.open_connection(na.address(4), PORT)
    deadline = time.monotonic() + 40
    while len(_eligible(a, ids[2].address)) < 2 or len(_eligible(b, ids[1].address)) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("the bond did not take both cables")
        w.write(b"warm")
        await w.drain()
        await asyncio.sleep(0.2)
    w.close()
    sink.close()
    await asyncio.sleep(16)  # past every path's trial
    return a, b, na, nb


async def _discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while await reader.read(1 << 16):
            pass
    writer.close()


async def _throughput(na: Any, nb: Any, flows: int, seconds: float) -> float:
    counted = [0]

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):  # the senders abort when time is up
            while chunk := await reader.read(1 << 16):
                counted[0] += len(chunk)
        writer.close()

    server = await na.start_server(count, port=PORT + 1)
    writers = [(await nb.open_connection(na.address(4), PORT + 1))[1] for _ in range(flows)]
    block = bytes(1 << 16)
    stop = time.monotonic() + seconds

    async def pump(w: asyncio.StreamWriter) -> None:
        while time.monotonic() < stop:
            w.write(block)
            await w.drain()

    await asyncio.sleep(0.5)
    start_bytes, t0 = counted[0], time.monotonic()
    await asyncio.gather(*(pump(w) for w in writers))
    rate = (counted[0] - start_bytes) / (time.monotonic() - t0)
    for w in writers:
        w.transport.abort()
    server.close()
    return rate


async def _failover_gap(pair: Any, a: Any, b: Any, na: Any, nb: Any, ids: list[Any]) -> float:
    last = [time.monotonic()]
    gap = [0.0]
    cut = [False]

    async def watch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(1 << 16):
                now = time.monotonic()
                if cut[0]:
                    gap[0] = max(gap[0], now - last[0])
                last[0] = now
        writer.close()

    server = await na.start_server(watch, port=PORT + 2)
    _, w = await nb.open_connection(na.address(4), PORT + 2)
    block = bytes(1 << 16)
    bond = b.service.node.bond(ids[1].address)
    end = time.monotonic() + 4
    link = -1
    while time.monotonic() < end:
        w.write(block)
        await w.drain()
        if link < 0 and time.monotonic() > end - 3:
            link = 0 if bond.active.path.local[0] == pair.ip_of(0, "b") else 1
            cut[0] = True
            await asyncio.to_thread(pair.cut, link)
    w.transport.abort()
    server.close()
    await asyncio.to_thread(pair.mend, link)
    await asyncio.sleep(8)  # the cable is back and eligible before the next run
    return gap[0] * 1000


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
