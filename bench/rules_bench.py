"""What the network's flow rules cost TCP: bulk throughput with the default rules (one ACCEPT,
which the filter recognises and skips) against a 30-entry rule list that every data frame walks
to its end, in one run on loopback, rounds interleaved so outside load falls on both alike.

The 30 entries are written in ZeroTier's rules language (compiled by ztnode's compiler) and are
what a cautious network owner writes: ethertype allow-listing, closed service ports, a TCP-flag
rule, address and MAC blocks, a QoS match, then ACCEPT. None of them reads a frame's size or
random bits or copies frames, so TCP offload stays on (``core/enforcer.py`` judges a burst by its
first and last piece); rules that do (``framesize``, ``random``, ``tee``...) make every frame
judged alone, which costs more and is not what this row measures.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.tcp_bench import Peer
from ztnode.controller.rulescript import compile_rules
from ztnode.testing.local import LocalZtWorld

THIRTY = """
drop not ethertype ipv4 and not ethertype arp and not ethertype ipv6;
drop dport 23;
drop dport 135-139;
drop dport 445;
drop ipprotocol udp dport 161-162;
drop chr tcp_syn and not chr tcp_ack and dport 3389;
drop ipsrc 192.168.0.0/16;
drop ipdest 172.16.0.0/12;
drop ztsrc deadbeef00;
drop macsrc 02:00:00:00:00:01;
drop iptos 0xfc 0xb8;
drop ipprotocol 132;
accept;
"""
DEFAULT = "accept;"


async def _run(size: int, rounds: int) -> dict[str, list[float]]:
    rulesets = {"default": compile_rules(DEFAULT).rules, "30 rules": compile_rules(THIRTY).rules}
    assert len(rulesets["30 rules"]) == 30, len(rulesets["30 rules"])
    seconds: dict[str, list[float]] = {name: [] for name in rulesets}
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        async with LocalZtWorld(base / "world", members=0) as world:
            assert world.planet is not None and world.root is not None
            planet = base / "planet"
            planet.write_bytes(world.planet.to_bytes())
            svc = world.root.service
            ctl = svc.controller
            assert ctl is not None
            peers: list[Peer] = []
            try:
                for name in ("server", "client"):
                    peer, addr = await Peer.start(base / name, planet)
                    peers.append(peer)
                    ctl.update_member(
                        world.network_id, int(addr, 16), {"authorized": True}, svc.clock.now()
                    )
                svc.controller_changed()
                server, client = peers
                nwid = f"{world.network_id:016x}"
                ips = [await p.call(op="join", nwid=nwid) for p in peers]
                await server.call(op="serve", port=5001)
                host = ips[0]["ip4"]
                await client.call(op="bulk", host=host, port=5001, bytes=size // 4)  # warm-up
                for _ in range(rounds):
                    for name, rules in rulesets.items():
                        net = ctl.update_network(
                            world.network_id, {"rules": rules}, svc.clock.now()
                        )
                        svc.controller_changed()
                        want = net["revision"]
                        deadline = time.monotonic() + 20
                        for p in peers:
                            while (await p.call(op="revision"))["revision"] < want:
                                if time.monotonic() > deadline:
                                    raise RuntimeError("a peer never got the new rules")
                                await asyncio.sleep(0.05)
                        r = await client.call(op="bulk", host=host, port=5001, bytes=size)
                        seconds[name].append(r["seconds"])
            finally:
                for p in peers:
                    await p.stop()
    return seconds


def rows(quick: bool = False) -> list[dict[str, Any]]:
    size = 8_000_000 if quick else 40_000_000
    rounds = 2 if quick else 5
    t0 = time.monotonic()
    seconds = asyncio.run(_run(size, rounds))
    print(f"rules: {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    mbs = {k: [size / s / 1e6 for s in v] for k, v in seconds.items()}
    base = statistics.median(mbs["default"])
    out = []
    for name, figures in mbs.items():
        med = statistics.median(figures)
        out.append(
            {
                "what": f"TCP bulk IPv4 {size // 1_000_000} MB, loopback (MB/s)",
                "rules": name,
                "ztnode": round(med, 1),
                "ratio to default": round(med / base, 3),
                "runs": " ".join(f"{x:.1f}" for x in figures),
            }
        )
    return out
