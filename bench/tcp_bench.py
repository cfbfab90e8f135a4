"""TCP over the overlay, ztnode beside libzt 1.8.4 and beside the per-segment floor, in one run.

Bulk throughput, connect time and echo round trip, each the median of several runs (the runs are
listed too), in rows of::

    what | underlay | ztnode | libzt (ordinary) | libzt (real-time rx) | floor | ratios | runs

- **netns** rows (``bench.tcp_netns``): two ztnode members (``bench.tcp_peer`` processes) and two
  libzt members (``tests.interop.libzt_worker`` processes) in a network namespace the benchmark
  creates and deletes, one veth and one /24 per node on a bridge, with our root+controller as the
  planet's root. libzt never uses loopback, so this is where the two compare. The libzt columns:
  both libzt processes at ordinary priority, and the same pair with the receiving (server) side's
  reading thread at SCHED_FIFO (libzt's receiver drops segments whenever that thread waits for a
  CPU, LIBZT_PEER.md). Rounds interleave ztnode, libzt and libzt real-time, so outside load falls
  on all three alike. libzt runs IPv4 only: its IPv6 receive path crashes.
- **loopback** rows: the two ztnode members on 127.0.0.1 (``allow_loopback``) with the root and
  controller in this process (:class:`~ztnode.testing.local.LocalZtWorld`), as before.
- **floor**: what one segment costs in the parts no implementation can skip, on the same
  underlay: armoring and dearmoring the ZeroTier packet that carries it (AES-GMAC-SIV through the
  C accelerator) and moving its UDP datagrams through the kernel. For bulk, a full 2800-byte-MTU
  segment (two UDP fragments) as MB/s of TCP payload; for echo and connect, two small segments
  (a round trip; a SYN and its SYN-ACK).
- **UDP echo** and **requests** rows (namespace only): 32-byte UDP datagrams echoed (each
  round trip timed), and a small RPC protocol: 32-byte requests echoed back over 1, 10 and 100
  concurrent TCP connections (``TCP_NODELAY``), each connection sending its next request once
  the answer is in, for a few seconds; requests per second over all connections.
- **ztnode (uvloop)**: the same ztnode members on uvloop (``bench.tcp_peer --loop uvloop``, a
  pair of its own beside the asyncio pair, measured in the same rounds) for the round trips, where
  the loop's own cost shows: echo, connect, UDP echo; ``uvloop/asyncio`` is its figure over the
  stock loop's (below 1: uvloop is faster). Bulk and request rates run on asyncio only.
- **ztnode (busy poll)**: a third ztnode pair on asyncio's loop, each process polling for
  ``bench.tcp_netns.BUSY_POLL_US`` after traffic before it sleeps (``--busy-poll``, off by
  default: it spends CPU time while traffic flows for latency); echo, connect, UDP echo and the
  request rates, namespace only. ``busy/libzt`` is its figure over libzt's (ordinary priority).
- **asyncio (kernel)**: no ZeroTier at all: the same client and server program
  (``bench.tcp_peer --kernel``) on asyncio's own sockets between the same two namespace
  addresses, for echo, connect, UDP echo and the request rates. What any asyncio program pays for
  its loop and streams before a network layer adds anything; libzt's client and server are C
  calls on threads, with no event loop. ``ztnode/asyncio`` is ztnode's figure over it: what the
  ZeroTier node and the user-space stack add.
- **ratios**: ztnode's figure divided by the other's, so above 1 is better for ztnode in MB/s
  and req/s rows and worse in ms rows.

When the machine has no root or namespaces, or libzt is not installed
(``python -m tests.interop.setup_libzt``), the missing columns say why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import tcp_netns
from bench.tcp_netns import Column, Plan
from ztnode.testing.local import LocalZtWorld

_REPO = Path(__file__).resolve().parents[1]


class Peer:
    """A ``bench.tcp_peer`` subprocess."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, home: Path, planet: Path, loop: str = "asyncio") -> tuple[Peer, str]:
        env = {
            **os.environ,
            "PYTHONPATH": str(_REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.tcp_peer", "--home", str(home), "--planet", str(planet),
            "--loop", loop,
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


async def _ztnode_pair(plan: Plan, loop: str = "asyncio") -> Column:
    """Two ztnode members on loopback, the root and controller in this process; on uvloop only
    the round trips (echo, connect) are measured."""
    col = Column()
    size = plan.size
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        async with LocalZtWorld(base / "world", members=0) as world:
            assert world.planet is not None and world.root is not None
            planet = base / "planet"
            planet.write_bytes(world.planet.to_bytes())
            peers: list[Peer] = []
            try:
                for name in ("server", "client"):
                    peer, addr = await Peer.start(base / name, planet, loop)
                    peers.append(peer)
                    ctl = world.root.service.controller
                    now = world.root.service.clock.now()
                    ctl.update_member(world.network_id, int(addr, 16), {"authorized": True}, now)
                world.root.service.controller_changed()
                server, client = peers
                ips = [await p.call(op="join", nwid=f"{world.network_id:016x}") for p in peers]
                await server.call(op="serve", port=5001)
                host, host6 = ips[0]["ip4"], ips[0]["ip6"]
                await client.call(op="bulk", host=host, port=5001, bytes=size // 4)  # warm-up
                bulks = ((host, col.bulk, plan.rounds), (host6, col.bulk6, plan.rounds6))
                for h, out, n in bulks if loop == "asyncio" else ():
                    for _ in range(n):
                        r = await client.call(op="bulk", host=h, port=5001, bytes=size)
                        out.append(r["seconds"])
                for _ in range(plan.rtt_rounds):
                    r = await client.call(op="rtt", host=host, port=5002, count=plan.rtts)
                    col.rtt.append(r["ms"])
                for _ in range(plan.connect_rounds):
                    r = await client.call(op="connect", host=host, port=5002, count=plan.connects)
                    col.connect.append(r["ms"])
            finally:
                for p in peers:
                    await p.stop()
    return col


def segment_floor_us(
    count: int,
    payload: int = 2800,
    a: socket.socket | None = None,
    b: socket.socket | None = None,
) -> float:
    """Armor + dearmor of the ZeroTier FRAME packet carrying one ``payload``-byte Ethernet frame,
    plus its UDP datagrams (two fragments for a full 2800-byte-MTU segment) sent from ``a`` and
    received on ``b`` (default: a pair on loopback): the per-segment work no implementation can
    skip."""
    from ztnode.crypto import SymmetricKey
    from ztnode.wire import packet as pk
    from ztnode.wire.constants import Cipher, Verb

    key = SymmetricKey(os.urandom(48))
    packet = pk.new_packet(
        os.urandom(8), 0x1122334455, 0x66778899AA, Verb.FRAME, os.urandom(payload)
    )
    wire = payload + 28  # packet header and FRAME fields
    frags = (bytes(1432), bytes(wire - 1432 + 20)) if wire > 1432 else (bytes(wire),)
    own = a is None
    if a is None or b is None:
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b.bind(("127.0.0.1", 0))
    try:
        dest = b.getsockname()
        buf = bytearray(65536)
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
        if own:
            a.close()
            b.close()


SEGMENT = 2800 - 40 - 12  # TCP payload of a full segment: MTU less IPv4 and TCP headers, timestamps
LIBZT_NO_V6 = "not run (libzt 1.8.4 crashes on IPv6 receive)"
LIBZT_NO_LOOPBACK = "n/a (no loopback in libzt)"


def _r(x: float | None, digits: int) -> float | str:
    return "" if x is None else round(x, digits)


def _ratio(a: float | None, b: float | None) -> float | str:
    return "" if a is None or b is None or b == 0 else round(a / b, 2)


def _figures(col: Column, kind: str, size: int) -> list[float]:
    """Per-run figures: MB/s per transfer, or the median ms of each run of samples."""
    if kind in ("bulk", "bulk6"):
        return [size / s / 1e6 for s in getattr(col, kind)]
    if kind.startswith("rps"):
        return list(col.rps.get(int(kind[3:]), []))
    return [statistics.median(run) for run in getattr(col, kind) if run]


def _cell(col: Column | str, kind: str, size: int, digits: int) -> tuple[float | str, float | None]:
    if isinstance(col, str):
        return col, None
    figs = _figures(col, kind, size)
    if not figs:
        return f"missing: {col.missing or 'no runs'}", None
    med = statistics.median(figs)
    return (round(med) if digits == 0 else round(med, digits)), med


def _row(
    what: str,
    underlay: str,
    kind: str,
    size: int,
    cols: tuple[Column, Column | str, Column | str],
    floor: float | None,
    digits: int,
    uv: Column | str = "",
    bp: Column | str = "",
    kn: Column | str = "",
) -> dict[str, Any]:
    (zc, z), (lc, lv), (rc, rv) = (_cell(c, kind, size, digits) for c in cols)
    uc, u = _cell(uv, kind, size, digits)
    bc, b = _cell(bp, kind, size, digits)
    kc, k = _cell(kn, kind, size, digits)
    runs = []
    names = ("ztnode", "libzt", "libzt rt", "ztnode uvloop", "ztnode busy poll", "asyncio kernel")
    for name, c in zip(names, (*cols, uv, bp, kn), strict=True):
        if isinstance(c, Column) and (figs := _figures(c, kind, size)):
            runs.append(f"{name} " + " ".join(f"{f:.{digits}f}" for f in figs))
    return {
        "what": what,
        "underlay": underlay,
        "ztnode": zc,
        "ztnode (uvloop)": uc,
        "uvloop/asyncio": _ratio(u, z),
        "ztnode (busy poll)": bc,
        "busy/libzt": _ratio(b, lv),
        "asyncio (kernel)": kc,
        "ztnode/asyncio": _ratio(z, k),
        "libzt (ordinary)": lc,
        "libzt (real-time rx)": rc,
        "floor": _r(floor, digits),
        "ztnode/libzt": _ratio(z, lv),
        "ztnode/libzt rt": _ratio(z, rv),
        "ztnode/floor": _ratio(z, floor),
        "runs": "; ".join(runs),
    }


def _rows_for(
    underlay: str,
    size: int,
    cols: tuple[Column, Column | str, Column | str],
    floor_us: float | None,
    small_us: float | None,
    v6_libzt: Column | str,
    uv: Column | str = "",
    bp: Column | str = "",
    kn: Column | str = "",
) -> list[dict[str, Any]]:
    bulk_floor = SEGMENT / floor_us if floor_us else None
    small_floor = 2 * small_us / 1000 if small_us else None
    z = cols[0]
    mb = size // 1_000_000
    return [
        _row(f"TCP bulk IPv4, {mb} MB (MB/s)", underlay, "bulk", size, cols, bulk_floor, 1),
        _row(f"TCP bulk IPv6, {mb} MB (MB/s)", underlay, "bulk6", size,
             (z, v6_libzt, v6_libzt), bulk_floor, 1),
        _row("TCP echo round trip, 1 byte (ms)", underlay, "rtt", size, cols, small_floor, 3,
             uv, bp, kn),
        _row("TCP connect (ms)", underlay, "connect", size, cols, small_floor, 3, uv, bp, kn),
    ]  # fmt: skip


def _small_rows(
    underlay: str,
    plan: Plan,
    cols: tuple[Column, Column | str, Column | str],
    small_us: float | None,
    uv: Column | str = "",
    bp: Column | str = "",
    kn: Column | str = "",
) -> list[dict[str, Any]]:
    """UDP request/response and the request rate of a small RPC protocol (namespace only)."""
    small_floor = 2 * small_us / 1000 if small_us else None
    out = [
        _row("UDP echo round trip, 32 bytes (ms)", underlay, "udp_rtt", 0, cols, small_floor, 3,
             uv, bp, kn)
    ]  # fmt: skip
    for n in plan.rps_conns:
        # Requests per second, not ms: above 1 is better for ztnode in these ratios.
        out.append(
            _row(
                f"requests/s, {plan.rps_size}-byte echo, {n} connection(s)",
                underlay,
                f"rps{n}",
                0,
                cols,
                None,
                0,
                "",
                bp,
                kn,
            )
        )
    return out  # fmt: skip


def plan_for(quick: bool) -> Plan:
    if quick:
        return Plan(size=8_000_000, rounds=3, rounds6=1, rtt_rounds=2, rtts=200,
                    connect_rounds=2, connects=10, budget=30, floor_count=3000,
                    udp_rounds=2, udps=200, rps_rounds=1, rps_seconds=2.0)  # fmt: skip
    return Plan(size=40_000_000, rounds=5, rounds6=3, rtt_rounds=3, rtts=2000,
                connect_rounds=3, connects=50, budget=100)  # fmt: skip


def rows(quick: bool = False) -> list[dict[str, Any]]:
    plan = plan_for(quick)

    def log(msg: str) -> None:
        print(f"tcp: {msg}", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    ns = tcp_netns.run(plan, log)
    log(f"namespace part {ns.seconds:.1f} s")
    lo_plan = dataclasses.replace(plan, rounds=max(2, plan.rounds - 2), rounds6=1 if quick else 2)
    lo = asyncio.run(_ztnode_pair(lo_plan))
    lo_uv: Column | str = ns.ztnode_uv.missing
    if not lo_uv:
        lo_uv = asyncio.run(_ztnode_pair(lo_plan, "uvloop"))
    count = plan.floor_count
    floor_lo, small_lo = segment_floor_us(count), segment_floor_us(count, tcp_netns.SMALL_SEGMENT)
    log(f"loopback part and floors {time.monotonic() - t0 - ns.seconds:.1f} s")
    out = _rows_for(ns.underlay, plan.size, (ns.ztnode, ns.libzt, ns.libzt_rt),
                    ns.floor_us, ns.floor_small_us, LIBZT_NO_V6, ns.ztnode_uv,
                    ns.ztnode_bp, ns.kernel)  # fmt: skip
    out += _small_rows(ns.underlay, plan, (ns.ztnode, ns.libzt, ns.libzt_rt),
                       ns.floor_small_us, ns.ztnode_uv, ns.ztnode_bp, ns.kernel)  # fmt: skip
    out += _rows_for("loopback", plan.size, (lo, LIBZT_NO_LOOPBACK, LIBZT_NO_LOOPBACK),
                     floor_lo, small_lo, LIBZT_NO_LOOPBACK, lo_uv)  # fmt: skip
    notes = [
        f"{name}: {n}"
        for name, c in (("ztnode", ns.ztnode), ("libzt", ns.libzt), ("libzt rt", ns.libzt_rt))
        for n in c.notes + ([c.missing] if c.missing and _figures(c, "bulk", plan.size) else [])
    ]
    if notes:
        out.append({k: "" for k in out[0]} | {"what": "notes", "runs": " | ".join(notes)})
    return out
