"""The standard library's HTTP clients on a ZeroTier network: a urllib opener over one network,
and http.client connections routed by the node (overlay hosts through it, others by the OS).

    python examples/http_urllib.py --home zt-home --network 8056c2e21c000001 \\
        --url http://10.147.17.9/
    python examples/http_urllib.py --local    # a local world: a WSGI app on one member

The network form uses ZeroTier's public planet unless --planet FILE is given. Nothing here needs
more than the standard library and ztnode.
"""

import argparse
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from ztnode import BlockingLocalWorld, BlockingNode
from ztnode.http.client import HTTPConnection
from ztnode.http.wsgi import serve_wsgi


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = f"hello {environ['REMOTE_ADDR']}, you asked for {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def run_local() -> None:
    with (
        tempfile.TemporaryDirectory() as base,
        BlockingLocalWorld(base, members=2) as world,
    ):
        client_node = world.members[0]
        client_net, server_net = world.networks
        with serve_wsgi(server_net, hello, port=8000) as server:
            # urllib: an opener whose connections go over the client's network.
            opener = client_net.url_opener()
            with opener.open(server.url + "via-urllib", timeout=30) as resp:
                print(f"urllib: {resp.status} {resp.read().decode()!r}")
            # http.client: the connection class takes the node (or a network) first.
            conn = HTTPConnection(client_node, server_net.address(6), server.port, timeout=30)
            conn.request("GET", "/via-http.client")
            resp = conn.getresponse()
            print(f"http.client: {resp.status} {resp.read().decode()!r}")
            conn.close()


def main() -> None:
    p = argparse.ArgumentParser(description="urllib and http.client over a ZeroTier network.")
    p.add_argument("--home", help="the node's directory (identity.secret and state)")
    p.add_argument("--network", help="network id (16 hex digits)")
    p.add_argument("--planet", help="planet file (default: ZeroTier's public planet)")
    p.add_argument("--url", help="what to fetch (an address or name on the network)")
    p.add_argument("--local", action="store_true", help="both ends in an embedded local world")
    args = p.parse_args()
    if args.local:
        run_local()
    elif args.home and args.network and args.url:
        with BlockingNode(args.home, planet=args.planet) as node:
            net = node.join(args.network, timeout=None)
            with net.url_opener().open(args.url, timeout=30) as resp:
                print(f"urllib: {resp.status} {resp.read()[:200]!r}")
    else:
        p.error("give --home, --network and --url, or --local")


if __name__ == "__main__":
    main()
