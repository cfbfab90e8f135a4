"""Remembered FRAME routes (core/routecache.py): reused while the state they were made from
holds, looked up again as soon as any of it changes, bounded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.helpers.ipworld import IpWorld, ip_connect
from ztnode.core.path import PATH_HEARTBEAT_PERIOD
from ztnode.core.peer import Peer
from ztnode.core.routecache import ROUTE_CACHE_LIMIT, ROUTE_TTL_MS, RouteCache
from ztnode.core.trusted import PhysicalPathConfig
from ztnode.crypto.keys import SymmetricKey
from ztnode.netstack.host import Host
from ztnode.wire import packet as pk
from ztnode.wire.constants import Verb
from ztnode.wire.mac import mac_from_address

TPID = 0x0BAD_CAFE_0001


@pytest.fixture
def world(tmp_path: Path) -> IpWorld:
    """A world whose member a has a route to b (the first ask starts WHOIS and contact)."""
    w = IpWorld(tmp_path, seed=21)
    tx = w.stack(w.a).udp_bind(None, 0)

    def routed() -> bool:
        tx.sendto(b"hello", w.v4(w.b), 9, w.now)  # ARP, WHOIS, contact: then a direct path
        return _route_to(w, w.a, w.b) is not None and w.w.direct(w.a.node, w.b.node)

    assert w.run_until(routed, 30_000)
    tx.close()
    w.a.node.frames.routes.clear()
    return w


def _route_to(world: IpWorld, src: Host, dst: Host) -> object:
    mac = mac_from_address(dst.node.address, world.nwid)
    return src.node.frame_route(world.nwid, mac, world.now)


def test_a_route_is_reused_within_its_ttl_and_made_again_after(world: IpWorld) -> None:
    a, b = world.a, world.b
    first = _route_to(world, a, b)
    assert first is not None
    hits = a.node.frames.routes.hits
    assert _route_to(world, a, b) is first
    assert a.node.frames.routes.hits == hits + 1
    start = world.now
    world.run_until(lambda: world.now - start > ROUTE_TTL_MS, ROUTE_TTL_MS + 1_000)
    assert world.now - start > ROUTE_TTL_MS
    again = _route_to(world, a, b)
    assert again is not None and again is not first
    assert again == first  # nothing changed: the same route, looked up again


def test_what_a_route_depends_on_makes_it_stale(world: IpWorld) -> None:
    a, b = world.a, world.b
    node = a.node
    first = _route_to(world, a, b)
    net = node.network(world.nwid)
    assert net is not None and net.config is not None
    # A new config object (what every config update is): new rules, MTU, members.
    net.config = dataclasses.replace(net.config)
    second = _route_to(world, a, b)
    assert second is not None and second is not first
    # The peer's key replaced (a rekey): the route carries the key, so it must go.
    peer = node.peer(b.node.address)
    assert peer is not None
    old_key = peer.key
    peer.key = SymmetricKey(old_key.raw)
    third = _route_to(world, a, b)
    assert third is not None and third is not second
    assert third.key is peer.key  # type: ignore[attr-defined]
    peer.key = old_key  # put back, so the world still talks
    # The peer forgotten and met again: another object, so another route.
    fourth = _route_to(world, a, b)
    assert fourth is not None
    node.peers[b.node.address] = Peer(peer.identity, peer.key, world.now)
    assert _route_to(world, a, b) is not fourth


def test_trusting_a_path_takes_effect_on_the_next_frame(world: IpWorld) -> None:
    """Routes are remembered, but a new physical config (trusted paths) is seen at once: the
    next segment of a live connection already goes as cipher 2."""
    a, b = world.a, world.b
    sock = ip_connect(world, a, b, world.v4(b), 5100)
    rx = next(s for s in world.stack(b)._tcp.values() if s.remote == sock.local)
    sock.send(b"before")
    world.run_until(lambda: rx.recv() is not None, 2_000)
    assert len(a.node.frames.routes) >= 1
    addr_a = world.w.addresses[a.node.address]
    addr_b = world.w.addresses[b.node.address]
    seen: list[int] = []

    def record(local: object, remote: object, data: bytes) -> None:
        if local == addr_a and remote == addr_b and len(data) >= 28 and data[13] != 0xFF:
            cipher = pk.peek_cipher(data)
            if cipher == 2 and data[27] & 0x1F == Verb.FRAME:
                seen.append(cipher)

    world.w.net.taps.append(record)
    trusted = {f"{addr[0]}/32": {"trustedPathId": TPID} for addr in (addr_a, addr_b)}
    for h in (a, b):
        h.node.set_physical_paths(PhysicalPathConfig.from_local_conf(trusted))
    sock.send(b"after")
    got: list[bytes] = []
    world.run_until(lambda: bool(got.append(rx.recv() or b"") or b"after" in b"".join(got)), 2_000)
    assert b"after" in b"".join(got)
    assert seen, "the segment after the change did not go over the trusted path"


def test_a_path_taken_away_empties_the_cache(world: IpWorld) -> None:
    a, b = world.a, world.b
    assert _route_to(world, a, b) is not None
    assert len(a.node.frames.routes) >= 1
    peer = a.node.peer(b.node.address)
    assert peer is not None and peer.paths
    a.node.housekeeper.drop_paths(peer, list(peer.paths), "test")
    assert len(a.node.frames.routes) == 0


def test_the_table_is_bounded_and_counts_when_it_is_full(world: IpWorld) -> None:
    a, b = world.a, world.b
    route = _route_to(world, a, b)
    peer = a.node.peer(b.node.address)
    assert route is not None and peer is not None
    cache = RouteCache()
    for i in range(ROUTE_CACHE_LIMIT):
        assert cache.put(1, i, 0, None, peer, None, route)  # type: ignore[arg-type]
    assert len(cache) == ROUTE_CACHE_LIMIT and cache.overflows == 0
    assert cache.put(1, 1, 0, None, peer, None, route)  # type: ignore[arg-type]  # replaced
    assert not cache.put(2, 0, 0, None, peer, None, route)  # type: ignore[arg-type]
    assert len(cache) == 1 and cache.overflows == 1
    assert cache.get(2, 0, 1, None, a.node.peers, None) is route
    assert cache.get(2, 0, ROUTE_TTL_MS, None, a.node.peers, None) is None  # expired
    assert cache.get(2, 0, 1, object(), a.node.peers, None) is None  # another config
    assert cache.get(2, 0, 1, None, a.node.peers, object()) is None  # another physical config
    assert cache.get(2, 0, 1, None, {}, None) is None  # the peer is gone


def test_a_direct_path_learned_replaces_a_route_through_the_root(tmp_path: Path) -> None:
    """Before b answers, a reaches it through the root; the route remembered then must not
    outlive the direct path (found by the trusted-path test: replies went encrypted via the
    root while a trusted direct path existed)."""
    w = IpWorld(tmp_path, seed=22)
    tx = w.stack(w.a).udp_bind(None, 0)
    root = w.w.addresses[w.w.roots[0].address]
    seen: list[object] = []

    def relayed_then_direct() -> bool:
        tx.sendto(b"hello", w.v4(w.b), 9, w.now)
        r = _route_to(w, w.a, w.b)
        if r is not None:
            seen.append(r.remote)  # type: ignore[attr-defined]
        return w.w.direct(w.a.node, w.b.node)

    assert w.run_until(relayed_then_direct, 30_000)
    direct = _route_to(w, w.a, w.b)
    assert direct is not None
    assert root in seen  # the route did go through the root first
    # ... and the moment the direct path exists, the route takes it (not 250 ms later).
    assert direct.remote == w.w.addresses[w.b.node.address]  # type: ignore[attr-defined]


def test_frames_on_a_remembered_route_count_as_the_paths_last_send(world: IpWorld) -> None:
    """Datagrams made outside the core (C cuts on a route) refresh the path's last send as
    the node's own sends do, so a path busy with data is not sent heartbeats (and /peer's
    lastSend is right)."""
    a, b = world.a, world.b
    peer = a.node.peer(b.node.address)
    assert peer is not None
    path = peer.best_path(world.now)
    assert path is not None
    route = _route_to(world, a, b)
    assert route is not None
    later = world.now + PATH_HEARTBEAT_PERIOD
    path.last_out = world.now
    assert path.needs_heartbeat(later)
    a.node.send_routed(route, [b"\0" * 40], 1, later)  # type: ignore[arg-type]
    assert path.last_out == later
    assert not path.needs_heartbeat(later + 1)
    a.node.datagrams_to_send(later)  # what was queued goes nowhere: the test's datagram


def test_a_burst_of_one_piece_is_judged_once(
    world: IpWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small segments now take the burst path; on a network with rules, one piece must cost
    one rules evaluation (as send_frame's), not a head and a tail of the same frame."""
    a, b = world.a, world.b
    net = a.node.network(world.nwid)
    assert net is not None
    calls: list[int] = []
    outbound = net.enforcer.outbound

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(int(kwargs.get("weight", 1)))  # type: ignore[call-overload]
        return outbound(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(net.enforcer, "outbound", counted)
    mac = mac_from_address(b.node.address, world.nwid)
    frame = bytes(40)
    assert a.node.filter_burst(world.nwid, mac, 0x0800, frame, frame, 1) is True
    assert calls == [1]
    calls.clear()
    assert a.node.filter_burst(world.nwid, mac, 0x0800, frame, frame, 3) is True
    assert sorted(calls) == [1, 2]  # the last piece, and the first standing for two
