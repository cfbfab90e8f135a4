"""A virtual machine on a ZeroTier network through ztnode, with no privileges: a QEMU stream
socket bridged onto the network by a member the controller marks as an active bridge.

    python examples/vm_bridge.py --home zt-home --network 8056c2e21c000001 [--listen 127.0.0.1:5555]
    qemu-system-x86_64 ... -netdev stream,id=n0,server=off,addr.type=inet,\\
        addr.host=127.0.0.1,addr.port=5555 -device virtio-net-pci,netdev=n0
    python examples/vm_bridge.py --local   # a local world and a tiny stand-in VM

The member must be an active bridge (activeBridge at the controller). The network forms use
ZeroTier's public planet unless --planet FILE is given.
"""

import argparse
import asyncio
import struct
import tempfile

from ztnode import LocalZtWorld, Node
from ztnode.sockets.bridgeports import StreamPort
from ztnode.testing.local import DEFAULT_NETWORK

# QEMU's own prefix (52:54:00): ZeroTier never gives members a MAC starting with 0x52 (it
# takes 0x32 instead for that very reason), so no network's members can be mistaken for it.
VM_MAC = bytes.fromhex("525400beef07")
VM_IP = "10.147.17.250"
# Members get addresses below the VM's.
NETWORK = {
    **DEFAULT_NETWORK,
    "ipAssignmentPools": [{"ipRangeStart": "10.147.17.1", "ipRangeEnd": "10.147.17.200"}],
}


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def answer(frame: bytes, vm_ip: bytes) -> bytes | None:
    """What a small host at vm_ip says to a frame: ARP replies and ICMP echo replies."""
    dst, src, ethertype = frame[0:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
    body = frame[14:]
    if (
        ethertype == 0x0806
        and len(body) >= 28
        and body[6:8] == b"\x00\x01"
        and body[24:28] == vm_ip
    ):
        print(f"vm: ARP who-has {VM_IP} from {'.'.join(map(str, body[14:18]))}")
        reply = body[0:6] + b"\x00\x02" + VM_MAC + vm_ip + body[8:14] + body[14:18]
        return src + VM_MAC + b"\x08\x06" + reply
    if ethertype == 0x0800 and len(body) >= 28 and body[9] == 1 and body[16:20] == vm_ip:
        ihl = (body[0] & 0x0F) * 4
        icmp = bytearray(body[ihl:])
        if icmp[0] != 8:
            return None
        icmp[0] = 0
        icmp[2:4] = b"\0\0"
        icmp[2:4] = struct.pack("!H", checksum(bytes(icmp)))
        ip = bytearray(body[:ihl])
        ip[12:16], ip[16:20] = body[16:20], body[12:16]
        ip[10:12] = b"\0\0"
        ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
        return src + dst + b"\x08\x00" + bytes(ip) + bytes(icmp)
    return None


async def stand_in_vm(host: str, port: int) -> None:
    """The far end of QEMU's stream netdev: frames as [4-byte length][frame]."""
    reader, writer = await asyncio.open_connection(host, port)
    vm_ip = bytes(map(int, VM_IP.split(".")))
    while True:
        (n,) = struct.unpack("!I", await reader.readexactly(4))
        reply = answer(await reader.readexactly(n), vm_ip)
        if reply is not None:
            writer.write(struct.pack("!I", len(reply)) + reply)


async def run_local() -> None:
    with tempfile.TemporaryDirectory() as base:
        async with LocalZtWorld(base, members=2, network=NETWORK) as world:
            (bridge_node, _), (bridged, other) = world.members, world.networks
            await world.make_bridge(bridge_node)  # activeBridge at the controller
            port = StreamPort.listen()
            bridge = await bridged.bridge(port)
            host, tcp_port = port.address  # type: ignore[misc]
            print(f"bridge: VM socket on {host} port {tcp_port}")
            vm = asyncio.create_task(stand_in_vm(host, tcp_port))
            for seq in range(3):
                rtt = await other.ping(VM_IP, timeout=5)
                print(f"64 bytes from {VM_IP}: icmp_seq={seq} time={rtt * 1000:.2f} ms")
            print(f"bridge: {bridge.counters}")
            vm.cancel()
            await bridge.close()


async def run_network(args: argparse.Namespace) -> None:
    host, _, port = args.listen.rpartition(":")
    async with Node(args.home, planet=args.planet) as node:
        net = await node.join(args.network, timeout=None, wait_authorized=True)
        stream = StreamPort(host, int(port))
        await net.bridge(stream)
        print(f"bridge: waiting for QEMU on {host} port {port}; Ctrl-C stops")
        await asyncio.Event().wait()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--local", action="store_true", help="a local world and a stand-in VM")
    ap.add_argument("--home", help="the node's state directory")
    ap.add_argument("--network", help="the network id (16 hex digits)")
    ap.add_argument("--planet", help="a planet file instead of ZeroTier's")
    ap.add_argument("--listen", default="127.0.0.1:5555", help="where QEMU connects")
    args = ap.parse_args()
    if args.local:
        asyncio.run(run_local())
    elif args.home and args.network:
        asyncio.run(run_network(args))
    else:
        ap.error("give --local, or --home and --network")


if __name__ == "__main__":
    main()
