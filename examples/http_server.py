"""An HTTP server on a ZeroTier network with the stdlib's http.server, and a client fetching
from it with http.client, both on ztnode's blocking socket facade (no asyncio in sight).

    python examples/http_server.py --home zt-home --network 8056c2e21c000001 [--port 8080]
    python examples/http_server.py --home zt-home2 --network 8056c2e21c000001 \\
        --fetch 10.147.17.9 [--port 8080] [--path /hello]
    python examples/http_server.py --local    # server and client in an embedded local world

The network forms use ZeroTier's public planet unless --planet FILE is given.
"""

import argparse
import contextlib
import http.client
import http.server
import socketserver
import tempfile
import threading

from ztnode import BlockingLocalWorld, BlockingNetwork, BlockingNode


class Hello(http.server.BaseHTTPRequestHandler):
    """A stock request handler: it reads and writes through makefile() on a ztnode socket."""

    def do_GET(self) -> None:
        body = f"Hello from ztnode! You asked for {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ZtHTTPServer(socketserver.ThreadingTCPServer):
    """socketserver's threading TCP server with its listening socket on a ZeroTier network.
    (Not http.server.HTTPServer: its server_bind looks our address up in the DNS.)"""

    daemon_threads = True

    def __init__(self, net: BlockingNetwork, port: int) -> None:
        super().__init__(("", port), Hello, bind_and_activate=False)
        self.socket.close()  # the OS socket socketserver made: we listen on the network instead
        self.socket = net.socket()  # type: ignore[assignment]  # a socket.socket look-alike
        self.server_bind()
        self.server_activate()


def fetch(net: BlockingNetwork, host: str, port: int, path: str) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    # http.client connects through this hook: make it connect over the ZeroTier network.
    conn._create_connection = net.create_connection  # type: ignore[attr-defined]
    conn.request("GET", path)
    resp = conn.getresponse()
    print(f"client: GET {path} -> {resp.status} {resp.reason}: {resp.read().decode().strip()!r}")
    conn.close()


def run_local(port: int) -> None:
    with (
        tempfile.TemporaryDirectory() as base,
        BlockingLocalWorld(base, members=2) as world,
    ):
        server_net, client_net = world.networks
        server = ZtHTTPServer(server_net, port)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(f"server: http://{server_net.address(4)}:{port}/")
        for path in ("/", "/hello?from=ztnode"):
            fetch(client_net, server_net.address(4), port, path)
        server.shutdown()
        server.server_close()


def main() -> None:
    p = argparse.ArgumentParser(description="HTTP over a ZeroTier network, stdlib both ends.")
    p.add_argument("--home", help="the node's directory (identity.secret and state)")
    p.add_argument("--network", help="network id (16 hex digits)")
    p.add_argument("--planet", help="planet file (default: ZeroTier's public planet)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--fetch", metavar="ADDRESS", help="be the client of the server at ADDRESS")
    p.add_argument("--path", default="/")
    p.add_argument("--local", action="store_true", help="both ends in an embedded local world")
    args = p.parse_args()
    if args.local:
        # LocalZtWorld makes the three identities itself, in parallel processes.
        run_local(args.port)
    elif args.home and args.network:
        # The asyncio node runs on a loop in a background thread; everything else is plain.
        with (
            contextlib.suppress(KeyboardInterrupt),
            BlockingNode(args.home, planet=args.planet) as node,
        ):
            net = node.join(args.network, timeout=None)
            if args.fetch:
                fetch(net, args.fetch, args.port, args.path)
            else:
                print(f"node {node.address}: serving http://{net.address(4)}:{args.port}/")
                with ZtHTTPServer(net, args.port) as server:
                    server.serve_forever()  # until Ctrl-C
    else:
        p.error("give --home and --network (and --fetch ADDRESS for the client), or --local")


if __name__ == "__main__":
    main()
