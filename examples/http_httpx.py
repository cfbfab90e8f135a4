"""httpx on a ZeroTier network: an AsyncClient whose transport is the node, for overlay hosts
(addresses and names), with everything else still reaching the internet as usual.

    python examples/http_httpx.py --home zt-home --network 8056c2e21c000001 \\
        --url http://10.147.17.9/
    python examples/http_httpx.py --local    # a local world: an ASGI app on one member

The network form uses ZeroTier's public planet unless --planet FILE is given. Needs
``pip install 'ztnode[http]'``.
"""

import argparse
import asyncio
import json
import tempfile
from typing import Any

import httpx

from ztnode import LocalZtWorld, Node
from ztnode.http.asgi import serve_asgi
from ztnode.http.httpx_transport import AsyncZtTransport


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A plain ASGI app: who asked, and how much they sent."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    client = scope["client"][0] if scope.get("client") else "?"
    body = json.dumps({"path": scope["path"], "from": client, "received": size}).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def fetch(node: Node, url: str) -> None:
    # The transport routes each connection: overlay hosts through the node, others by the OS.
    async with httpx.AsyncClient(transport=AsyncZtTransport(node), timeout=30) as client:
        resp = await client.get(url)
        print(f"httpx: GET {url} -> {resp.status_code} {resp.text[:200]!r}")


async def run_local() -> None:
    with tempfile.TemporaryDirectory() as base:
        async with LocalZtWorld(base, members=2) as world:
            client_node, (_, server_net) = world.members[0], world.networks
            async with await serve_asgi(server_net, hello, port=80) as server:
                transport = AsyncZtTransport(client_node)
                async with httpx.AsyncClient(transport=transport, timeout=30) as client:
                    resp = await client.get(server.url + "hello")
                    print(f"httpx: GET {server.url}hello -> {resp.status_code} {resp.json()}")
                    resp = await client.post(server.url + "upload", content=b"z" * 100_000)
                    print(f"httpx: POST {server.url}upload -> {resp.status_code} {resp.json()}")
                    six = f"http://[{server_net.address(6)}]/"
                    resp = await client.get(six)
                    print(f"httpx: GET {six} -> {resp.status_code}")


async def run_network(args: argparse.Namespace) -> None:
    async with Node(args.home, planet=args.planet) as node:
        await node.join(args.network, timeout=None)
        await fetch(node, args.url)


def main() -> None:
    p = argparse.ArgumentParser(description="httpx over a ZeroTier network.")
    p.add_argument("--home", help="the node's directory (identity.secret and state)")
    p.add_argument("--network", help="network id (16 hex digits)")
    p.add_argument("--planet", help="planet file (default: ZeroTier's public planet)")
    p.add_argument("--url", help="what to fetch (an overlay address or name, or any URL)")
    p.add_argument("--local", action="store_true", help="both ends in an embedded local world")
    args = p.parse_args()
    if args.local:
        asyncio.run(run_local())
    elif args.home and args.network and args.url:
        asyncio.run(run_network(args))
    else:
        p.error("give --home, --network and --url, or --local")


if __name__ == "__main__":
    main()
