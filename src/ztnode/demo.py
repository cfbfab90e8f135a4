"""``ztnode demo``: a whole ZeroTier world on this machine in one command, shown working.

It makes fresh identities, starts a root with a planet of its own (which also runs the network
controller), creates a private network, authorizes two member nodes and joins them; then the
members ping each other over IPv4 and IPv6, run a TCP echo and a short throughput test, and a
table says what each member got (addresses, the path between them, latency, throughput).
Everything is in this process on loopback UDP; nothing leaves the machine.

``--keep`` leaves the world running, with each node's local API up, and prints the commands to
look at it; Ctrl-C stops it.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ztnode.sockets.aio import Network, Node
from ztnode.testing.local import LocalZtWorld, generate_identities
from ztnode.transport import fastpath

__all__ = ["DemoResult", "TransferCheck", "run_demo", "transfer_check"]

THROUGHPUT_BYTES = 8_000_000
PINGS = 5


@dataclass
class DemoResult:
    member: str
    address: str
    ipv4: str
    ipv6: str
    path: str
    ping_v4_ms: float
    ping_v6_ms: float
    echo_ok: bool
    throughput_mb_s: float


async def _echo_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    n = 0
    while data := await reader.read(1 << 20):
        n += len(data)
    writer.write(n.to_bytes(8, "big"))
    await writer.drain()
    writer.close()


async def _ping_ms(src: Network, host: str) -> float:
    return statistics.median([await src.ping(host, timeout=3.0) for _ in range(PINGS)]) * 1000


async def _echo(src: Network, host: str, port: int) -> bool:
    reader, writer = await src.open_connection(host, port, timeout=10)
    message = b"hello over ZeroTier\n" * 50
    writer.write(message)
    await writer.drain()
    got = await asyncio.wait_for(reader.readexactly(len(message)), 10)
    writer.close()
    return got == message


async def _throughput(src: Network, host: str, port: int, nbytes: int = THROUGHPUT_BYTES) -> float:
    reader, writer = await src.open_connection(host, port, timeout=10)
    block = bytes(1 << 20)
    t0 = time.perf_counter()
    left = nbytes
    while left > 0:
        writer.write(block[: min(left, len(block))])
        left -= len(block)
        await writer.drain()
    writer.write_eof()
    got = int.from_bytes(await asyncio.wait_for(reader.readexactly(8), 30), "big")
    dt = time.perf_counter() - t0
    writer.close()
    return got / dt / 1e6


def _path(node: Node, other: Node) -> str:
    core = node.service.node
    assert core is not None
    peer = core.peer(int(other.address, 16))
    if peer is None:
        return "unknown"
    p = peer.best_path(node.service.clock.now())
    if p is None:
        return "relayed via the root"
    return f"direct {p.remote[0]}/{p.remote[1]}"


async def run_demo(console: Console, *, keep: bool = False, base: Path | None = None) -> int:
    with ExitStack() as stack:
        if base is None:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ztnode-demo-")))
        t_start = time.perf_counter()
        fast = fastpath.report()
        mark = "[green]✓[/]" if fast.fast else "[yellow]![/]"
        console.print(f"{mark} {escape(fast.summary())}", highlight=False)
        # The package the running loop comes from: asyncio's own, or uvloop (ztnode --loop).
        kind = type(asyncio.get_running_loop()).__module__.partition(".")[0]
        console.print(f"[green]✓[/] event loop: {kind}", highlight=False)
        with console.status("making identities for a root and two members"):
            ids = await generate_identities(3)
        console.print(f"[green]✓[/] identities: root {ids[0].address:010x}, members "
                      f"{ids[1].address:010x} and {ids[2].address:010x}")  # fmt: skip
        world = LocalZtWorld(base, members=2, identities=ids)
        try:
            with console.status("starting the root, the controller and two members"):
                await world.start(timeout=60)
            assert world.planet is not None
            console.print(
                f"[green]✓[/] planet {world.planet.id:#x} with one root on 127.0.0.1; private "
                f"network {world.network_id:016x} created, both members authorized and joined"
            )
            a, b = world.networks
            na, nb = world.members
            results: list[DemoResult] = []
            await b.start_server(_echo_server, port=7)
            await b.start_server(_sink, port=9)
            await a.start_server(_echo_server, port=7)
            await a.start_server(_sink, port=9)
            for (src, srcn), (dst, dstn) in (((a, na), (b, nb)), ((b, nb), (a, na))):
                with console.status(f"member {srcn.address} -> {dstn.address}: ping, echo, bulk"):
                    v4 = await _ping_ms(src, dst.address(4))
                    v6 = await _ping_ms(src, dst.address(6))
                    echo_ok = await _echo(src, dst.address(4), 7)
                    mbs = await _throughput(src, dst.address(4), 9)
                results.append(
                    DemoResult(
                        member=f"{srcn.address} -> {dstn.address}",
                        address=srcn.address,
                        ipv4=src.address(4),
                        ipv6=src.address(6),
                        path=_path(srcn, dstn),
                        ping_v4_ms=v4,
                        ping_v6_ms=v6,
                        echo_ok=echo_ok,
                        throughput_mb_s=mbs,
                    )
                )
                console.print(f"[green]✓[/] {srcn.address} -> {dstn.address}: ping, TCP echo "
                              f"and {THROUGHPUT_BYTES // 1_000_000} MB over TCP")  # fmt: skip
            members = Table(title=f"members of network {world.network_id:016x}")
            for col in ("member", "IPv4", "IPv6 (rfc4193)"):
                members.add_column(col)
            for node, net in ((na, a), (nb, b)):
                members.add_row(node.address, net.address(4), net.address(6))
            links = Table(title="between them")
            for col in ("from -> to", "path", "ping v4", "ping v6", "TCP echo", "throughput"):
                links.add_column(col)
            for r in results:
                links.add_row(
                    r.member,
                    r.path,
                    f"{r.ping_v4_ms:.2f} ms",
                    f"{r.ping_v6_ms:.2f} ms",
                    "ok" if r.echo_ok else "FAILED",
                    f"{r.throughput_mb_s:.1f} MB/s",
                )
            console.print(members)
            console.print(links)
            ok = all(r.echo_ok for r in results)
            console.print(f"finished in {time.perf_counter() - t_start:.1f} s")
            if keep:
                await _keep_running(console, world, base)
            return 0 if ok else 1
        finally:
            await world.stop()
    return 1


@dataclass
class TransferCheck:
    """What :func:`transfer_check` saw: a member's ping, TCP echo and bulk rate to the other."""

    ping_ms: float
    echo_ok: bool
    throughput_mb_s: float
    path: str


async def transfer_check(base: Path, nbytes: int) -> TransferCheck:
    """A root and two members in this process (loopback UDP only), then ping, a TCP echo and
    ``nbytes`` of bulk TCP from one member to the other: ``ztnode doctor``'s end-to-end check,
    the same traffic the demo shows."""
    ids = await generate_identities(3)
    world = LocalZtWorld(base, members=2, identities=ids)
    try:
        await world.start(timeout=60)
        a, b = world.networks
        na, nb = world.members
        await b.start_server(_echo_server, port=7)
        await b.start_server(_sink, port=9)
        ping = await _ping_ms(a, b.address(4))
        echo_ok = await _echo(a, b.address(4), 7)
        mbs = await _throughput(a, b.address(4), 9, nbytes)
        return TransferCheck(ping, echo_ok, mbs, _path(na, nb))
    finally:
        await world.stop()


async def _keep_running(console: Console, world: LocalZtWorld, base: Path) -> None:
    from ztnode.transport.localapi import serve_local_api

    apis = []
    assert world.root is not None
    for node in (world.root, *world.members):
        api, _port = await serve_local_api(node.service)
        apis.append(api)
    member = base / "member0"
    console.print(
        "\nThe world keeps running (Ctrl-C stops it). Try:\n"
        f"  ztnode info --home {member}\n"
        f"  ztnode peers --home {member}\n"
        f"  ztnode networks --home {member}\n"
        f"  ztnode controller member list {world.network_id:016x} --home {base / 'root'}\n"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for api in apis:
        await api.close()
