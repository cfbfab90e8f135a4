"""Instructions per small round trip, counted by valgrind: a figure that does not move with the
machine's mood.

    python -m bench.instr_echo [--count 1000] [--runs 2] [--udp | --connect]   (needs valgrind)

Wall-clock time of the in-process echo (``python -m bench.profile_echo``) swings by 2x between
runs on a shared virtual machine, so a change worth 5 % cannot be told from noise there.
``valgrind --tool=callgrind`` counts the instructions user space executes, the same for the
same program and inputs whatever else the machine does. Each run starts this module again
under callgrind with counting off, builds a local world with two members in one process (as
``profile_echo`` does), warms up, and counts only ``--count`` round trips (a 1-byte TCP echo with
``TCP_NODELAY``, or ``--udp`` a 32-byte UDP echo, or ``--connect`` TCP connects: until the
client's ``open_connection`` returns, the server's accept included, the closes counted apart and
not at all), switched on and off with ``callgrind_control``. The same program over the
kernel's loopback TCP (or UDP) with asyncio's own streams (or datagram endpoints) runs beside
it as the reference: what asyncio and the application cost without ztnode. The kernel's own
instructions are not counted for either.

Background work is taken off: the nodes' timers (keepalives, housekeeping, the root's) run by
the wall clock, which valgrind stretches 50-100 times, so the counted rounds carry a share of
it that depends on how long they took (and on what else the machine ran meanwhile). Right
after the rounds the same process is counted again for as long, doing nothing but its timers,
and that count is subtracted (shown in its own column, per round).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

Rounds = Callable[[int], Awaitable[list[float]]]

_CHILD = "--child"


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(os.getpid())], check=True, capture_output=True)


async def _counted(work: Callable[[], Awaitable[object]]) -> None:
    """Count ``work`` (dumped as the profile's part 1), then an idle wait as long as it took
    (part 2): the background to take off."""
    start = time.monotonic()
    _control("-i", "on")
    await work()
    _control("-i", "off")
    _control("-d")
    elapsed = time.monotonic() - start
    _control("-i", "on")
    await asyncio.sleep(elapsed)
    _control("-i", "off")
    _control("-d")


async def _closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The connect bench's server: reads to the client's FIN, then closes its end."""
    await reader.read()
    writer.close()


class _Connects:
    """Opens connections and keeps them (``rounds``), closes them apart (``close_all``): only the
    connects are counted, as the TCP bench times only ``open_connection``."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]],
    ) -> None:
        self.connect = connect
        self.open: list[asyncio.StreamWriter] = []

    async def rounds(self, n: int) -> list[float]:
        for _ in range(n):
            self.open.append((await self.connect())[1])
        return []

    async def close_all(self) -> None:
        for writer in self.open:
            writer.close()
            await writer.wait_closed()
        self.open.clear()


async def _kernel_rounds(mode: str) -> tuple[Rounds, Callable[[], None]]:
    """The same program over the kernel's loopback with asyncio's own transports."""
    from bench.profile_echo import _echo
    from bench.tcp_peer import _UdpClient, _UdpEcho

    loop = asyncio.get_running_loop()
    if mode == "udp":
        server, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=("127.0.0.1", 0))
        client = _UdpClient()
        port = server.get_extra_info("sockname")[1]
        tr, _ = await loop.create_datagram_endpoint(lambda: client, remote_addr=("127.0.0.1", port))

        async def udp_rounds(n: int) -> list[float]:
            for _ in range(n):
                client.waiter = fut = loop.create_future()
                tr.sendto(bytes(32))
                await asyncio.wait_for(fut, 5.0)
            return []

        def close_udp() -> None:
            tr.close()
            server.close()

        return udp_rounds, close_udp
    srv = await asyncio.start_server(_echo, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.sockets[0].getsockname()[1])
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def tcp_rounds(n: int) -> list[float]:
        for _ in range(n):
            writer.write(b"x")
            await reader.readexactly(1)
        return []

    def close_tcp() -> None:
        writer.close()
        srv.close()

    return tcp_rounds, close_tcp


async def _count_connects(connects: _Connects, count: int) -> None:
    for _ in range(3):  # warm up, closing each batch before the next
        await connects.rounds(100)
        await connects.close_all()
    await _counted(lambda: connects.rounds(count))
    await connects.close_all()


async def _child(kind: str, count: int, mode: str) -> None:
    """Runs under callgrind: set up, warm up, count ``count`` round trips only."""
    if kind == "kernel" and mode == "connect":
        server = await asyncio.start_server(_closing, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        await _count_connects(_Connects(lambda: asyncio.open_connection("127.0.0.1", port)), count)
        server.close()
        return
    if kind == "kernel":
        rounds, close = await _kernel_rounds(mode)
        await rounds(300)
        await _counted(lambda: rounds(count))
        close()
        return
    from bench.profile_echo import QUIET, _tcp_rounds, _udp_rounds
    from ztnode.testing.local import LocalZtWorld

    with tempfile.TemporaryDirectory() as base:
        # Without mDNS/LLMNR (profile_echo.QUIET): their traffic arrives with wall-clock time,
        # which valgrind stretches, and made one build's counts differ by several per cent.
        async with LocalZtWorld(base, members=2, member_options=QUIET) as world:
            a, b = world.networks
            if mode == "connect":
                server = await b.start_server(_closing, port=7)
                host = b.address(4)
                await _count_connects(_Connects(lambda: a.open_connection(host, 7)), count)
                server.close()
                return
            rounds, close = await (_udp_rounds if mode == "udp" else _tcp_rounds)(a, b)
            await rounds(300)  # paths, ARP, caches, the compiled code's first calls
            await _counted(lambda: rounds(count))
            close()


def count_instructions(kind: str, count: int, mode: str) -> tuple[int, int]:
    """Instructions that ``count`` round trips of ``kind`` ("ztnode" or "kernel") executed, and
    those of the idle window as long that followed them (the background)."""
    with tempfile.TemporaryDirectory() as out:
        pattern = str(Path(out) / "cg.%p")
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={pattern}",
            sys.executable,
            "-m",
            "bench.instr_echo",
            _CHILD,
            kind,
            str(count),
            mode,
        ]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"callgrind run failed ({done.returncode}): {done.stderr[-2000:]}")
        parts: dict[int, int] = {}
        for f in Path(out).iterdir():  # the interpreter's dumps; children it forks count nothing
            part = total = 0
            for line in f.read_text(errors="replace").splitlines():
                if line.startswith("part:"):
                    part = int(line.split()[1])
                elif line.startswith("totals:"):
                    total = int(line.split()[1])
            parts[part] = parts.get(part, 0) + total
        return parts.get(1, 0), parts.get(2, 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=2)
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--udp", action="store_true", help="a 32-byte UDP echo instead of TCP")
    which.add_argument("--connect", action="store_true", help="TCP connects instead of echoes")
    args = ap.parse_args()
    mode = "udp" if args.udp else "connect" if args.connect else "tcp"
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    what = {
        "udp": "UDP, 32-byte echo",
        "tcp": "TCP, 1-byte echo",
        "connect": "TCP connect and close",
    }[mode]
    print(f"{what}, both ends in one process; user-space instructions per round")
    print(
        "| run | ztnode | its background, taken off | asyncio over the kernel's loopback"
        " | its background | ratio |"
    )
    print("|---|---|---|---|---|---|")
    for run in range(1, args.runs + 1):
        zt_all, zt_idle = count_instructions("ztnode", args.count, mode)
        k_all, k_idle = count_instructions("kernel", args.count, mode)
        zt, kernel = (zt_all - zt_idle) / args.count, (k_all - k_idle) / args.count
        print(
            f"| {run} | {zt:,.0f} | {zt_idle / args.count:,.0f} | {kernel:,.0f}"
            f" | {k_idle / args.count:,.0f} | {zt / kernel:.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == _CHILD:
        asyncio.run(_child(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
        sys.exit(0)
    sys.exit(main())
