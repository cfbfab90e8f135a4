"""The node under attack in the flood test: its own process, inside the test's namespace.

``python -m tests.interop.flood_target --home DIR --planet FILE --bind IP --port PORT`` starts a
ztnode member, prints ``{"address": ...}``, reads the network id to join from stdin, joins, serves
a UDP echo and a TCP echo on port 7 of its ZeroTier address and prints ``{"ready": IPV4}``. Then
each stdin line ``counters`` prints the node's counters, its transport's burst statistics and the
UDP echo's tally (requests seen, and how many were seen twice: replays that got through); ``quit``
or end of input stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from typing import Any

from ztnode.sockets.aio import Node

ECHO_PORT = 7


class UdpEcho(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.seen: Counter[bytes] = Counter()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.seen[data[:8]] += 1
        if self.transport is not None:
            self.transport.sendto(data, addr)


async def tcp_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", required=True)
    ap.add_argument("--planet", required=True)
    ap.add_argument("--bind", required=True)
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    async with Node(a.home, planet=a.planet, bind=(a.bind,), port=a.port) as node:
        emit({"address": node.address})
        nwid = (await stdin.readline()).decode().strip()
        net = await node.join(nwid, timeout=60)
        echo = UdpEcho()
        await net.create_datagram_endpoint(lambda: echo, local_addr=("0.0.0.0", ECHO_PORT))
        server = await net.start_server(tcp_echo, port=ECHO_PORT)
        emit({"ready": net.address(4)})
        while line := (await stdin.readline()).decode().strip():
            if line == "quit":
                break
            if line == "counters":
                svc = node.service
                core = svc.node
                bursts = [ep.burst_stats for ep in svc.endpoints.values()]
                emit(
                    {
                        "counters": dict(core.counters.drops) if core is not None else {},
                        "packets_in": core.counters.packets_in if core is not None else 0,
                        "bursts": [b for b in bursts if b is not None],
                        "echo_requests": len(echo.seen),
                        "echo_repeats": sum(n - 1 for n in echo.seen.values()),
                    }
                )
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
