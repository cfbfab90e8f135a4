"""What waking another process costs on this machine: a UDP ping-pong between two processes on
blocking sockets (no event loop, no ZeroTier), with both processes on one CPU, on two, and where
the kernel puts them; and the machine's idle driver, which decides much of it.

    python -m bench.wake_floor [--count 20000]

Why it is a benchmark of its own: every two-process round trip (ztnode's or libzt's) pays this
twice. In a virtual machine whose idle virtual CPUs halt at once (cpuidle ``haltpoll`` with
``guest_halt_poll_ns`` 0, as on the machine the figures in docs/performance.md come from), a
wake-up that crosses CPUs costs tens of microseconds, several times the work of a small round
trip, and the work that follows runs on cold caches; on one CPU the same ping-pong costs a
context switch. The figure tells what part of a two-process latency is the machine's, and why
busy polling (:mod:`ztnode.transport.busypoll`) pays (docs/performance.md, issue 16's seventh
step).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

from ztnode.transport import cpuidle


def _pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def _serve(port: int, cpu: int | None) -> None:
    _pin(cpu)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(30.0)  # bounded: the client kills this process when done anyway
    print(s.getsockname()[1], flush=True)
    peer = ("127.0.0.1", port)
    while True:
        try:
            data = s.recv(64)
        except TimeoutError:
            return
        if data == b"q":
            return
        s.sendto(data, peer)


def measure(count: int, cpus: tuple[int, int] | None) -> tuple[float, float]:
    """Median and 90th percentile round trip (us) of ``count`` ping-pongs, the server on
    ``cpus[0]`` and this process on ``cpus[1]`` (None: wherever the kernel puts them)."""
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(1.0)
    cmd = [sys.executable, "-m", "bench.wake_floor", "--serve", str(client.getsockname()[1])]
    if cpus is not None:
        cmd += ["--cpu", str(cpus[0])]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    saved = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        assert server.stdout is not None
        addr = ("127.0.0.1", int(server.stdout.readline()))
        _pin(cpus[1] if cpus is not None else None)
        times: list[float] = []
        for i in range(count + 1000):  # the first thousand warm up
            t0 = time.perf_counter()
            client.sendto(b"x", addr)
            client.recv(64)
            if i >= 1000:
                times.append((time.perf_counter() - t0) * 1e6)
        client.sendto(b"q", addr)
    finally:
        if saved is not None:
            os.sched_setaffinity(0, saved)
        server.kill()
        server.wait(10)
        client.close()
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        _serve(args.serve, args.cpu)
        return
    print(f"{os.cpu_count()} CPUs, {cpuidle.read().summary()}\n")
    print("| placement | median (us) | p90 (us) |\n|---|---|---|")
    placements: list[tuple[str, tuple[int, int] | None]] = [("the kernel's", None)]
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        placements += [("one CPU", (0, 0)), ("two CPUs", (0, 1))]
    for name, cpus in placements:
        p50, p90 = measure(args.count, cpus)
        print(f"| {name} | {p50:.1f} | {p90:.1f} |")


if __name__ == "__main__":
    main()
