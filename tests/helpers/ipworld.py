"""An in-memory world of Hosts with IP stacks under virtual time (root, controller, members)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from ipaddress import IPv4Interface, IPv6Interface
from pathlib import Path

from tests.helpers.data import test_identities
from ztnode.controller import open_controller
from ztnode.core.network import NetworkStatus
from ztnode.netstack.host import Host
from ztnode.netstack.stack import IpStack, TcpListener, TcpSocket
from ztnode.netstack.tcp import TcpState
from ztnode.testing.fakenet import LinkProfile
from ztnode.testing.world import LocalWorld, seeded_random_bytes

IDS = test_identities()


NETWORK = {
    "name": "ip",
    "private": True,
    "v4AssignMode": {"zt": True},
    "v6AssignMode": {"rfc4193": True, "6plane": False, "zt": False},
    "ipAssignmentPools": [{"ipRangeStart": "10.147.20.1", "ipRangeEnd": "10.147.20.254"}],
    "routes": [{"target": "10.147.20.0/24", "via": None}],
}


class IpWorld:
    """Root, controller host and two members with IP stacks, all authorized and addressed."""

    def __init__(self, home: Path, profile: LinkProfile | None = None, seed: int = 1) -> None:
        self.w = LocalWorld.build(IDS, roots=1, leaves=3, ip_stacks=True, seed=seed)
        ctl_node = self.w.leaves[0]
        self.ctl = open_controller(ctl_node.identity, home, seeded_random_bytes(99))
        ctl_node.controller = self.ctl
        assert self.w.run_until(self.w.all_online, 15_000)
        net = self.ctl.create_network(NETWORK, self.now)
        self.nwid = int(str(net["id"]), 16)
        self.a, self.b = (self.w.hosts[n.address] for n in self.w.leaves[1:])
        for h in (self.a, self.b):
            h.node.join(self.nwid, self.now)
            self.ctl.update_member(self.nwid, h.node.address, {"authorized": True}, self.now)
        ctl_node.flush_controller(self.now)
        assert self.run_until(lambda: all(self.ready(h) for h in (self.a, self.b)), 15_000)
        if profile is not None:
            for x in self.w.leaves[1:]:
                for y in self.w.nodes:
                    if x is not y:
                        self.w.net.set_profile(
                            self.w.addresses[x.address], self.w.addresses[y.address], profile
                        )

    @property
    def now(self) -> int:
        return self.w.net.now

    def run_until(self, cond: Callable[[], bool], ms: int) -> bool:
        return self.w.run_until(cond, ms)

    def ready(self, h: Host) -> bool:
        net = h.node.network(self.nwid)
        st = h.stack(self.nwid)
        return (
            net is not None
            and net.status == NetworkStatus.OK
            and st is not None
            and len(st.addresses) == 2
        )

    def stack(self, h: Host) -> IpStack:
        st = h.stack(self.nwid)
        assert st is not None
        return st

    def v4(self, h: Host) -> str:
        return next(str(a.ip) for a in self.stack(h).addresses if isinstance(a, IPv4Interface))

    def v6(self, h: Host) -> str:
        return next(str(a.ip) for a in self.stack(h).addresses if isinstance(a, IPv6Interface))

    def events(self, h: Host) -> list[object]:
        return self.w.net.take_events(h)


def _settled(sock: TcpSocket, lst: TcpListener) -> bool:
    return (sock.state == TcpState.ESTABLISHED and bool(lst.queue)) or (
        sock.state == TcpState.CLOSED
    )


def ip_connect(world: IpWorld, client: Host, server: Host, host: str, port: int) -> TcpSocket:
    """A connection from ``client`` to a listener on ``server``. On a lossy world every ARP
    try may be lost, and then the connect fails with EHOSTUNREACH as on Linux: it is tried
    again (at most three times)."""
    lst = world.stack(server).tcp_listen(None, port, ipv6=":" in host)
    for _ in range(3):
        sock = world.stack(client).tcp_connect(host, port, world.now)
        world.run_until(lambda s=sock: _settled(s, lst), 10_000)
        if sock.state != TcpState.CLOSED:
            break
    assert sock.state == TcpState.ESTABLISHED and bool(lst.queue)
    peer = lst.accept()
    assert peer is not None and peer.state == TcpState.ESTABLISHED
    assert peer.remote == sock.local and peer.local == sock.remote
    return sock


def ip_transfer(world: IpWorld, tx: TcpSocket, rx: TcpSocket, size: int, seed: int) -> None:
    data = random.Random(seed).randbytes(size)
    want = hashlib.sha256(data).hexdigest()
    got = hashlib.sha256()
    state = {"sent": 0, "received": 0}

    def step() -> bool:
        if state["sent"] < size:
            state["sent"] += tx.send(memoryview(data)[state["sent"] : state["sent"] + 65536])
            if state["sent"] == size:
                tx.shutdown(world.now)
        chunk = rx.recv()
        if chunk:
            got.update(chunk)
            state["received"] += len(chunk)
        return rx.conn.at_eof

    assert world.run_until(step, 600_000), state
    assert state["received"] == size
    assert got.hexdigest() == want


def ip_udp(
    world: IpWorld, src: Host, dst: Host, port: int, data: bytes, wait_ms: int = 1_000
) -> bytes | None:
    """One UDP datagram from ``src`` to ``dst``'s IPv4 address (three tries: the first may
    wait on ARP and WHOIS); what arrived first, or None."""
    rx = world.stack(dst).udp_bind(None, port)
    tx = world.stack(src).udp_bind(None, 0)
    got: list[bytes] = []

    def arrived() -> bool:
        m = rx.recv()
        if m is not None:
            got.append(m[0])
        return bool(got)

    try:
        for _ in range(3):
            tx.sendto(data, world.v4(dst), port, world.now)
            if world.run_until(arrived, wait_ms):
                break
        return got[0] if got else None
    finally:
        rx.close()
        tx.close()
