"""One ztnode member in its own process, driven by JSON lines on stdin (one reply line each).

The TCP benchmark runs two of these, as the libzt side runs two libzt processes, so each
node has a core of its own; ``--loop uvloop`` runs one on uvloop (default: asyncio's loop),
``--busy-poll US`` busy-polls on asyncio's loop (:mod:`ztnode.transport.busypoll`).
``--kernel`` runs no node at all: the same operations on asyncio's own sockets over the
interface it is bound to, the reference every asyncio program pays (no ZeroTier, no user-space
stack; ``join`` answers with the bound address). Requests::

    {"op": "join", "nwid": "<hex>"}                     -> {"ip4": ..., "ip6": ...}
    {"op": "serve", "port": P}                          -> sink on P, echo on P + 1
    {"op": "bulk", "host": H, "port": P, "bytes": N}    -> {"seconds": s, "bytes": N}
    {"op": "connect", "host": H, "port": P, "count": K[, "pause_ms": W]} -> {"ms": [...]}
    {"op": "rtt", "host": H, "port": P, "count": K}     -> {"ms": [...]}
    {"op": "revision"}                                  -> {"revision": R} (of the config held)
    {"op": "stop"}

The sink answers each connection's EOF with the byte count it read, so ``bulk`` times the
transfer up to the last byte *received*, not merely queued.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from ztnode.sockets.aio import Network, Node
from ztnode.transport import eventloop


class KernelNet:
    """The subset of :class:`~ztnode.sockets.aio.Network` this program uses, on the kernel's
    sockets bound to ``bind`` (``--kernel``); IPv4 only."""

    def __init__(self, bind: str) -> None:
        self.bind = bind

    def address(self, family: int) -> str | None:
        return self.bind if family == 4 else None

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)  # asyncio sets TCP_NODELAY itself

    async def start_server(self, cb: Any, port: int, family: int = 4) -> asyncio.Server | None:
        if family != 4:
            return None
        return await asyncio.start_server(cb, self.bind, port)

    async def create_datagram_endpoint(
        self,
        factory: Any,
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
    ) -> tuple[Any, Any]:
        if local_addr is not None:
            local_addr = (self.bind, local_addr[1])
        loop = asyncio.get_running_loop()
        return await loop.create_datagram_endpoint(
            factory, local_addr=local_addr, remote_addr=remote_addr
        )


Net = Network | KernelNet


def _nodelay(writer: asyncio.StreamWriter) -> None:
    """TCP_NODELAY on a ztnode connection (asyncio's own transports set it already)."""
    sock = writer.get_extra_info("ztnode_socket")
    if sock is not None:
        sock.conn.set_nodelay(True)


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    n = 0
    while chunk := await reader.read(1 << 20):
        n += len(chunk)
    writer.write(n.to_bytes(8, "big"))
    await writer.drain()
    writer.close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _nodelay(writer)
    while chunk := await reader.read(65536):
        writer.write(chunk)
    writer.close()


async def _bulk(net: Net, host: str, port: int, size: int) -> dict[str, Any]:
    reader, writer = await net.open_connection(host, port)
    block = bytes(1 << 20)
    t0 = time.perf_counter()
    c0 = time.process_time()
    left = size
    while left > 0:
        writer.write(block[: min(left, len(block))])
        left -= len(block)
        await writer.drain()
    writer.write_eof()
    got = int.from_bytes(await reader.readexactly(8), "big")
    dt = time.perf_counter() - t0
    writer.close()
    return {"seconds": dt, "bytes": got, "cpu": time.process_time() - c0}


async def _connects(
    net: Net, host: str, port: int, count: int, pause_ms: float = 0.0
) -> dict[str, Any]:
    """``count`` connects, each closed (and its close awaited) before the next; ``pause_ms``
    of idleness after each close, to tell a connect that meets the server still tearing down
    the previous one from one that meets an idle server."""
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        _, writer = await net.open_connection(host, port)
        out.append((time.perf_counter() - t0) * 1000)
        writer.close()
        await writer.wait_closed()
        if pause_ms:
            await asyncio.sleep(pause_ms / 1000)
    return {"ms": out}


async def _rtt(net: Net, host: str, port: int, count: int) -> dict[str, Any]:
    reader, writer = await net.open_connection(host, port)
    _nodelay(writer)
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        writer.write(b"x")
        await reader.readexactly(1)
        out.append((time.perf_counter() - t0) * 1000)
    writer.close()
    return {"ms": out}


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


class _UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)


async def _udp_rtt(net: Net, host: str, port: int, count: int, size: int) -> dict[str, Any]:
    """As libzt's ``udp_ping``: a first request retried until answered (the neighbour
    resolved), then ``count`` timed round trips, each lost after a second."""
    loop = asyncio.get_running_loop()
    proto = _UdpClient()
    transport, _ = await net.create_datagram_endpoint(lambda: proto, remote_addr=(host, port))
    payload = bytes(size)

    async def once() -> float | None:
        proto.waiter = loop.create_future()
        t0 = time.perf_counter()
        transport.sendto(payload)
        try:
            await asyncio.wait_for(proto.waiter, 1.0)
        except TimeoutError:
            return None
        return (time.perf_counter() - t0) * 1000

    try:
        for _ in range(5):
            if await once() is not None:
                break
        else:
            raise TimeoutError(f"no UDP echo from {host} port {port}")
        ms: list[float] = []
        lost = 0
        for _ in range(count):
            r = await once()
            if r is None:
                lost += 1
            else:
                ms.append(r)
        return {"ms": ms, "lost": lost}
    finally:
        transport.close()


async def _rps(
    net: Net, host: str, port: int, connections: int, seconds: float, size: int
) -> dict[str, Any]:
    """``connections`` connections to an echo server, each sending ``size`` bytes and waiting
    for them back, again and again for ``seconds``: a small RPC protocol's request rate."""
    pairs = [await net.open_connection(host, port) for _ in range(connections)]
    for _, w in pairs:
        _nodelay(w)
    payload = bytes(size)
    counts = [0] * connections
    t0 = time.perf_counter()
    end = t0 + seconds

    async def run(i: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while time.perf_counter() < end:
            writer.write(payload)
            await reader.readexactly(size)
            counts[i] += 1

    await asyncio.gather(*(run(i, r, w) for i, (r, w) in enumerate(pairs)))
    elapsed = time.perf_counter() - t0
    for _, w in pairs:
        w.close()
    return {"requests": sum(counts), "elapsed": elapsed, "per_connection": counts}


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    node: Node | None = None
    if not args.kernel:
        node = Node(
            Path(args.home),
            planet=Path(args.planet).read_bytes(),
            allow_loopback=True,
            bind=(args.bind,),
        )
        await node.start()
    net: Net | None = None

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"address": node.address if node is not None else ""})
    try:
        while line := await reader.readline():
            req = json.loads(line)
            op = req["op"]
            try:
                if op == "join":
                    if node is None:
                        net = KernelNet(args.bind)
                    else:
                        net = await node.join(req["nwid"], timeout=60)
                    reply({"ip4": net.address(4), "ip6": net.address(6)})
                elif op == "cpu":
                    reply({"cpu": time.process_time()})
                elif op == "revision":
                    core = node.service.node if node is not None else None
                    held = (
                        core.network(net.id)
                        if core is not None and isinstance(net, Network)
                        else None
                    )
                    cfg = held.config if held is not None else None
                    reply({"revision": cfg.revision if cfg is not None else -1})
                elif op == "stop":
                    reply({})
                    break
                else:
                    assert net is not None, "join first"
                    if op == "serve":
                        await net.start_server(_sink, port=req["port"])
                        await net.start_server(_echo, port=req["port"] + 1)
                        await net.start_server(_sink, port=req["port"], family=6)
                        await net.start_server(_echo, port=req["port"] + 1, family=6)
                        reply({})
                    elif op == "bulk":
                        reply(await _bulk(net, req["host"], req["port"], req["bytes"]))
                    elif op == "connect":
                        reply(
                            await _connects(
                                net,
                                req["host"],
                                req["port"],
                                req["count"],
                                req.get("pause_ms", 0.0),
                            )
                        )
                    elif op == "rtt":
                        reply(await _rtt(net, req["host"], req["port"], req["count"]))
                    elif op == "udp_serve":
                        await net.create_datagram_endpoint(
                            _UdpEcho, local_addr=("0.0.0.0", req["port"])
                        )
                        reply({})
                    elif op == "udp_rtt":
                        reply(
                            await _udp_rtt(
                                net, req["host"], req["port"], req["count"], req.get("size", 32)
                            )
                        )
                    elif op == "rps":
                        reply(
                            await _rps(
                                net,
                                req["host"],
                                req["port"],
                                req["connections"],
                                req["seconds"],
                                req.get("size", 32),
                            )
                        )
                    else:
                        reply({"error": f"unknown op {op!r}"})
            except Exception as e:  # reported to the driver, which fails the benchmark
                reply({"error": f"{type(e).__name__}: {e}"})
    finally:
        if node is not None:
            await node.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", required=True)
    ap.add_argument("--planet", required=True)
    ap.add_argument("--bind", default="127.0.0.1")
    # The stock loop unless asked: the benchmark names the loop of each column itself.
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    ap.add_argument("--busy-poll", type=int, default=0, metavar="US")
    ap.add_argument("--kernel", action="store_true", help="no node: asyncio's own sockets")
    cli = ap.parse_args()
    eventloop.run(main(cli), eventloop.choose(cli.loop, busy_poll=cli.busy_poll))
