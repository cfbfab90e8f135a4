"""Many TCP connections on one node: memory per idle connection and CPU while idle
(``python -m bench --only scale``), connections opened and closed per second (``--only
churn``) and a burst of connects at one listener (``--only burst``).

Two members of a :class:`~ztnode.testing.local.LocalZtWorld` in this process (loopback): the
server's network listens, the client's opens ``N`` connections to it (in batches, each
exchanging one byte so both ends are ESTABLISHED with data seen), then everything waits. Memory
is the process's RSS growth over the ``N`` connections divided by ``2 N`` (each connection has
two ends in this process, and both are counted), measured untraced, and what ``tracemalloc``
counts as allocated by Python over a further sample of them (tracing costs memory of its own, a
record per live block, which an RSS taken while tracing would count as the connections'); idle
CPU is the process's user+system time over :data:`IDLE_SECONDS` with the ``N`` open and quiet
(keepalives off, as by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
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

            clients: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

            async def open_some(n: int) -> float:
                """Open ``n`` more connections, each carrying a byte each way; seconds taken."""
                t = time.perf_counter()
                for start in range(0, n, BATCH):
                    batch = await asyncio.gather(
                        *(
                            a.open_connection(b.address(4), PORT)
                            for _ in range(min(BATCH, n - start))
                        )
                    )
                    for _, w in batch:
                        w.write(b"x")
                    for r, _ in batch:
                        await r.readexactly(1)
                    clients.extend(batch)
                return time.perf_counter() - t

            server = await b.start_server(hold, port=PORT, backlog=BATCH * 2)
            await asyncio.sleep(1.0)  # the world's own start-up traffic dies down
            # RSS untraced: tracemalloc's own record of every live block would count too.
            rss0 = _rss_kb()
            opened_s = await open_some(count)
            await asyncio.sleep(1.0)
            rss1 = _rss_kb()
            cpu0, t0 = _cpu_s(), time.perf_counter()
            await asyncio.sleep(IDLE_SECONDS)
            idle_cpu = (_cpu_s() - cpu0) / (time.perf_counter() - t0)
            # Python's own allocations, traced, over a sample opened beside them.
            sample = max(count // 10, BATCH)
            tracemalloc.start()
            mem0 = tracemalloc.get_traced_memory()[0]
            await open_some(sample)
            await asyncio.sleep(1.0)
            mem1 = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            rows = [
                {"what": "idle TCP connections open", "value": len(clients), "unit": "count"},
                {
                    "what": f"opened at (batches of {BATCH}, 1 byte each way)",
                    "value": round(count / opened_s),
                    "unit": "connections/s",
                },
                {
                    "what": f"Python memory per connection end (tracemalloc, {sample} more)",
                    "value": round((mem1 - mem0) / (2 * sample) / 1024, 2),
                    "unit": "KB",
                },
                {
                    "what": f"RSS per connection end (the first {count}, untraced)",
                    "value": round((rss1 - rss0) / (2 * count), 2),
                    "unit": "KB",
                },
                {
                    "what": f"CPU while {count} are idle ({IDLE_SECONDS:.0f} s)",
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


#: How long the churn run opens and closes connections.
CHURN_SECONDS = 20.0
#: Connections in flight at once during the churn run.
CHURN_WORKERS = 16
CHURN_PORT = 7401


async def _churn(seconds: float, client_first: bool = False) -> list[dict[str, Any]]:
    """Connections opened, used for one byte each way and closed, back to back from
    ``CHURN_WORKERS`` tasks for ``seconds``: the rate sustained, its slowest second, and the
    connection tables (TIME-WAIT included) of both ends. ``client_first``: the client closes
    first (as most RPC clients do), so TIME-WAIT holds the client's 4-tuples: once the 16 384
    ephemeral ports are all waiting, only taking over a second-old wait keeps connects
    going (``StackConfig.reuse_time_wait``)."""
    from ztnode.testing.local import LocalZtWorld

    with tempfile.TemporaryDirectory() as base:
        async with LocalZtWorld(base, members=2) as world:
            a, b = world.networks

            async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.write(await reader.readexactly(1))
                if client_first:
                    await reader.read()  # the client's FIN first
                writer.close()  # else the server closes first, as HTTP/1.0 does

            server = await b.start_server(answer, port=CHURN_PORT, backlog=CHURN_WORKERS * 4)
            await asyncio.sleep(1.0)
            done = 0
            errors: dict[str, int] = {}
            deadline = time.perf_counter() + seconds
            host = b.address(4)

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    try:
                        r, w = await a.open_connection(host, CHURN_PORT)
                        w.write(b"x")
                        await r.readexactly(1)
                        if client_first:
                            w.close()
                            await w.wait_closed()
                        else:
                            await r.read()  # the server's FIN
                            w.close()
                        done += 1
                    except (OSError, asyncio.IncompleteReadError) as exc:
                        errno = f" {exc.errno}" if isinstance(exc, OSError) else ""
                        key = type(exc).__name__ + errno
                        errors[key] = errors.get(key, 0) + 1
                        await asyncio.sleep(0.01)

            per_second: list[int] = []
            tables: list[int] = []
            waits: list[int] = []
            cpu0 = _cpu_s()
            tasks = [asyncio.create_task(worker()) for _ in range(CHURN_WORKERS)]
            last = 0
            for _ in range(int(seconds)):
                await asyncio.sleep(1.0)
                per_second.append(done - last)
                last = done
                tables.append(len(a.stack._tcp) + len(b.stack._tcp))
                waits.append(len(a.stack._time_wait) + len(b.stack._time_wait))
            await asyncio.gather(*tasks)
            cpu = (_cpu_s() - cpu0) / seconds
            server.close()
            steady = per_second[1:] or per_second
            closer = "the client" if client_first else "the server"
            reused = a.stack.counters.get("tcp_time_wait_reused", 0)
            return [
                {
                    "what": f"connections opened and closed per second ({CHURN_WORKERS} at once, "
                    f"{seconds:.0f} s, both ends in this process, {closer} closing first)",
                    "value": round(done / seconds),
                    "unit": "connections/s",
                },
                {
                    "what": "slowest second after the first",
                    "value": min(steady),
                    "unit": "connections/s (each second: "
                    + " ".join(str(n) for n in per_second)
                    + ")",
                },
                {"what": "errors", "value": sum(errors.values()), "unit": str(errors or "")},
                {
                    "what": "connections open, both ends, at the end",
                    "value": tables[-1] if tables else 0,
                    "unit": "connections",
                },
                {
                    "what": "TIME-WAIT records at the end (2*MSL = 60 s of closes)",
                    "value": waits[-1] if waits else 0,
                    "unit": "records",
                },
                {
                    "what": "connects that took over a TIME-WAIT 4-tuple",
                    "value": reused,
                    "unit": "connects",
                },
                {"what": "CPU during the run", "value": round(cpu * 100), "unit": "% of one core"},
                {"what": "RSS at the end", "value": round(_rss_kb() / 1024), "unit": "MB"},
            ]


def churn_rows(quick: bool) -> list[dict[str, Any]]:
    seconds = 5.0 if quick else CHURN_SECONDS
    return asyncio.run(_churn(seconds)) + asyncio.run(_churn(seconds, client_first=True))


#: Connects fired at once in the burst run, and the listener's backlog (asyncio's default).
BURST_CONNECTS = 1000
BURST_BACKLOG = 100
BURST_PORT = 7402


async def _burst_once(
    open_conn: Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]],
    n: int,
) -> tuple[float, list[float], int]:
    """``n`` connects started together, each sending a byte and reading it back: the seconds
    until the last answer, every connect's time (s), and how many failed."""
    times: list[float] = []
    failed = 0
    t0 = time.perf_counter()

    async def one() -> None:
        nonlocal failed
        try:
            r, w = await open_conn()
            times.append(time.perf_counter() - t0)
            w.write(b"x")
            await r.readexactly(1)
            w.close()
        except (OSError, asyncio.IncompleteReadError):
            failed += 1

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), 120)
    return time.perf_counter() - t0, sorted(times), failed


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        writer.write(await reader.readexactly(1))
    writer.close()


def _burst_row(
    what: str, total: float, times: list[float], failed: int, drops: str
) -> dict[str, Any]:
    def q(p: float) -> float:
        return round(times[min(len(times) - 1, int(p * len(times)))] * 1000, 1) if times else 0.0

    return {
        "what": what,
        "all answered (ms)": round(total * 1000, 1),
        "connect p50 (ms)": q(0.5),
        "connect p99 (ms)": q(0.99),
        "failed": failed,
        "SYNs or ACKs dropped": drops,
    }


async def _burst(n: int) -> list[dict[str, Any]]:
    """A burst of ``n`` connects at one listener whose backlog is asyncio's default: ztnode's
    two members in this process, then the same program on the kernel's TCP over loopback (the
    reference: what asyncio's own sockets do with the same backlog in the same loop). The
    client has not resolved the server's address yet, so its SYNs first wait for ARP, as a
    program's first connections to a host do."""
    from ztnode.testing.local import LocalZtWorld

    rows = []
    with tempfile.TemporaryDirectory() as base:
        async with LocalZtWorld(base, members=2) as world:
            a, b = world.networks
            server = await b.start_server(_answer, port=BURST_PORT, backlog=BURST_BACKLOG)
            await asyncio.sleep(1.0)  # the world's own start-up traffic dies down
            host = b.address(4)
            total, times, failed = await _burst_once(lambda: a.open_connection(host, BURST_PORT), n)
            c = b.stack.counters
            drops = ", ".join(
                f"{k} {c.get(k, 0)}"
                for k in ("tcp_backlog_full", "tcp_listen_overflow", "tcp_syn_backlog_full")
            )
            waited = a.stack.counters.get("neighbor_queue_full", 0)
            drops += f", client neighbor_queue_full {waited}"
            rows.append(_burst_row(f"ztnode, {n} connects", total, times, failed, drops))
            server.close()
    kernel = await asyncio.start_server(_answer, "127.0.0.1", 0, backlog=BURST_BACKLOG)
    port = kernel.sockets[0].getsockname()[1]
    total, times, failed = await _burst_once(lambda: asyncio.open_connection("127.0.0.1", port), n)
    kernel.close()
    rows.append(
        _burst_row(f"kernel TCP, loopback, {n} connects", total, times, failed, "not counted")
    )
    return rows


def burst_rows(quick: bool) -> list[dict[str, Any]]:
    return asyncio.run(_burst(300 if quick else BURST_CONNECTS))
