"""A ztnode member in a process of its own, for the multi-process names test: it serves (an echo
service on TCP, advertised by DNS-SD) or finds (browse, mDNS and LLMNR lookups, a connection by
name) and prints one JSON line per result. Bounded: it exits after ``--linger`` seconds.

    python -m tests.sockets.names_peer serve|find --home H --planet F --network N --hostname X
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from ztnode.names.settings import NameSettings
from ztnode.sockets.aio import Node

PORT = 7300
SERVICE = "_zecho._tcp"


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.read(1000))
    writer.close()


async def serve(args: argparse.Namespace, node: Node) -> None:
    net = await node.join(args.network, timeout=30)
    await net.start_server(echo, None, PORT)
    ad = await net.advertise(f"Echo on {args.hostname}", SERVICE, PORT, txt={"by": args.hostname})
    say(ready=True, address=net.address(4), name=ad.name, hostname=node.hostname)
    await asyncio.sleep(args.linger)
    ad.close()
    await asyncio.sleep(0.2)  # the goodbye goes out before the node stops


async def find(args: argparse.Namespace, node: Node) -> None:
    net = await node.join(args.network, timeout=30)
    target = args.target
    if args.only != "llmnr":
        browser = net.browse(SERVICE)
        try:
            change = await asyncio.wait_for(anext(browser), 20)
        except TimeoutError:
            disc = net.names.discovery
            mdns = disc.mdns.counters if disc is not None and disc.mdns else {}
            core = node.service.node
            drops = core.counters.as_dict() if core is not None else {}
            groups = sorted(net.stack.multicast_groups())
            raise TimeoutError(
                f"nothing browsed in 20 s; mDNS {mdns}; stack {net.stack.counters}; "
                f"core {drops}; groups {groups}"
            ) from None
        svc = change.service
        txt = {k: (v or b"").decode() for k, v in svc.txt.items()}
        say(browsed=svc.instance, port=svc.port, txt=txt, addresses=svc.addresses)
        say(mdns=await net.resolve(f"{target}.local", family=4))
    say(single_label=await net.resolve(target, family=4))
    host = target if args.only == "llmnr" else f"{target}.local"
    reader, writer = await net.open_connection(host, PORT, timeout=10)
    writer.write(b"across processes")
    say(echoed=(await reader.read()).decode(), via=host)
    disc = net.names.discovery
    assert disc is not None
    say(
        llmnr_queries=disc.llmnr.counters["queries_sent"] if disc.llmnr else 0,
        mdns_queries=disc.mdns.counters["queries_sent"] if disc.mdns else 0,
    )


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=("serve", "find"))
    p.add_argument("--home", required=True)
    p.add_argument("--planet", required=True)
    p.add_argument("--network", required=True)
    p.add_argument("--hostname", required=True)
    p.add_argument("--target", default="")
    p.add_argument("--only", choices=("both", "llmnr"), default="both")
    p.add_argument("--linger", type=float, default=30.0)
    args = p.parse_args()
    names = NameSettings(hostname=args.hostname, mdns=args.only != "llmnr")
    node = Node(
        args.home, planet=args.planet, allow_loopback=True, bind=("127.0.0.1",), names=names
    )
    async with node:
        await (serve if args.role == "serve" else find)(args, node)


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    except Exception as exc:  # the test reads the reason from the output
        say(error=f"{type(exc).__name__}: {exc}")
        sys.exit(1)
