"""Blocking sockets on a ZeroTier network, used as the stdlib's socket.socket is.

    python examples/blocking_client.py --home zt-home --network 8056c2e21c000001 \\
        --host 10.147.17.9 [--port 7]
    python examples/blocking_client.py --local    # client and a threaded server, locally

The first form joins a real network (ZeroTier's public planet unless --planet FILE is given)
and talks to a line echo server there, such as examples/echo_server.py on another member.
"""

import argparse
import socket
import tempfile
import threading

from ztnode import BlockingLocalWorld, BlockingNetwork, BlockingNode
from ztnode.sockets.blocking import Socket


def talk(net: BlockingNetwork, host: str, port: int) -> None:
    # net.socket() replaces socket.socket(); the rest is the stdlib's API, timeouts included.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with net.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect((host, port))
        print(f"client: connected from {sock.getsockname()[0]} to {host} port {port}")
        sock.sendall(b"hello, blocking world\n")
        print(f"client: recv {sock.recv(4096)!r}")
        # makefile() gives buffered files: readline() and friends, as on any socket.
        with sock.makefile("rwb") as f:
            for line in (b"one\n", b"two\n"):
                f.write(line)
                f.flush()
                print(f"client: readline {f.readline()!r}")


def serve_one(listener: Socket) -> None:
    """A plain blocking server: accept one connection and echo lines until it closes."""
    conn, _addr = listener.accept()
    with conn, conn.makefile("rwb") as f:
        for line in f:
            f.write(line)
            f.flush()


def run_local(port: int) -> None:
    with (
        tempfile.TemporaryDirectory() as base,
        BlockingLocalWorld(base, members=2) as world,
    ):
        server_net, client_net = world.networks
        for family in (socket.AF_INET, socket.AF_INET6):
            # Like socket.create_server: a bound, listening socket (one family per listener).
            with server_net.create_server(("", port), family=family) as listener:
                server = threading.Thread(target=serve_one, args=(listener,), daemon=True)
                server.start()
                talk(client_net, server_net.address(family), port)
                server.join()


def main() -> None:
    p = argparse.ArgumentParser(description="Blocking sockets on a ZeroTier network.")
    p.add_argument("--home", help="the node's directory (identity.secret and state)")
    p.add_argument("--network", help="network id (16 hex digits)")
    p.add_argument("--planet", help="planet file (default: ZeroTier's public planet)")
    p.add_argument("--host", help="a line echo server's address on the network")
    p.add_argument("--port", type=int, default=7)
    p.add_argument("--local", action="store_true", help="both ends in an embedded local world")
    args = p.parse_args()
    if args.local:
        # LocalZtWorld makes the three identities itself, in parallel processes.
        run_local(args.port)
    elif args.home and args.network and args.host:
        # The asyncio node runs on a loop in a background thread; this thread just blocks.
        with BlockingNode(args.home, planet=args.planet) as node:
            talk(node.join(args.network, timeout=None), args.host, args.port)
    else:
        p.error("give --home, --network and --host, or --local")


if __name__ == "__main__":
    main()
