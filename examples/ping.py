"""ICMP echo (ping) to an address on a ZeroTier network, printing round trips like ping(8).

    python examples/ping.py --home zt-home --network 8056c2e21c000001 10.147.17.9 [-c 4]
    python examples/ping.py --local    # one member pings the other in an embedded local world

The first form joins a real network (ZeroTier's public planet unless --planet FILE is given).
No root and no raw socket are needed: ICMP is answered by ztnode's own IP stack.
"""

import argparse
import asyncio
import statistics
import sys
import tempfile

from ztnode import LocalZtWorld, Network, Node


async def ping(net: Network, host: str, count: int, interval: float, size: int = 56) -> int:
    """Ping ``host`` ``count`` times; print each reply and the summary; return replies seen."""
    print(f"PING {host} from {net.address(6 if ':' in host else 4)}: {size} data bytes")
    rtts: list[float] = []
    for seq in range(1, count + 1):
        try:
            rtt = await net.ping(host, timeout=2.0, payload=bytes(size))  # seconds
        except TimeoutError:
            print(f"Request timeout for icmp_seq={seq}")
        else:
            rtts.append(rtt * 1000)
            print(f"{size + 8} bytes from {host}: icmp_seq={seq} time={rtt * 1000:.2f} ms")
        if seq < count:
            await asyncio.sleep(interval)
    loss = 100 * (count - len(rtts)) / count
    print(f"--- {host} ping statistics ---")
    print(f"{count} packets transmitted, {len(rtts)} received, {loss:.0f}% packet loss")
    if rtts:
        mdev = statistics.pstdev(rtts)
        print(f"rtt min/avg/max/mdev = {min(rtts):.3f}/{statistics.mean(rtts):.3f}/"
              f"{max(rtts):.3f}/{mdev:.3f} ms")  # fmt: skip
    return len(rtts)


async def run_network(args: argparse.Namespace) -> int:
    async with Node(args.home, planet=args.planet) as node:  # planet None: ZeroTier's own
        net = await node.join(args.network, timeout=None)
        return await ping(net, args.host, args.count, args.interval)


async def run_local(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as base:
        async with LocalZtWorld(base, members=2) as world:
            a, b = world.networks
            got = await ping(a, b.address(4), args.count, args.interval)  # IPv4
            print()
            got += await ping(a, b.address(6), args.count, args.interval)  # IPv6 (rfc4193)
            return got


def main() -> None:
    p = argparse.ArgumentParser(description="Ping an address on a ZeroTier network.")
    p.add_argument("host", nargs="?", help="the address to ping (an IP on the network)")
    p.add_argument("--home", help="the node's directory (identity.secret and state)")
    p.add_argument("--network", help="network id (16 hex digits)")
    p.add_argument("--planet", help="planet file (default: ZeroTier's public planet)")
    p.add_argument("-c", "--count", type=int, default=4)
    p.add_argument("-i", "--interval", type=float, default=1.0, help="seconds between pings")
    p.add_argument("--local", action="store_true", help="ping between two local members")
    args = p.parse_args()
    if args.local:
        # LocalZtWorld makes the three identities itself, in parallel processes.
        args.interval = min(args.interval, 0.2)
        replies = asyncio.run(run_local(args))
    elif args.home and args.network and args.host:
        replies = asyncio.run(run_network(args))
    else:
        p.error("give --home, --network and a host, or --local")
    sys.exit(0 if replies else 1)  # like ping: failure when nothing answered


if __name__ == "__main__":
    main()
