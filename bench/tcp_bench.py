"""TCP over the overlay: bulk throughput, connect time and echo round trip, ztnode to ztnode.

Two member processes (``bench/tcp_peer.py``) join a private network of a root and controller
that run in this process (:class:`~ztnode.testing.local.LocalZtWorld`), on loopback UDP. Every
figure is the median of several runs. The floor beside them is what one full-size segment costs
in the parts ztnode cannot avoid: armoring and dearmoring the ZeroTier packet that carries it
(AES-GMAC-SIV through the C accelerator) and moving its two UDP fragments through the kernel.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ztnode.testing.local import LocalZtWorld

_REPO = Path(__file__).resolve().parents[1]


class Peer:
    """A ``bench.tcp_peer`` subprocess."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, home: Path, planet: Path) -> tuple[Peer, str]:
        env = {
            **os.environ,
            "PYTHONPATH": str(_REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.tcp_peer", "--home", str(home), "--planet", str(planet),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, cwd=_REPO,
        )  # fmt: skip
        peer = cls(proc)
        hello = await peer.read(60)
        return peer, str(hello["address"])

    async def read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"peer exited ({await self.proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    async def call(self, timeout: float = 120, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        await self.proc.stdin.drain()
        return await self.read(timeout)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.call(timeout=10, op="stop")
                await asyncio.wait_for(self.proc.wait(), 10)
            except (RuntimeError, TimeoutError, ConnectionError):
                self.proc.kill()
                await self.proc.wait()


async def _ztnode_pair(size: int, runs: int, rtts: int, connects: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        async with LocalZtWorld(base / "world", members=0) as world:
            assert world.planet is not None and world.root is not None
            planet = base / "planet"
            planet.write_bytes(world.planet.to_bytes())
            peers: list[Peer] = []
            try:
                for name in ("server", "client"):
                    peer, addr = await Peer.start(base / name, planet)
                    peers.append(peer)
                    ctl = world.root.service.controller
                    now = world.root.service.clock.now()
                    ctl.update_member(world.network_id, int(addr, 16), {"authorized": True}, now)
                world.root.service.controller_changed()
                server, client = peers
                ips = [await p.call(op="join", nwid=f"{world.network_id:016x}") for p in peers]
                await server.call(op="serve", port=5001)
                host = ips[0]["ip4"]
                await client.call(op="bulk", host=host, port=5001, bytes=size // 4)  # warm-up
                bulk = [
                    (await client.call(op="bulk", host=host, port=5001, bytes=size))["seconds"]
                    for _ in range(runs)
                ]
                host6 = ips[0]["ip6"]
                bulk6 = [
                    (await client.call(op="bulk", host=host6, port=5001, bytes=size))["seconds"]
                    for _ in range(runs)
                ]
                rtt = (await client.call(op="rtt", host=host, port=5002, count=rtts))["ms"]
                conn = (await client.call(op="connect", host=host, port=5002, count=connects))["ms"]
            finally:
                for p in peers:
                    await p.stop()
    return {
        "bulk_mb_s": size / statistics.median(bulk) / 1e6,
        "bulk_mb_s_runs": [round(size / s / 1e6, 1) for s in bulk],
        "bulk6_mb_s": size / statistics.median(bulk6) / 1e6,
        "rtt_ms": statistics.median(rtt),
        "connect_ms": statistics.median(conn),
    }


def _segment_floor_us(count: int) -> float:
    """Armor + dearmor of one 2800-byte-MTU segment's packet, plus its two UDP fragments
    sent and received on loopback: the per-segment work no implementation can skip."""
    from ztnode.crypto import SymmetricKey
    from ztnode.wire import packet as pk
    from ztnode.wire.constants import Cipher, Verb

    key = SymmetricKey(os.urandom(48))
    packet = pk.new_packet(os.urandom(8), 0x1122334455, 0x66778899AA, Verb.FRAME, os.urandom(2800))
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        b.bind(("127.0.0.1", 0))
        dest = b.getsockname()
        buf = bytearray(65536)
        frags = (bytes(1432), bytes(2828 - 1432 + 20))
        t0 = time.perf_counter()
        for _ in range(count):
            p = bytearray(packet)
            pk.armor(p, key, Cipher.AES_GMAC_SIV)
            if not pk.dearmor(p, key):
                raise AssertionError("dearmor failed")
            for f in frags:
                a.sendto(f, dest)
            for _f in frags:
                b.recv_into(buf)
        return (time.perf_counter() - t0) / count * 1e6
    finally:
        a.close()
        b.close()


def rows(quick: bool = False) -> list[dict[str, Any]]:
    size = (8 if quick else 40) * 1_000_000
    res = asyncio.run(
        _ztnode_pair(size, 2 if quick else 5, 200 if quick else 2000, 10 if quick else 50)
    )
    floor = _segment_floor_us(2000 if quick else 20000)
    seg = 2800 - 40 - 12
    floor_mb_s = seg / floor
    return [
        {"what": "TCP bulk, IPv4 (median MB/s)", "ztnode": round(res["bulk_mb_s"], 1),
         "floor": round(floor_mb_s, 1), "ratio_to_floor": round(res["bulk_mb_s"] / floor_mb_s, 2),
         "runs": res["bulk_mb_s_runs"]},
        {"what": "TCP bulk, IPv6 (median MB/s)", "ztnode": round(res["bulk6_mb_s"], 1),
         "floor": round(floor_mb_s, 1), "ratio_to_floor": round(res["bulk6_mb_s"] / floor_mb_s, 2),
         "runs": ""},
        {"what": "TCP echo round trip (median ms)", "ztnode": round(res["rtt_ms"], 3),
         "floor": round(2 * floor / 1000, 3), "ratio_to_floor": "", "runs": ""},
        {"what": "TCP connect (median ms)", "ztnode": round(res["connect_ms"], 3),
         "floor": "", "ratio_to_floor": "", "runs": ""},
    ]  # fmt: skip
