"""A TCP echo server on a ZeroTier network, with asyncio streams.

    python examples/echo_server.py --home zt-home --network 8056c2e21c000001 [--port 7]
    python examples/echo_server.py --local    # server and a client in an embedded local world

The first form joins a real network (ZeroTier's public planet unless --planet FILE is given)
and serves until Ctrl-C; authorize the node on the network's controller if it is private.
Point examples/echo_client.py, on another member, at the address it prints.
"""

import argparse
import asyncio
import contextlib
import tempfile

from ztnode import LocalZtWorld, Network, Node


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One client: send every byte back until it closes its side. Stock asyncio streams."""
    host, port = writer.get_extra_info("peername")[:2]
    print(f"server: connection from {host} port {port}")
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()  # wait while the peer's TCP window is full
    writer.close()
    print(f"server: {host} port {port} closed")


async def serve(net: Network, port: int) -> list[asyncio.AbstractServer]:
    """Like asyncio.start_server, but the listening sockets live on the ZeroTier network.
    A listener takes one family, so listen on IPv4 and on IPv6 (the network's rfc4193 or
    6plane address, when the controller assigns one)."""
    servers: list[asyncio.AbstractServer] = []
    for family in (4, 6):
        if any(a.version == family for a in net.addresses):
            servers.append(await net.start_server(handle, port=port, family=family))
            print(f"server: echo on {net.address(family)} port {port}")
    return servers


async def run_network(args: argparse.Namespace) -> None:
    async with Node(args.home, planet=args.planet) as node:  # planet None: ZeroTier's own
        print(f"node {node.address}: joining {args.network}, waiting for a config and addresses")
        net = await node.join(args.network, timeout=None)
        servers = await serve(net, args.port)
        await asyncio.gather(*(s.serve_forever() for s in servers))


async def run_local(port: int) -> None:
    with tempfile.TemporaryDirectory() as base:
        async with LocalZtWorld(base, members=2) as world:
            server_net, client_net = world.networks
            await serve(server_net, port)
            # The other end, as examples/echo_client.py does it:
            reader, writer = await client_net.open_connection(server_net.address(4), port)
            writer.write(b"hello over ZeroTier\n")
            print(f"client: echoed {(await reader.readline()).decode().rstrip()!r}")
            writer.close()
            await writer.wait_closed()
            await asyncio.sleep(0.1)  # let the server see the close before the world stops


def main() -> None:
    p = argparse.ArgumentParser(description="A TCP echo server on a ZeroTier network.")
    p.add_argument("--home", help="the node's directory (identity.secret and state)")
    p.add_argument("--network", help="network id (16 hex digits)")
    p.add_argument("--planet", help="planet file (default: ZeroTier's public planet)")
    p.add_argument("--port", type=int, default=7)
    p.add_argument("--local", action="store_true", help="both ends in an embedded local world")
    args = p.parse_args()
    if args.local:
        # A root/controller and two members in this process over loopback (LocalZtWorld
        # makes their identities, in parallel processes).
        asyncio.run(run_local(args.port))
    elif args.home and args.network:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it
            asyncio.run(run_network(args))
    else:
        p.error("give --home and --network, or --local")


if __name__ == "__main__":
    main()
