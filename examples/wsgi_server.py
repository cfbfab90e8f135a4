"""A WSGI app (Flask, Django, Bottle... here a plain callable) served on a ZeroTier network by the
standard library's wsgiref server, on the blocking facade: no asyncio in the program.

    python examples/wsgi_server.py --home zt-home --network 8056c2e21c000001 [--port 8000]
    python examples/wsgi_server.py --local    # serve in a local world and fetch it with requests

The network form uses ZeroTier's public planet unless --planet FILE is given and serves until
Ctrl-C. The local form fetches with requests (``pip install 'ztnode[http]'``).
"""

import argparse
import contextlib
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from ztnode import BlockingLocalWorld, BlockingNode
from ztnode.http.wsgi import serve_wsgi


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    size = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(size)
    body = (
        f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} from {environ['REMOTE_ADDR']}: "
        f"{size} bytes received\n"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def run_local(port: int) -> None:
    from ztnode.http.requests_adapter import session

    with (
        tempfile.TemporaryDirectory() as base,
        BlockingLocalWorld(base, members=2) as world,
    ):
        client_node, server_net = world.members[0], world.networks[1]
        # host None: every address of the network, IPv4 and IPv6, on one port.
        with serve_wsgi(server_net, app, port=port) as server, session(client_node) as s:
            print(f"server: serving {server.url}")
            print(f"client: {s.get(server.url + 'hello', timeout=30).text.strip()!r}")
            six = f"http://[{server_net.address(6)}]:{server.port}/upload"
            print(f"client: {s.post(six, data=b'w' * 50_000, timeout=30).text.strip()!r}")


def main() -> None:
    p = argparse.ArgumentParser(description="A WSGI app on a ZeroTier network (wsgiref).")
    p.add_argument("--home", help="the node's directory (identity.secret and state)")
    p.add_argument("--network", help="network id (16 hex digits)")
    p.add_argument("--planet", help="planet file (default: ZeroTier's public planet)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--local", action="store_true", help="serve and fetch in a local world")
    args = p.parse_args()
    if args.local:
        run_local(args.port)
    elif args.home and args.network:
        with (
            contextlib.suppress(KeyboardInterrupt),
            BlockingNode(args.home, planet=args.planet) as node,
        ):
            net = node.join(args.network, timeout=None)
            with serve_wsgi(net, app, port=args.port, background=False) as server:
                print(f"node {node.address}: serving {server.url} (Ctrl-C stops)")
                server.serve_forever()
    else:
        p.error("give --home and --network, or --local")


if __name__ == "__main__":
    main()
