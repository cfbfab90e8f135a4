"""IP over ZeroTier in memory: two members with IP stacks on a controller's network.

A root, a controller host and two members (each a :class:`~ztnode.netstack.host.Host`) run under
virtual time on the fake network. The members get IPv4 and rfc4193 addresses from the controller
and then ping, exchange UDP and move TCP streams over the overlay, including a 20 MB transfer in
each direction across a path with 10 % loss, reordering and duplication.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from ipaddress import IPv4Interface, IPv6Interface
from pathlib import Path

import pytest

from tests.conftest import test_identities
from ztnode.controller import open_controller
from ztnode.core.network import NetworkStatus
from ztnode.netstack.host import Host
from ztnode.netstack.stack import IpStack, PingReply, TcpSocket
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


@pytest.fixture
def world(tmp_path: Path) -> IpWorld:
    return IpWorld(tmp_path)


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_ping_both_ways(world: IpWorld, family: str) -> None:
    for src, dst in ((world.a, world.b), (world.b, world.a)):
        world.events(src)
        target = world.v4(dst) if family == "v4" else world.v6(dst)
        world.stack(src).ping(target, 7, 1, b"hello", world.now)

        def got(src: Host = src, target: str = target) -> bool:
            return any(
                isinstance(e, PingReply) and e.data == b"hello" and e.source == target
                for e in world.events(src)
            )

        assert world.run_until(got, 5_000)


def test_udp_exchange_and_port_unreachable(world: IpWorld) -> None:
    sa = world.stack(world.a)
    sb = world.stack(world.b)
    server = sb.udp_bind(None, 5353)
    client = sa.udp_bind(None, 0)
    client.sendto(b"question", world.v4(world.b), 5353, world.now)
    assert world.run_until(lambda: bool(server.queue), 5_000)
    data, (host, port) = server.recv()  # type: ignore[misc]
    assert data == b"question" and host == world.v4(world.a) and port == client.port
    server.sendto(b"answer", host, port, world.now)
    assert world.run_until(lambda: bool(client.queue), 5_000)
    assert client.recv() == (b"answer", (world.v4(world.b), 5353))
    # A connected socket learns ECONNREFUSED from ICMP port unreachable.
    client.connect(world.v4(world.b), 9)
    client.send(b"nobody", world.now)
    assert world.run_until(lambda: client.error != 0, 5_000)
    assert client.take_error() == 111
    # Over IPv6 too, and a datagram bigger than the MTU is fragmented and reassembled.
    s6 = sb.udp_bind(None, 6000, ipv6=True)
    c6 = sa.udp_bind(None, 0, ipv6=True)
    big = bytes(range(256)) * 40  # 10240 bytes: four or five fragments at MTU 2800
    c6.sendto(big, world.v6(world.b), 6000, world.now)
    assert world.run_until(lambda: bool(s6.queue), 5_000)
    assert s6.recv() == (big, (world.v6(world.a), c6.port))


def _connect(world: IpWorld, client: Host, server: Host, host: str, port: int) -> TcpSocket:
    lst = world.stack(server).tcp_listen(None, port, ipv6=":" in host)
    sock = world.stack(client).tcp_connect(host, port, world.now)
    assert world.run_until(lambda: sock.state == TcpState.ESTABLISHED and bool(lst.queue), 10_000)
    peer = lst.accept()
    assert peer is not None and peer.state == TcpState.ESTABLISHED
    assert peer.remote == sock.local and peer.local == sock.remote
    return sock


def _transfer(world: IpWorld, tx: TcpSocket, rx: TcpSocket, size: int, seed: int) -> None:
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


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_tcp_connect_transfer_close(world: IpWorld, family: str) -> None:
    a, b = world.a, world.b
    host = world.v4(b) if family == "v4" else world.v6(b)
    sock = _connect(world, a, b, host, 8080)
    lst = world.stack(b)._listeners
    peer = next(s for s in world.stack(b)._tcp.values() if s.remote == sock.local)
    _transfer(world, sock, peer, 300_000, 1)
    _transfer(world, peer, sock, 300_000, 2)
    assert world.run_until(
        lambda: (
            sock.state in (TcpState.TIME_WAIT, TcpState.CLOSED) and peer.state == TcpState.CLOSED
        ),
        10_000,
    )
    assert lst  # the listener stays open


def test_refused_connection(world: IpWorld) -> None:
    sock = world.stack(world.a).tcp_connect(world.v4(world.b), 1, world.now)
    assert world.run_until(lambda: sock.state == TcpState.CLOSED, 5_000)


@pytest.mark.slow
def test_20mb_both_ways_over_lossy_overlay(tmp_path: Path) -> None:
    """Issue 5: 20 MB each way intact across 10 % loss, reordering and duplication."""
    profile = LinkProfile(loss=0.10, duplicate=0.05, reorder=0.10, latency_ms=2, jitter_ms=1)
    world = IpWorld(tmp_path, profile=profile, seed=5)
    sock = _connect(world, world.a, world.b, world.v4(world.b), 9000)
    peer = next(s for s in world.stack(world.b)._tcp.values() if s.remote == sock.local)
    _transfer(world, sock, peer, 20_000_000, 11)
    _transfer(world, peer, sock, 20_000_000, 12)
    assert sock.conn.retransmitted_bytes > 0 and peer.conn.retransmitted_bytes > 0


def test_udp_and_ping_over_lossy_overlay(tmp_path: Path) -> None:
    """Issue 5: under 10 % loss, reordering and duplication, pings are answered (a lost one
    times out, the rest arrive intact) and UDP datagrams arrive intact or not at all."""
    profile = LinkProfile(loss=0.10, duplicate=0.05, reorder=0.10, latency_ms=2, jitter_ms=1)
    world = IpWorld(tmp_path, profile=profile, seed=7)
    sa, sb = world.stack(world.a), world.stack(world.b)
    world.events(world.a)
    for seq in range(40):  # like ping: one a quarter second, for ten seconds
        sa.ping(world.v4(world.b), 3, seq, seq.to_bytes(2, "big") * 8, world.now)
        world.w.run_for(250)
    world.w.run_for(2_000)
    replies = [e for e in world.events(world.a) if isinstance(e, PingReply)]
    seqs = {e.sequence for e in replies}
    # Address resolution and the first credential exchange may each need a retry under this
    # loss; after that, a round trip is lost only when one of its crossings is.
    assert len(seqs) >= 16, sorted(seqs)  # 19 to 34 of 40 across seeds 7-11
    assert all(e.data == e.sequence.to_bytes(2, "big") * 8 for e in replies)
    rx = sb.udp_bind(None, 7000)
    tx = sa.udp_bind(None, 0)
    sent = {i.to_bytes(4, "big") * 100 for i in range(100)}
    for payload in sorted(sent):
        tx.sendto(payload, world.v4(world.b), 7000, world.now)
        world.w.run_for(5)
    world.w.run_for(2_000)
    got = []
    while (item := rx.recv()) is not None:
        got.append(item[0])
    assert set(got) <= sent and len(set(got)) >= 60
