"""Many idle TCP connections on one node: memory per connection and CPU while idle.
``python -m bench --only scale``.

Two members of a :class:`~ztnode.testing.local.LocalZtWorld` in this process (loopback): the
server's network listens, the client's opens ``N`` connections to it (in batches, each
exchanging one byte so both ends are ESTABLISHED with data seen), then everything waits. Memory
is what ``tracemalloc`` counts as allocated by Python between before the connections and after
them, divided by ``2 N`` (each connection has two ends in this process, and both are counted),
and the process's RSS growth the same way; idle CPU is the process's user+system time over
:data:`IDLE_SECONDS` with every connection open and quiet (keepalives off, as by default).
"""

from __future__ import annotations

import asyncio
import resource
import tempfile
import time
import tracemalloc
from typing import Any

IDLE_SECONDS = 10.0
BATCH = 200
PORT = 7400


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _run(count: int) -> list[dict[str, Any]]:
    from ztnode.testing.local import LocalZtWorld

    with tempfile.TemporaryDirectory() as base:
        async with LocalZtWorld(base, members=2) as world:
            a, b = world.networks
            accepted: list[asyncio.StreamWriter] = []

            async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.write(await reader.readexactly(1))
                accepted.append(writer)

            server = await b.start_server(hold, port=PORT, backlog=BATCH * 2)
            await asyncio.sleep(1.0)  # the world's own start-up traffic dies down
            tracemalloc.start()
            mem0, rss0 = tracemalloc.get_traced_memory()[0], _rss_kb()
            t_open = time.perf_counter()
            clients: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
            for start in range(0, count, BATCH):
                batch = await asyncio.gather(
                    *(
                        a.open_connection(b.address(4), PORT)
                        for _ in range(min(BATCH, count - start))
                    )
                )
                for _, w in batch:
                    w.write(b"x")
                for r, _ in batch:
                    await r.readexactly(1)
                clients += batch
            opened_s = time.perf_counter() - t_open
            await asyncio.sleep(1.0)
            mem1, rss1 = tracemalloc.get_traced_memory()[0], _rss_kb()
            tracemalloc.stop()
            cpu0, t0 = _cpu_s(), time.perf_counter()
            await asyncio.sleep(IDLE_SECONDS)
            idle_cpu = (_cpu_s() - cpu0) / (time.perf_counter() - t0)
            ends = 2 * len(clients)
            rows = [
                {"what": "idle TCP connections open", "value": len(clients), "unit": "count"},
                {
                    "what": "opened at (batches of 200, 1 byte each way, tracemalloc on)",
                    "value": round(len(clients) / opened_s),
                    "unit": "connections/s",
                },
                {
                    "what": "Python memory per connection end (tracemalloc)",
                    "value": round((mem1 - mem0) / ends / 1024, 2),
                    "unit": "KB",
                },
                {
                    "what": "RSS per connection end",
                    "value": round((rss1 - rss0) / ends, 2),
                    "unit": "KB",
                },
                {
                    "what": f"CPU while all are idle ({IDLE_SECONDS:.0f} s)",
                    "value": round(idle_cpu * 100, 3),
                    "unit": "% of one core",
                },
            ]
            for _, w in clients:
                w.close()
            for w in accepted:
                w.close()
            server.close()
            return rows


def rows(quick: bool) -> list[dict[str, Any]]:
    return asyncio.run(_run(1000 if quick else 10000))
