"""UDP echo on a ZeroTier network, both sides, with asyncio datagram endpoints.

    python examples/udp_echo.py --home zt-home --network 8056c2e21c000001 --serve [--port 7]
    python examples/udp_echo.py --home zt-home2 --network 8056c2e21c000001 --to 10.147.17.9
    python examples/udp_echo.py --local    # server and client in an embedded local world

The network forms use ZeroTier's public planet unless --planet FILE is given.
"""

import argparse
import asyncio
import contextlib
import tempfile

from ztnode import LocalZtWorld, Network, Node


class EchoServer(asyncio.DatagramProtocol):
    """An ordinary asyncio protocol: ztnode's transports are asyncio.DatagramTransport."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport
        host, port = transport.get_extra_info("sockname")[:2]
        print(f"server: listening on {host} port {port}")

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        print(f"server: {len(data)} bytes from {addr[0]} port {addr[1]}")
        self.transport.sendto(data, addr)


class EchoClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.replies.put_nowait(data)


async def serve(net: Network, port: int) -> None:
    """One endpoint per family (an endpoint is IPv4 or IPv6), on all our addresses."""
    for wildcard in ("0.0.0.0", "::"):
        await net.create_datagram_endpoint(EchoServer, local_addr=(wildcard, port))


async def ask(net: Network, host: str, port: int, message: bytes, tries: int = 3) -> bytes:
    """Send ``message`` and wait for its echo; UDP may lose datagrams, so try again."""
    transport, client = await net.create_datagram_endpoint(EchoClient, remote_addr=(host, port))
    assert isinstance(client, EchoClient)
    try:
        for _ in range(tries):
            transport.sendto(message)  # connected endpoint: no address needed
            try:
                return await asyncio.wait_for(client.replies.get(), 2.0)
            except TimeoutError:
                print(f"client: no reply from {host} yet, sending again")
        raise TimeoutError(f"no echo from {host} port {port}")
    finally:
        transport.close()


async def run_local(port: int) -> None:
    with tempfile.TemporaryDirectory() as base:
        async with LocalZtWorld(base, members=2) as world:
            server_net, client_net = world.networks
            await serve(server_net, port)
            for family in (4, 6):
                reply = await ask(client_net, server_net.address(family), port, b"hello, UDP")
                print(f"client: IPv{family} echo {reply!r}")


async def run_network(args: argparse.Namespace) -> None:
    async with Node(args.home, planet=args.planet) as node:  # planet None: ZeroTier's own
        print(f"node {node.address}: joining {args.network}")
        net = await node.join(args.network, timeout=None)
        if args.serve:
            await serve(net, args.port)
            await asyncio.Event().wait()  # serve until Ctrl-C
        else:
            print(f"client: echo {await ask(net, args.to, args.port, b'hello, UDP')!r}")


def main() -> None:
    p = argparse.ArgumentParser(description="UDP echo on a ZeroTier network.")
    p.add_argument("--home", help="the node's directory (identity.secret and state)")
    p.add_argument("--network", help="network id (16 hex digits)")
    p.add_argument("--planet", help="planet file (default: ZeroTier's public planet)")
    p.add_argument("--port", type=int, default=7)
    p.add_argument("--serve", action="store_true", help="be the echo server")
    p.add_argument("--to", help="be the client of the echo server at this address")
    p.add_argument("--local", action="store_true", help="both ends in an embedded local world")
    args = p.parse_args()
    if args.local:
        # LocalZtWorld makes the three identities itself, in parallel processes.
        asyncio.run(run_local(args.port))
    elif args.home and args.network and (args.serve or args.to):
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it
            asyncio.run(run_network(args))
    else:
        p.error("give --home, --network and --serve or --to ADDRESS; or --local")


if __name__ == "__main__":
    main()
