"""What idleness costs a small round trip: the 1-byte TCP echo between two ztnode members in
one process, and the event loop's bare UDP ping-pong across two processes, each measured back
to back and then with the caller idle for a while before every round trip.

    python -m bench.idle_echo [--count 300] [--pauses 0,1,5,20]

Both ends of the ztnode echo share one loop, so nothing waits for another process to wake: what
grows with the pause is the cost of running the same code again after the CPU went idle (cold
caches and, in a virtual machine, a descheduled virtual CPU). The floor shows how much of that
any asyncio program pays; ztnode's larger working set pays more (docs/performance.md, issue 16's
fifth step).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench import loop_floor
from bench.profile_echo import _echo
from ztnode.testing.local import LocalZtWorld


def _summary(times: list[float]) -> tuple[float, float]:
    s = sorted(times)
    return statistics.median(s) * 1e6, s[int(len(s) * 0.9)] * 1e6


async def _ztnode(count: int, pauses: list[float]) -> list[tuple[float, float, float]]:
    out = []
    with tempfile.TemporaryDirectory() as base:
        async with LocalZtWorld(base, members=2) as world:
            a, b = world.networks
            await b.start_server(_echo, port=7)
            reader, writer = await a.open_connection(b.address(4), 7)
            writer.get_extra_info("ztnode_socket").set_nodelay(True)
            for _ in range(500):  # warm up: paths, ARP, caches
                writer.write(b"x")
                await reader.readexactly(1)
            for pause in pauses:
                times = []
                for _ in range(count):
                    if pause:
                        await asyncio.sleep(pause / 1000)
                    t0 = time.perf_counter()
                    writer.write(b"x")
                    await reader.readexactly(1)
                    times.append(time.perf_counter() - t0)
                out.append((pause, *_summary(times)))
            writer.close()
    return out


async def _floor(port: int, count: int, pauses: list[float]) -> list[tuple[float, float, float]]:
    loop = asyncio.get_running_loop()
    sock = loop_floor._bound()
    waiter: list[asyncio.Future[bytes]] = []

    def answered(data: bytes, _addr: Any) -> None:
        if waiter and not waiter[0].done():
            waiter[0].set_result(data)

    loop.add_reader(sock, loop_floor._reader(sock, answered))

    async def once() -> float:
        fut = loop.create_future()
        waiter[:] = [fut]
        t0 = time.perf_counter()
        sock.sendto(bytes(64), ("127.0.0.1", port))
        async with asyncio.timeout(1.0):  # bounded
            await fut
        return time.perf_counter() - t0

    out = []
    try:
        for _ in range(500):  # warm up
            await once()
        for pause in pauses:
            times = []
            for _ in range(count):
                if pause:
                    await asyncio.sleep(pause / 1000)
                times.append(await once())
            out.append((pause, *_summary(times)))
    finally:
        loop.remove_reader(sock)
        sock.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--pauses", default="0,1,5,20", help="idle ms before each round trip")
    args = ap.parse_args()
    pauses = [float(p) for p in args.pauses.split(",")]
    ours = asyncio.run(_ztnode(args.count, pauses))
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.loop_floor", "--serve", "--loop", "asyncio"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        floor = asyncio.run(_floor(port, args.count, pauses))
    finally:
        server.kill()
        server.wait(10)
    floors = {p: (m, p90) for p, m, p90 in floor}
    print(
        "| idle before each (ms) | ztnode echo, one process: median (us) | p90 | "
        "loop floor, two processes: median (us) | p90 |"
    )
    print("|---|---|---|---|---|")
    for pause, m, p90 in ours:
        fm, fp90 = floors.get(pause, (float("nan"), float("nan")))
        print(f"| {pause:g} | {m:.0f} | {p90:.0f} | {fm:.0f} | {fp90:.0f} |")


if __name__ == "__main__":
    main()
