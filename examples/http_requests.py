"""requests on a ZeroTier network: a Session whose adapter connects through the node for overlay
hosts (addresses and names) and through the OS for the rest, in a plain threaded program.

    python examples/http_requests.py --home zt-home --network 8056c2e21c000001 \\
        --url http://10.147.17.9/
    python examples/http_requests.py --local    # a local world: an ASGI app on one member

The network form uses ZeroTier's public planet unless --planet FILE is given. Needs
``pip install 'ztnode[http]'``.
"""

import argparse
import json
import tempfile
from typing import Any

from ztnode import BlockingLocalWorld, BlockingNode
from ztnode.http.asgi import serve_asgi_blocking
from ztnode.http.requests_adapter import session


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A plain ASGI app (it runs on the node's event loop thread)."""
    if scope["type"] != "http":
        return
    client = scope["client"][0] if scope.get("client") else "?"
    body = json.dumps({"path": scope["path"], "from": client}).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def run_local() -> None:
    with (
        tempfile.TemporaryDirectory() as base,
        BlockingLocalWorld(base, members=2) as world,
    ):
        client_node, server_net = world.members[0], world.networks[1]
        with (
            serve_asgi_blocking(server_net, hello, port=8000) as server,
            session(client_node) as s,  # requests.Session with the node mounted
        ):
            for path in ("one", "two"):
                resp = s.get(server.url + path, timeout=30)
                print(f"requests: GET {server.url}{path} -> {resp.status_code} {resp.json()}")


def main() -> None:
    p = argparse.ArgumentParser(description="requests over a ZeroTier network.")
    p.add_argument("--home", help="the node's directory (identity.secret and state)")
    p.add_argument("--network", help="network id (16 hex digits)")
    p.add_argument("--planet", help="planet file (default: ZeroTier's public planet)")
    p.add_argument("--url", help="what to fetch (an overlay address or name, or any URL)")
    p.add_argument("--local", action="store_true", help="both ends in an embedded local world")
    args = p.parse_args()
    if args.local:
        run_local()
    elif args.home and args.network and args.url:
        with BlockingNode(args.home, planet=args.planet) as node, session(node) as s:
            node.join(args.network, timeout=None)
            resp = s.get(args.url, timeout=30)
            print(f"requests: GET {args.url} -> {resp.status_code} {resp.text[:200]!r}")
    else:
        p.error("give --home, --network and --url, or --local")


if __name__ == "__main__":
    main()
