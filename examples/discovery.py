"""Names and services on a ZeroTier network: resolve by name, advertise a DNS-SD service, browse.

    python examples/discovery.py --home zt-home --network 8056c2e21c000001 [--browse _http._tcp]
    python examples/discovery.py --local    # a local world: its controller answers DNS too

The first form joins a real network, advertises an HTTP service on this node by mDNS and lists
the services of the type it sees for ten seconds (other ZeroTier members running Avahi or
Bonjour show up too). The local form also names a member on the controller, which answers for
it as the network's DNS server, and connects to it by that name.
"""

import argparse
import asyncio
import sys
import tempfile

from ztnode import LocalZtWorld, Network, Node


async def browse(net: Network, service_type: str, seconds: float) -> int:
    """Print the services of ``service_type`` as they come and go, for ``seconds``."""
    seen = 0
    browser = net.browse(service_type)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        while (left := deadline - loop.time()) > 0:
            try:
                change = await asyncio.wait_for(anext(browser), left)
            except TimeoutError:
                break
            svc = change.service
            print(f"browse: {change.kind} {svc.instance!r} at {svc.host} port {svc.port} "
                  f"{svc.addresses} txt={svc.txt}")  # fmt: skip
            seen += change.kind == "added"
    finally:
        browser.close()
    return seen


async def run_network(args: argparse.Namespace) -> int:
    async with Node(args.home, planet=args.planet) as node:
        net = await node.join(args.network, timeout=None)
        print(f"this node answers to {node.hostname}.local")
        ad = await net.advertise(f"ztnode {node.address}", "_http._tcp", 80)
        print(f"advertised {ad.name!r}")
        seen = await browse(net, args.browse, 10.0)
        ad.close()
        return seen


async def run_local(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as base:
        async with LocalZtWorld(base, members=2, dns_domain="zt.example") as world:
            node_b, (a, b) = world.members[1], world.networks
            world.name_member(node_b, "web")

            async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.write(b"hello from web")
                writer.close()

            await b.start_server(hello, port=80)
            for name in ("web.zt.example", f"zt-{node_b.address}.local", f"zt-{node_b.address}"):
                print(f"resolve: {name} -> {', '.join(await a.resolve(name))}")
            reader, _ = await a.open_connection("web.zt.example", 80)
            print(f"connect: web.zt.example port 80 said {(await reader.read()).decode()!r}")
            ad = await b.advertise("Team wiki", "_http._tcp", 80, txt={"path": "/wiki"})
            print(f"advertise: {ad.name!r} on {node_b.hostname}.local")
            seen = await browse(a, "_http._tcp", 3.0)
            ad.close()
            return seen


def main() -> None:
    p = argparse.ArgumentParser(description="Names and DNS-SD services on a ZeroTier network.")
    p.add_argument("--home", help="the node's directory (identity.secret and state)")
    p.add_argument("--network", help="network id (16 hex digits)")
    p.add_argument("--planet", help="planet file (default: ZeroTier's public planet)")
    p.add_argument("--browse", default="_http._tcp", help="the service type to list")
    p.add_argument("--local", action="store_true", help="a local world with DNS and mDNS")
    args = p.parse_args()
    if args.local:
        seen = asyncio.run(run_local(args))
    elif args.home and args.network:
        seen = asyncio.run(run_network(args))
    else:
        p.error("give --home and --network, or --local")
    sys.exit(0 if seen else 1)


if __name__ == "__main__":
    main()
