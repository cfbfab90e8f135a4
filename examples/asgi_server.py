"""An ASGI app served by uvicorn on a ZeroTier network, in this process: no adapter, no root,
the app's lifespan run as uvicorn runs it. Any ASGI app works (FastAPI, Starlette, Django);
this one is a plain callable so the example needs nothing but the ``http`` extra.

    python examples/asgi_server.py --home zt-home --network 8056c2e21c000001 [--port 8000]
    python examples/asgi_server.py --local    # serve in a local world and fetch it with httpx

The network form uses ZeroTier's public planet unless --planet FILE is given and serves until
Ctrl-C. Needs ``pip install 'ztnode[http]'``.
"""

import argparse
import asyncio
import contextlib
import tempfile
from typing import Any

import httpx

from ztnode import LocalZtWorld, Network, Node
from ztnode.http.asgi import serve_asgi
from ztnode.http.httpx_transport import AsyncZtTransport


class App:
    """A counter app with the lifespan protocol: state made at startup, seen by requests."""

    def __init__(self) -> None:
        self.hits = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                print("server: lifespan startup")
                await send({"type": "lifespan.startup.complete"})
            print("server: lifespan shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.hits += 1
        body = f"hello from ztnode, visit {self.hits} (you are {scope['client'][0]})\n"
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body.encode()})


async def serve(net: Network, port: int) -> None:
    async with await serve_asgi(net, App(), port=port, log_level="info") as server:
        print(f"server: serving {server.url} (Ctrl-C stops)")
        await server.serve_forever()


async def run_local(port: int) -> None:
    with tempfile.TemporaryDirectory() as base:
        async with LocalZtWorld(base, members=2) as world:
            client_node, server_net = world.members[0], world.networks[1]
            async with await serve_asgi(server_net, App(), port=port) as server:
                print(f"server: serving {server.url}")
                transport = AsyncZtTransport(client_node)
                async with httpx.AsyncClient(transport=transport, timeout=30) as client:
                    for _ in range(2):
                        resp = await client.get(server.url)
                        print(f"client: {resp.status_code} {resp.text.strip()!r}")


async def run_network(args: argparse.Namespace) -> None:
    async with Node(args.home, planet=args.planet) as node:
        net = await node.join(args.network, timeout=None)
        await serve(net, args.port)


def main() -> None:
    p = argparse.ArgumentParser(description="An ASGI app on a ZeroTier network (uvicorn).")
    p.add_argument("--home", help="the node's directory (identity.secret and state)")
    p.add_argument("--network", help="network id (16 hex digits)")
    p.add_argument("--planet", help="planet file (default: ZeroTier's public planet)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--local", action="store_true", help="serve and fetch in a local world")
    args = p.parse_args()
    if args.local:
        asyncio.run(run_local(args.port))
    elif args.home and args.network:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_network(args))
    else:
        p.error("give --home and --network, or --local")


if __name__ == "__main__":
    main()
