"""Where a small round trip's time goes: a 1-byte TCP echo between two ztnode members, profiled.

    python -m bench.profile_echo [--count 3000] [--top 30] [--sort tottime] [--loop uvloop]
                                 [--udp]

Both members live in this process on loopback (``LocalZtWorld``), so one round trip is both
directions of both sides: the client's write, its node sending, the server's node receiving and
delivering, the echo written back, and the same on the way home. The run warms up, then measures
the plain round trip (no profiler), then profiles the same loop with cProfile and prints the
functions by cost per round trip, and the number of Python function calls each round trip
makes: the figure the small-message work drives down. ``--loop uvloop`` runs it all on uvloop
(the ``uvloop`` extra) instead of asyncio's loop. ``--udp`` measures a 32-byte UDP echo instead
(a connected client socket and an echoing server, as the namespace bench's UDP pair).
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
from collections.abc import Awaitable, Callable

from bench.tcp_peer import _UdpClient, _UdpEcho
from ztnode.sockets.aio import Network
from ztnode.testing.local import LocalZtWorld
from ztnode.transport import eventloop


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)


Rounds = Callable[[int], Awaitable[list[float]]]

#: Members without mDNS and LLMNR: their probes, announcements and answers (each a few hundred
#: microseconds of interpreted work) land among the measured rounds now and then, as many as
#: the rounds' wall-clock time allows; the round trip is what is measured here.
QUIET = {"names": {"mdns": False, "llmnr": False}}


async def _tcp_rounds(a: Network, b: Network) -> tuple[Rounds, Callable[[], None]]:
    await b.start_server(_echo, port=7)
    reader, writer = await a.open_connection(b.address(4), 7)
    writer.get_extra_info("ztnode_socket").set_nodelay(True)

    async def rounds(n: int) -> list[float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            writer.write(b"x")
            await reader.readexactly(1)
            times.append(time.perf_counter() - t0)
        return times

    return rounds, writer.close


async def _udp_rounds(a: Network, b: Network) -> tuple[Rounds, Callable[[], None]]:
    await b.create_datagram_endpoint(_UdpEcho, local_addr=(b.address(4), 7))
    client = _UdpClient()
    loop = asyncio.get_running_loop()
    tr, _ = await a.create_datagram_endpoint(lambda: client, remote_addr=(b.address(4), 7))
    for _ in range(20):  # the first datagrams may wait for ARP: bounded tries
        client.waiter = loop.create_future()
        tr.sendto(bytes(32))
        try:
            await asyncio.wait_for(client.waiter, 1.0)
            break
        except TimeoutError:
            pass

    async def rounds(n: int) -> list[float]:
        times = []
        for _ in range(n):
            client.waiter = fut = loop.create_future()
            t0 = time.perf_counter()
            tr.sendto(bytes(32))
            await asyncio.wait_for(fut, 5.0)
            times.append(time.perf_counter() - t0)
        return times

    return rounds, tr.close


async def main(count: int, top: int, sort: str, udp: bool = False) -> None:
    with tempfile.TemporaryDirectory() as base:
        async with LocalZtWorld(base, members=2, member_options=QUIET) as world:
            a, b = world.networks
            rounds, close = await (_udp_rounds if udp else _tcp_rounds)(a, b)
            await rounds(500)  # warm up: paths, ARP, caches
            plain = await rounds(count)
            median_us = statistics.median(plain) * 1e6
            p90_us = sorted(plain)[int(len(plain) * 0.9)] * 1e6
            kind = type(asyncio.get_running_loop()).__module__.partition(".")[0]
            what = "UDP, 32 bytes" if udp else "TCP, 1 byte"
            print(
                f"{what} round trip on {kind}, both sides in one process: median "
                f"{median_us:.0f} us, p90 {p90_us:.0f} us over {count}"
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
            close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    ap.add_argument("--udp", action="store_true", help="a 32-byte UDP echo instead of TCP")
    args = ap.parse_args()
    eventloop.run(main(args.count, args.top, args.sort, args.udp), eventloop.choose(args.loop))
