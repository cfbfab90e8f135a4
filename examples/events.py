"""Print a node's events as they happen: online/offline, peers and paths, network status,
addresses, configs. ``async for event in node.events()`` is all it takes.

    python examples/events.py --home zt-home --network 8056c2e21c000001    # until Ctrl-C
    python examples/events.py --local    # a node joins a local world, pings, leaves, stops

The first form joins a real network (ZeroTier's public planet unless --planet FILE is given).
"""

import argparse
import asyncio
import contextlib
import dataclasses
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ztnode import EventStream, Identity, LocalZtWorld, Node
from ztnode.core import events
from ztnode.testing.local import DEFAULT_NETWORK


def describe(event: events.Event) -> str:
    """Events are frozen dataclasses with ints for addresses: show those as ZeroTier does."""
    parts = []
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if field.name == "network_id":
            value = f"{value:016x}"
        elif field.name in ("address", "source", "reporter") and isinstance(value, int):
            value = f"{value:010x}"
        elif isinstance(value, bytes):
            value = f"<{len(value)} bytes>"
        parts.append(f"{field.name}={value}")
    return f"{time.strftime('%H:%M:%S')} {type(event).__name__:22} {' '.join(parts)}"


async def show(stream: EventStream) -> None:
    async for event in stream:  # ends when the node stops
        print(describe(event))
        match event:  # react to some, matching on type and fields
            case events.NetworkStatusChanged(status="ACCESS_DENIED"):
                print("    not authorized: authorize this node on the network's controller")
            case events.IdentityCollision():
                print("    another node uses this address: delete identity.secret")


async def run_network(args: argparse.Namespace) -> None:
    node = Node(args.home, planet=args.planet)  # planet None: ZeroTier's own
    printer = asyncio.create_task(show(node.events()))  # subscribe first: nothing is missed
    async with node:
        print(f"-- node {node.address} started; joining {args.network}")
        await node.join(args.network, wait=False)
        await printer  # forever, until Ctrl-C


def new_identity(_: int) -> str:
    return Identity.generate().to_string(include_private=True)


async def run_local(identities: list[Identity]) -> None:
    # A public network (no authorization needed) with one member; our node joins it.
    network = {**DEFAULT_NETWORK, "private": False}
    with tempfile.TemporaryDirectory() as base:
        async with LocalZtWorld(base, members=1, identities=identities[:2], network=network) as w:
            home = Path(base, "watcher")  # our node: a home with a ready-made identity
            home.mkdir()
            identities[2].save(home / "identity.secret", include_private=True)
            node = Node(home, planet=w.planet, allow_loopback=True, bind=["127.0.0.1"])
            printer = asyncio.create_task(show(node.events()))
            async with node:
                print(f"-- node {node.address} started; joining {w.network_id:016x}")
                net = await node.join(w.network_id)
                print(f"-- joined; pinging member {w.members[0].address}")
                await net.ping(w.networks[0].address(4), timeout=5)
                await asyncio.sleep(0.2)
                print("-- leaving the network, then stopping")
                await node.leave(w.network_id)
                await asyncio.sleep(0.2)
            await printer


def main() -> None:
    p = argparse.ArgumentParser(description="Print a ZeroTier node's events.")
    p.add_argument("--home", help="the node's directory (identity.secret and state)")
    p.add_argument("--network", help="network id (16 hex digits)")
    p.add_argument("--planet", help="planet file (default: ZeroTier's public planet)")
    p.add_argument("--local", action="store_true", help="watch a node in an embedded world")
    args = p.parse_args()
    if args.local:
        # Identities cost ~0.5 s of CPU each (a memory-hard hash): make three in parallel.
        with ProcessPoolExecutor(2) as pool:
            ids = [Identity.from_string(s) for s in pool.map(new_identity, range(3))]
        asyncio.run(run_local(ids))
    elif args.home and args.network:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it
            asyncio.run(run_network(args))
    else:
        p.error("give --home and --network, or --local")


if __name__ == "__main__":
    main()
