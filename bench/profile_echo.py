"""Where a small round trip's time goes: a 1-byte TCP echo between two ztnode members, profiled.

    python -m bench.profile_echo [--count 3000] [--top 30] [--sort tottime] [--loop uvloop]

Both members live in this process on loopback (``LocalZtWorld``), so one round trip is both
directions of both sides: the client's write, its node sending, the server's node receiving and
delivering, the echo written back, and the same on the way home. The run warms up, then measures
the plain round trip (no profiler), then profiles the same loop with cProfile and prints the
functions by cost per round trip, and the number of Python function calls each round trip
makes: the figure the small-message work drives down. ``--loop uvloop`` runs it all on uvloop
(the ``uvloop`` extra) instead of asyncio's loop.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import tempfile
import time

from ztnode.testing.local import LocalZtWorld
from ztnode.transport import eventloop


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)


async def main(count: int, top: int, sort: str) -> None:
    with tempfile.TemporaryDirectory() as base:
        async with LocalZtWorld(base, members=2) as world:
            a, b = world.networks
            await b.start_server(_echo, port=7)
            reader, writer = await a.open_connection(b.address(4), 7)
            sock = writer.get_extra_info("ztnode_socket")
            sock.set_nodelay(True)

            async def rounds(n: int) -> list[float]:
                times = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    writer.write(b"x")
                    await reader.readexactly(1)
                    times.append(time.perf_counter() - t0)
                return times

            await rounds(500)  # warm up: paths, ARP, caches
            plain = await rounds(count)
            median_us = statistics.median(plain) * 1e6
            p90_us = sorted(plain)[int(len(plain) * 0.9)] * 1e6
            kind = type(asyncio.get_running_loop()).__module__.partition(".")[0]
            print(
                f"round trip on {kind}, both sides in one process: median {median_us:.0f} us, "
                f"p90 {p90_us:.0f} us over {count}"
            )
            prof = cProfile.Profile()
            prof.enable()
            await rounds(count)
            prof.disable()
            stats = pstats.Stats(prof)
            calls = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
            print(f"Python function calls per round trip: {calls / count:.0f}")
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats(sort).print_stats(top)
            print(out.getvalue())
            writer.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = ap.parse_args()
    eventloop.run(main(args.count, args.top, args.sort), eventloop.choose(args.loop))
