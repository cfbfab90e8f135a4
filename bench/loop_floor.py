"""The event loop's own floor for a small round trip: an asyncio UDP ping-pong with nothing of
ZeroTier in it, in one process and across two, on the stock loop and on uvloop.

    python -m bench.loop_floor [--count 20000] [--busy-poll US]

Each side reads with ``add_reader`` + ``recvfrom`` and the client waits on a future, the shape
of ztnode's transport and of an application awaiting an answer, so the figure is what any
asyncio node pays per round trip before its own work (loopback, 64-byte datagrams). ztnode's
echo round trip minus this is what its layers cost (docs/performance.md, issue 16's third step).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ztnode.transport import eventloop


def _reader(sock: socket.socket, on_data: Callable[[bytes, Any], None]) -> Callable[[], None]:
    def drain() -> None:
        for _ in range(64):  # bounded per wake-up
            try:
                data, addr = sock.recvfrom(2048)
            except BlockingIOError:
                return
            on_data(data, addr)

    return drain


def _bound() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


async def _client(server: tuple[str, int], count: int, echo: socket.socket | None) -> float:
    """Median round trip (us) to ``server``; ``echo``, when given, is an echo socket served on
    this same loop (the one-process case)."""
    loop = asyncio.get_running_loop()
    sock = _bound()
    waiter: list[asyncio.Future[bytes]] = []

    def answered(data: bytes, _addr: Any) -> None:
        if waiter and not waiter[0].done():
            waiter[0].set_result(data)

    loop.add_reader(sock, _reader(sock, answered))
    if echo is not None:
        loop.add_reader(echo, _reader(echo, echo.sendto))
    payload = bytes(64)
    times: list[float] = []
    try:
        for i in range(count + 1000):  # the first thousand warm up
            fut = loop.create_future()
            waiter[:] = [fut]
            t0 = time.perf_counter()
            sock.sendto(payload, server)
            async with asyncio.timeout(1.0):  # bounded; cheaper than wait_for's task
                await fut
            if i >= 1000:
                times.append(time.perf_counter() - t0)
    finally:
        loop.remove_reader(sock)
        if echo is not None:
            loop.remove_reader(echo)
        sock.close()
    return statistics.median(times) * 1e6


async def _serve(seconds: float) -> None:
    loop = asyncio.get_running_loop()
    sock = _bound()
    loop.add_reader(sock, _reader(sock, sock.sendto))
    print(sock.getsockname()[1], flush=True)
    await asyncio.sleep(seconds)
    sock.close()


def _run(loop_name: str, main: Coroutine[Any, Any, Any], busy_poll: int = 0) -> Any:
    return eventloop.run(main, eventloop.choose(loop_name or None, busy_poll=busy_poll))


def measure(loop_name: str, count: int, busy_poll: int = 0) -> dict[str, Any]:
    """One row: the floor in one process and across two, on ``loop_name`` (both sides
    busy-polling ``busy_poll`` us when not 0: :mod:`ztnode.transport.busypoll`)."""
    echo = _bound()
    try:
        one = _run(loop_name, _client(echo.getsockname(), count, echo), busy_poll)
    finally:
        echo.close()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.loop_floor",
            "--serve",
            "--loop",
            loop_name,
            "--busy-poll",
            str(busy_poll),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        two = _run(loop_name, _client(("127.0.0.1", port), count, None), busy_poll)
    finally:
        server.kill()
        server.wait(10)
    return {"loop": loop_name, "one_process_us": round(one, 1), "two_processes_us": round(two, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--loop", default="")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--busy-poll", type=int, default=0, metavar="US", help="asyncio's loop only")
    args = ap.parse_args()
    if args.serve:
        _run(args.loop, _serve(300), args.busy_poll)
        return
    loops = [args.loop] if args.loop else ["asyncio"] if args.busy_poll else ["asyncio", "uvloop"]
    print("| loop | one process (us) | two processes (us) |\n|---|---|---|")
    for name in loops:
        try:
            r = measure(name, args.count, args.busy_poll)
        except eventloop.LoopChoiceError as e:
            print(f"| {name} | not run: {e} | |")
            continue
        print(f"| {r['loop']} | {r['one_process_us']} | {r['two_processes_us']} |")


if __name__ == "__main__":
    main()
