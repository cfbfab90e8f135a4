"""A TCP echo client on a ZeroTier network, with asyncio streams.

    python examples/echo_client.py --home zt-home --network 8056c2e21c000001 \\
        --host 10.147.17.9 [--port 7] [message ...]
    python examples/echo_client.py --local    # client and an echo server in a local world

The first form joins a real network (ZeroTier's public planet unless --planet FILE is given)
and talks to an echo server there, such as examples/echo_server.py on another member.
"""

import argparse
import asyncio
import tempfile
import time

from ztnode import LocalZtWorld, Network, Node


async def echo(net: Network, host: str, port: int, messages: list[str]) -> None:
    """Like asyncio.open_connection, but over the network: stock StreamReader/StreamWriter.
    ztnode resolves no names, so ``host`` is an IP address on the network (v4 or v6)."""
    reader, writer = await net.open_connection(host, port, timeout=30)
    print(f"client: connected to {host} port {port}")
    for message in messages:
        t0 = time.perf_counter()
        writer.write(message.encode() + b"\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), 30)
        ms = (time.perf_counter() - t0) * 1000
        print(f"client: echoed {reply.decode().rstrip()!r} in {ms:.1f} ms")
    writer.close()
    await writer.wait_closed()


async def run_network(args: argparse.Namespace) -> None:
    async with Node(args.home, planet=args.planet) as node:  # planet None: ZeroTier's own
        print(f"node {node.address}: joining {args.network}")
        net = await node.join(args.network, timeout=None)
        await echo(net, args.host, args.port, args.message or ["hello over ZeroTier"])


async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):  # the server side, as examples/echo_server.py
        writer.write(data)
    writer.close()


async def run_local(port: int) -> None:
    with tempfile.TemporaryDirectory() as base:
        async with LocalZtWorld(base, members=2) as world:
            server_net, client_net = world.networks
            for family in (4, 6):  # a listener is IPv4 or IPv6: one of each
                await server_net.start_server(echo_handler, port=port, family=family)
            messages = ["hello over ZeroTier", "and once more"]
            await echo(client_net, server_net.address(4), port, messages)  # IPv4
            await echo(client_net, server_net.address(6), port, messages[:1])  # IPv6 (rfc4193)


def main() -> None:
    p = argparse.ArgumentParser(description="A TCP echo client on a ZeroTier network.")
    p.add_argument("--home", help="the node's directory (identity.secret and state)")
    p.add_argument("--network", help="network id (16 hex digits)")
    p.add_argument("--planet", help="planet file (default: ZeroTier's public planet)")
    p.add_argument("--host", help="the echo server's address on the network")
    p.add_argument("--port", type=int, default=7)
    p.add_argument("--local", action="store_true", help="both ends in an embedded local world")
    p.add_argument("message", nargs="*", help="lines to send (default: one greeting)")
    args = p.parse_args()
    if args.local:
        # A root/controller and two members in this process over loopback (LocalZtWorld
        # makes their identities, in parallel processes).
        asyncio.run(run_local(args.port))
    elif args.home and args.network and args.host:
        asyncio.run(run_network(args))
    else:
        p.error("give --home, --network and --host, or --local")


if __name__ == "__main__":
    main()
