"""A LAN onto a ZeroTier network: a Linux TAP device bridged by ztnode (needs CAP_NET_ADMIN for
the device; the member must be an active bridge at the controller).

    sudo python examples/tap_bridge.py --home zt-home --network 8056c2e21c000001 [--tap zttap0]
    sudo ip link set zttap0 master br0 && sudo ip link set zttap0 up   # then join it to a LAN
    sudo python examples/tap_bridge.py --local   # a local world; the "LAN" is a namespace

--local makes a network namespace of its own (deleted at the end), puts the TAP device in it
with the address 10.147.17.250, and has another member ping that kernel. The network forms use
ZeroTier's public planet unless --planet FILE is given.
"""

import argparse
import asyncio
import ctypes
import os
import subprocess
import tempfile
import threading

from ztnode import LocalZtWorld, Node
from ztnode.sockets.bridgeports import TapPort
from ztnode.testing.local import DEFAULT_NETWORK

LAN_IP = "10.147.17.250"
LAN_MAC = "00:16:3e:5a:17:fa"
# Members get addresses below the bridged host's.
NETWORK = {
    **DEFAULT_NETWORK,
    "ipAssignmentPools": [{"ipRangeStart": "10.147.17.1", "ipRangeEnd": "10.147.17.200"}],
}


def in_namespace(name: str, fn):  # type: ignore[no-untyped-def]
    """fn() in a thread that entered the namespace (a TAP device made there stays there)."""
    out: list[object] = []

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(fd, 0x40000000) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)
        out.append(fn())

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out[0]


async def run_local() -> None:
    ns = f"ztnode-tap-example-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        fd, tap = in_namespace(ns, lambda: TapPort.create("zttap%d"))
        for args in (
            # A globally administered MAC: a random (locally administered) one reads as a
            # ZeroTier member's one time in 64, and members could not reach the host.
            ("link", "set", "dev", tap, "address", LAN_MAC),
            ("link", "set", "dev", tap, "up"),
            ("addr", "add", f"{LAN_IP}/24", "dev", tap),
        ):
            subprocess.run(["ip", "-n", ns, *args], check=True)
        with tempfile.TemporaryDirectory() as base:
            async with LocalZtWorld(base, members=2, network=NETWORK) as world:
                (bridge_node, _), (bridged, other) = world.members, world.networks
                await world.make_bridge(bridge_node)  # activeBridge at the controller
                bridge = await bridged.bridge(TapPort(tap, fd=fd))
                print(f"bridge: {tap} (in namespace {ns}) on {bridged.id_hex}")
                for seq in range(3):
                    rtt = await other.ping(LAN_IP, timeout=5)
                    print(f"64 bytes from {LAN_IP}: icmp_seq={seq} time={rtt * 1000:.2f} ms")
                print(f"bridge: {bridge.counters}")
                await bridge.close()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


async def run_network(args: argparse.Namespace) -> None:
    async with Node(args.home, planet=args.planet) as node:
        net = await node.join(args.network, timeout=None, wait_authorized=True)
        port = TapPort(args.tap)
        await net.bridge(port)
        print(f"bridge: {port.name} on {net.id_hex}; join it to a Linux bridge; Ctrl-C stops")
        await asyncio.Event().wait()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--local", action="store_true", help="a local world; the LAN a namespace")
    ap.add_argument("--home", help="the node's state directory")
    ap.add_argument("--network", help="the network id (16 hex digits)")
    ap.add_argument("--planet", help="a planet file instead of ZeroTier's")
    ap.add_argument("--tap", default="zttap%d", help="the TAP device's name")
    args = ap.parse_args()
    if os.geteuid() != 0:
        ap.exit(1, "tap_bridge: making a TAP device needs root (CAP_NET_ADMIN)\n")
    if args.local:
        asyncio.run(run_local())
    elif args.home and args.network:
        asyncio.run(run_network(args))
    else:
        ap.error("give --local, or --home and --network")


if __name__ == "__main__":
    main()
