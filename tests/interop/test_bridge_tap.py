"""A kernel host behind a TAP-backed ztnode bridge port (issue 13): in a namespace of the
test's own, a Linux bridge br0 holds the TAP device ztnode reads and writes, and the kernel
owns 10.147.17.250 on br0. A second member pings that host and talks TCP to it through the
bridge member; the host pings the member back. Nothing leaves the namespace and loopback."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from pathlib import Path

import pytest

from tests.helpers.data import test_identities
from tests.interop.conftest import need_root
from tests.interop.netns import NetNamespace
from ztnode.sockets.bridgeports import StreamPort, TapPort
from ztnode.testing.local import DEFAULT_NETWORK, LocalZtWorld

IDS = test_identities()
LAN_IP = "10.147.17.250"
#: The segment's MACs: globally administered, so never read as a ZeroTier member's.
LAN_MACS = ("00:16:3e:00:00:01", "00:16:3e:00:00:02")
NETWORK = {
    **DEFAULT_NETWORK,
    "ipAssignmentPools": [{"ipRangeStart": "10.147.17.1", "ipRangeEnd": "10.147.17.100"}],
}


def test_a_kernel_host_behind_a_tap_bridge_port(tmp_path: Path) -> None:
    need_root()
    with NetNamespace() as ns:
        fd, tap = ns.in_namespace(lambda: TapPort.create("ztbr%d"))
        ns.ip("link", "add", "br0", "type", "bridge")
        # Globally administered MACs: random ones read as a member's one time in 64.
        ns.ip("link", "set", "dev", tap, "address", LAN_MACS[0])
        ns.ip("link", "set", "dev", "br0", "address", LAN_MACS[1])
        ns.ip("link", "set", tap, "master", "br0")
        ns.ip("link", "set", tap, "up")
        ns.ip("link", "set", "br0", "up")
        ns.ip("addr", "add", f"{LAN_IP}/24", "dev", "br0")
        listener = ns.socket(socket.AF_INET, socket.SOCK_STREAM, bind=(LAN_IP, 8000))
        listener.listen(4)
        listener.setblocking(False)

        async def main() -> None:
            async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3], network=NETWORK) as w:
                (bridge_node, _), (bridged, other) = w.members, w.networks
                await w.make_bridge(bridge_node)
                bridge = await bridged.bridge(TapPort(tap, fd=fd))
                loop = asyncio.get_running_loop()
                # The other member reaches the kernel host: ICMP, then TCP.
                rtt = await other.ping(LAN_IP, timeout=5)
                assert rtt > 0
                reader, writer = await other.open_connection(LAN_IP, 8000, timeout=10)
                conn, peer = await asyncio.wait_for(loop.sock_accept(listener), 10)
                assert peer[0] == other.address(4)
                writer.write(b"hello kernel")
                assert await asyncio.wait_for(loop.sock_recv(conn, 100), 10) == b"hello kernel"
                await loop.sock_sendall(conn, b"hello overlay")
                assert await asyncio.wait_for(reader.readexactly(13), 10) == b"hello overlay"
                conn.close()
                writer.close()

                # And the kernel host connects to a server on the member (its ARP and SYN
                # cross the bridge the other way).
                async def shout(r: asyncio.StreamReader, wr: asyncio.StreamWriter) -> None:
                    wr.write((await r.read(100)).upper())
                    wr.close()

                server = await other.start_server(shout, port=9000)
                client = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
                client.setblocking(False)
                await asyncio.wait_for(loop.sock_connect(client, (other.address(4), 9000)), 10)
                await loop.sock_sendall(client, b"from the lan")
                assert await asyncio.wait_for(loop.sock_recv(client, 100), 10) == b"FROM THE LAN"
                client.close()
                server.close()
                assert bridge.counters["refused"] == 0
                await bridge.close()

        try:
            asyncio.run(main())
        finally:
            listener.close()


pytestmark = pytest.mark.e2e


async def qemu_stand_in(host: str, port: int, tap_fd: int) -> None:
    """What QEMU does with ``-netdev stream``: frames between a NIC and the stream. Here the
    NIC is a TAP device in the namespace whose kernel owns the LAN host's address, so the host
    behind the VM socket is a real kernel, not a simulation."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(host, port)
    os.set_blocking(tap_fd, False)

    def from_tap() -> None:
        while True:
            try:
                frame = os.read(tap_fd, 65536)
            except BlockingIOError:
                return
            writer.write(struct.pack("!I", len(frame)) + frame)

    loop.add_reader(tap_fd, from_tap)
    try:
        while True:
            (n,) = struct.unpack("!I", await reader.readexactly(4))
            os.write(tap_fd, await reader.readexactly(n))
    finally:
        loop.remove_reader(tap_fd)
        writer.close()


def test_a_kernel_host_behind_a_vm_socket_port(tmp_path: Path) -> None:
    need_root()
    with NetNamespace() as ns:
        fd, tap = ns.in_namespace(lambda: TapPort.create("ztvm%d"))
        ns.ip("link", "set", "dev", tap, "address", LAN_MACS[0])  # not a member-looking one
        ns.ip("link", "set", tap, "up")
        ns.ip("addr", "add", f"{LAN_IP}/24", "dev", tap)
        listener = ns.socket(socket.AF_INET, socket.SOCK_STREAM, bind=(LAN_IP, 8000))
        listener.listen(4)
        listener.setblocking(False)

        async def main() -> None:
            async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3], network=NETWORK) as w:
                (bridge_node, _), (bridged, other) = w.members, w.networks
                await w.make_bridge(bridge_node)
                port = StreamPort.listen()
                bridge = await bridged.bridge(port)
                host, tcp_port = port.address  # type: ignore[misc]
                vm = asyncio.ensure_future(qemu_stand_in(host, tcp_port, fd))
                loop = asyncio.get_running_loop()
                try:
                    assert await other.ping(LAN_IP, timeout=5) > 0
                    _, writer = await other.open_connection(LAN_IP, 8000, timeout=10)
                    conn, _ = await asyncio.wait_for(loop.sock_accept(listener), 10)
                    writer.write(b"through the vm socket")
                    got = await asyncio.wait_for(loop.sock_recv(conn, 100), 10)
                    assert got == b"through the vm socket"
                    conn.close()
                    writer.close()
                finally:
                    vm.cancel()
                    await bridge.close()

        try:
            asyncio.run(main())
        finally:
            listener.close()
            os.close(fd)
