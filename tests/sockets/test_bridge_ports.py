"""A segment bridged onto a network through the asyncio API: a "VM" on a QEMU-style stream
socket (no privileges) ARPs and pings a member and is pinged back; a member the controller has
not marked an active bridge is refused with a clear error."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from tests.helpers.data import test_identities
from ztnode.errors import LocalProtocolError
from ztnode.sockets.bridgeports import StreamPort
from ztnode.testing.local import DEFAULT_NETWORK, LocalZtWorld

pytestmark = pytest.mark.e2e

IDS = test_identities()
VM_MAC = "52:54:00:be:ef:07"  # QEMU's prefix: never a member's MAC, whatever the network id
VM_IP = "10.147.17.250"
NETWORK = {  # members get addresses below the VM's
    **DEFAULT_NETWORK,
    "ipAssignmentPools": [{"ipRangeStart": "10.147.17.1", "ipRangeEnd": "10.147.17.200"}],
}


class Vm:
    """The far end of a stream port: frames as [length][frame], answering ARP and pings for
    VM_IP like a small host would (scapy builds and reads the frames)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.frames: asyncio.Queue[bytes] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        from scapy.layers.inet import ICMP, IP
        from scapy.layers.l2 import ARP, Ether

        try:
            while True:
                (n,) = struct.unpack("!I", await self.reader.readexactly(4))
                raw = await self.reader.readexactly(n)
                f = Ether(raw)
                if ARP in f and f[ARP].op == 1 and f[ARP].pdst == VM_IP:
                    self.send(
                        Ether(src=VM_MAC, dst=f[Ether].src)
                        / ARP(op=2, hwsrc=VM_MAC, psrc=VM_IP, hwdst=f[ARP].hwsrc, pdst=f[ARP].psrc)
                    )
                elif IP in f and ICMP in f and f[ICMP].type == 8 and f[IP].dst == VM_IP:
                    reply = (
                        IP(src=VM_IP, dst=f[IP].src)
                        / ICMP(type=0, id=f[ICMP].id, seq=f[ICMP].seq)
                        / bytes(f[ICMP].payload)
                    )
                    self.send(Ether(src=VM_MAC, dst=f[Ether].src) / reply)
                else:
                    await self.frames.put(raw)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    def send(self, pkt: object) -> None:
        raw = bytes(pkt)  # type: ignore[call-overload]
        self.writer.write(struct.pack("!I", len(raw)) + raw)


def test_a_vm_on_a_stream_port_is_on_the_network(tmp_path: Path) -> None:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import ARP, Ether

    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3], network=NETWORK) as w:
            (_, node_b), (a, b) = w.members, w.networks
            with pytest.raises(LocalProtocolError, match="not an active bridge"):
                await b.bridge(StreamPort.listen())
            await w.make_bridge(node_b)
            port = StreamPort.listen()
            bridge = await b.bridge(port)
            host, tcp_port = port.address  # type: ignore[misc]
            vm = Vm(*await asyncio.open_connection(host, tcp_port))
            # The VM asks who has a's address and pings it.
            vm.send(
                Ether(src=VM_MAC, dst="ff:ff:ff:ff:ff:ff")
                / ARP(op=1, hwsrc=VM_MAC, psrc=VM_IP, pdst=a.address(4))
            )
            a_mac = None
            while a_mac is None:
                f = Ether(await asyncio.wait_for(vm.frames.get(), 10))
                if ARP in f and f[ARP].op == 2 and f[ARP].psrc == a.address(4):
                    a_mac = f[ARP].hwsrc
            vm.send(
                Ether(src=VM_MAC, dst=a_mac)
                / IP(src=VM_IP, dst=a.address(4))
                / ICMP(type=8, id=9, seq=1)
                / b"from the vm"
            )
            while True:
                f = Ether(await asyncio.wait_for(vm.frames.get(), 10))
                if ICMP in f and f[ICMP].type == 0 and f[IP].src == a.address(4):
                    break
            # And the member pings the VM (its ARP and echo cross the bridge to the VM).
            assert await a.ping(VM_IP, timeout=5) > 0
            assert bridge.counters["from_segment"] >= 3 and bridge.counters["refused"] == 0
            vm.task.cancel()
            vm.writer.close()
            await bridge.close()

    asyncio.run(main())
