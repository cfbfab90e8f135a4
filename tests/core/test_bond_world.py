"""Bonds between two members with two or three links each, in virtual time with seeded
impairments (tests/helpers/bondworld.py): each policy's choice of path per packet and per
flow, failover and failback times, balance-aware moving flows off a degraded link, and a
20 MB TCP transfer that outlives the link it started on (ZeroTierOne 1.14.1 node/Bond.cpp,
protocol-multipath.md section 6)."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.bondworld import BondWorld, link_ip
from tests.helpers.ipworld import ip_connect
from ztnode.core import events as ev
from ztnode.core.bond import Bond, BondPolicy
from ztnode.netstack.stack import TcpSocket, UdpSocket
from ztnode.testing.fakenet import LinkProfile

pytestmark = pytest.mark.slow

TRIAL_MS = 16_000  # past every new path's 15 s trial


def _policy(base: str, **extra: Any) -> dict[str, Any]:
    return {"defaultBondingPolicy": "custom", "policies": {"custom": {"basePolicy": base, **extra}}}


def _pair(w: BondWorld, port: int = 5000) -> tuple[TcpSocket, TcpSocket]:
    tx = ip_connect(w, w.a, w.b, w.v4(w.b), port)
    rx = next(s for s in w.stack(w.b)._tcp.values() if s.remote == tx.local)
    return tx, rx


class _Wire:
    """Datagrams from a to b per link, as the fake network carries them."""

    def __init__(self, w: BondWorld) -> None:
        self.per_link: Counter[int] = Counter()
        self.big: Counter[int] = Counter()  # datagrams big enough to be data, not keepalives
        a_ips = {link_ip(k, 3) for k in range(w.links)}
        b_ips = {link_ip(k, 4) for k in range(w.links)}

        def tap(local: tuple[str, int], remote: tuple[str, int], data: bytes) -> None:
            if local[0] in a_ips and remote[0] in b_ips:
                k = int(local[0].split(".")[1])
                self.per_link[k] += 1
                if len(data) > 400:
                    self.big[k] += 1

        w.w.net.taps.append(tap)

    def reset(self) -> None:
        self.per_link.clear()
        self.big.clear()


def _transfer(
    w: BondWorld,
    tx: TcpSocket,
    rx: TcpSocket,
    size: int,
    *,
    cut_at: float | None = None,
    close: bool = False,
) -> dict[str, int]:
    """Send ``size`` bytes tx -> rx (then shut down with ``close``), cutting the active link
    when ``cut_at`` of it arrived; returns the longest delivery gap after the cut (ms) and
    the link cut."""
    bond = w.bond(w.a, w.b)
    assert bond is not None
    data = random.Random(size).randbytes(size)
    got = hashlib.sha256()
    st = {"sent": 0, "recv": 0, "last": w.now, "gap": 0, "cut": -1, "link": -1}

    def step() -> bool:
        if st["sent"] < size:
            st["sent"] += tx.send(memoryview(data)[st["sent"] : st["sent"] + 65536])
            if st["sent"] == size and close:
                tx.shutdown(w.now)
        chunk = rx.recv()
        if chunk:
            got.update(chunk)
            st["recv"] += len(chunk)
            if st["cut"] >= 0:
                st["gap"] = max(st["gap"], w.now - st["last"])
            st["last"] = w.now
        if cut_at is not None and st["cut"] < 0 and st["recv"] >= size * cut_at:
            assert bond.active is not None
            st["link"] = w.link_of(bond.active.path.local)
            st["cut"] = w.now
            w.cut(st["link"])
        return rx.conn.at_eof if close else st["recv"] == size

    assert w.run_until(step, 900_000), st
    assert st["recv"] == size
    assert got.hexdigest() == hashlib.sha256(data).hexdigest()
    return st


def test_active_backup_sends_on_one_link_and_fails_over_within_a_second(tmp_path: Path) -> None:
    w = BondWorld(tmp_path, {"defaultBondingPolicy": "active-backup"})
    wire = _Wire(w)
    tx, rx = _pair(w)
    w.wait_bonded()
    w.run_until(lambda: False, TRIAL_MS)
    bond = w.bond(w.a, w.b)
    assert bond is not None and bond.policy == BondPolicy.ACTIVE_BACKUP
    assert bond.active is not None and w.link_of(bond.active.path.local) == 0
    wire.reset()
    _transfer(w, tx, rx, 300_000)
    assert wire.big[0] > 100 and wire.big[1] == 0  # all data on the active link
    w.events(w.a)
    st = _transfer(w, tx, rx, 2_000_000, cut_at=0.3)
    assert st["link"] == 0 and w.link_of(bond.active.path.local) == 1
    failover = bond.last_active_change - st["cut"]
    assert 0 < failover <= 1_000, failover
    assert st["gap"] <= 1_000, st  # the application's stall: no reset, no RTO back-off wait
    evs = w.events(w.a)
    downs = [e for e in evs if isinstance(e, ev.BondLinkChanged) and not e.up]
    assert any(e.local == (link_ip(0, 3), 9993) and e.remote[0] == link_ip(0, 4) for e in downs)
    moved = [e for e in evs if isinstance(e, ev.BondActiveChanged) and e.previous_local]
    assert moved and moved[-1].local == (link_ip(1, 3), 9993)
    assert tx.conn.counters.get("underlay_changed", 0) >= 1


def test_a_20_mb_transfer_survives_its_link_dying(tmp_path: Path) -> None:
    profiles = {0: LinkProfile(latency_ms=3, jitter_ms=2), 1: LinkProfile(latency_ms=8)}
    w = BondWorld(tmp_path, {"defaultBondingPolicy": "active-backup"}, profiles=profiles)
    tx, rx = _pair(w)
    w.wait_bonded()
    w.run_until(lambda: False, TRIAL_MS)
    st = _transfer(w, tx, rx, 20_000_000, cut_at=0.5, close=True)
    assert st["gap"] <= 1_500, st
    assert tx.conn.state.name == "FIN_WAIT_2" or not tx.conn.counters.get("reset", 0)


def test_failback_to_the_primary_link_and_reselect_modes(tmp_path: Path) -> None:
    links = {"eth0": {"mode": "primary"}, "eth1": {"mode": "spare"}}
    w = BondWorld(tmp_path, _policy("active-backup", links=links, failoverInterval=1000))
    _pair(w)
    w.wait_bonded()
    w.run_until(lambda: False, TRIAL_MS)
    bond = w.bond(w.a, w.b)
    assert bond is not None and bond.active is not None
    assert w.link_of(bond.active.path.local) == 0  # the primary link first
    w.cut(0)
    assert w.run_until(lambda: w.link_of(bond.active.path.local) == 1, 3_000)  # type: ignore[union-attr]
    w.restore(0)
    back = w.now
    assert w.run_until(lambda: w.link_of(bond.active.path.local) == 0, 10_000)  # type: ignore[union-attr]
    assert bond.last_active_change - back <= 2_000  # "always": back as soon as it is heard
    # "failure": stays on the spare after the primary recovers.
    (tmp_path / "2").mkdir()
    w2 = BondWorld(
        tmp_path / "2",
        _policy("active-backup", links=links, failoverInterval=1000, activeReselect="failure"),
    )
    _pair(w2)
    w2.wait_bonded()
    w2.run_until(lambda: False, TRIAL_MS)
    b2 = w2.bond(w2.a, w2.b)
    assert b2 is not None and b2.active is not None
    w2.cut(0)
    assert w2.run_until(lambda: w2.link_of(b2.active.path.local) == 1, 5_000)  # type: ignore[union-attr]
    w2.restore(0)
    w2.run_until(lambda: False, 10_000)
    assert 0 in w2.eligible(w2.a, w2.b) and w2.link_of(b2.active.path.local) == 1


def test_an_idle_link_is_noticed_on_the_reference_heartbeat(tmp_path: Path) -> None:
    """Without traffic there is nothing to rush for: failoverInterval (1 s here) decides."""
    w = BondWorld(tmp_path, _policy("active-backup", failoverInterval=1000))
    _pair(w)
    w.wait_bonded()
    w.run_until(lambda: False, TRIAL_MS)
    bond = w.bond(w.a, w.b)
    assert bond is not None and bond.active is not None
    w.run_until(lambda: False, 3_000)  # idle
    cut = w.now
    w.cut(w.link_of(bond.active.path.local))
    assert w.run_until(lambda: bond.last_active_change > cut, 5_000)
    # Dead failoverInterval after the last thing heard, which was at most one heartbeat
    # period (failoverInterval / 3, then the next bond tick) before the cut.
    assert 1_000 - 334 - 100 <= bond.last_active_change - cut <= 1_000 + 60


def test_broadcast_sends_every_frame_on_every_link(tmp_path: Path) -> None:
    w = BondWorld(tmp_path, {"defaultBondingPolicy": "broadcast"})
    wire = _Wire(w)
    tx, rx = _pair(w)
    w.wait_bonded()
    w.run_until(lambda: False, TRIAL_MS)
    wire.reset()
    _transfer(w, tx, rx, 500_000)
    assert wire.big[0] > 100 and abs(wire.big[0] - wire.big[1]) <= wire.big[0] // 50
    # b got each packet twice and kept one: a second copy of a whole packet is a replay, of
    # a fragmented one (these are) a duplicate set for the reassembler.
    dupes = w.b.node.counters.drops.get("replayed", 0) + sum(
        n for why, n in w.b.node.reassembler.drops.items() if why.startswith("duplicate")
    )
    assert dupes >= wire.big[0] // 2


def test_balance_rr_stripes_packets_per_link(tmp_path: Path) -> None:
    w = BondWorld(tmp_path, _policy("balance-rr", packetsPerLink=8))
    wire = _Wire(w)
    tx, rx = _pair(w)
    w.wait_bonded()
    w.run_until(lambda: False, TRIAL_MS)
    bond = w.bond(w.a, w.b)
    assert bond is not None and len(bond.bonded) == 2
    picks = [w.link_of(p.local) for p in (bond.select(w.now) for _ in range(32)) if p]
    runs = [picks[i : i + 8] for i in range(0, 32, 8)]
    assert all(len(set(r)) == 1 for r in runs) and runs[0][0] != runs[1][0]
    wire.reset()
    _transfer(w, tx, rx, 1_000_000)
    assert min(wire.big[0], wire.big[1]) > 0.4 * max(wire.big[0], wire.big[1])


def _flows_world(
    tmp_path: Path, settings: dict[str, Any], base_port: int, n: int
) -> tuple[BondWorld, Bond, UdpSocket, list[UdpSocket]]:
    """A bonded world past its trial, a UDP server on b (port 7000) and ``n`` clients on a
    (ports ``base_port``...): ``n`` flows for a balancing policy to place."""
    w = BondWorld(tmp_path, settings)
    _pair(w)
    w.wait_bonded()
    w.run_until(lambda: False, TRIAL_MS)
    bond = w.bond(w.a, w.b)
    assert bond is not None and len(bond.bonded) == 2
    server = w.stack(w.b).udp_bind(None, 7000)
    clients = [w.stack(w.a).udp_bind(None, base_port + i) for i in range(n)]
    return w, bond, server, clients


def test_balance_xor_keeps_each_flow_on_one_link(tmp_path: Path) -> None:
    w, bond, server, clients = _flows_world(
        tmp_path, {"defaultBondingPolicy": "balance-xor"}, 40_000, 8
    )
    for _ in range(5):
        for c in clients:
            c.sendto(b"x" * 64, w.v4(w.b), 7000, w.now)
        w.run_until(lambda: False, 50)
    assert w.run_until(lambda: len(server.queue) == 40, 5_000)
    used = set()
    for c in clients:
        fid = c.port ^ 7000 ^ 17
        flow = bond.flows.get(fid)
        assert flow is not None
        path = bond.select(w.now, fid)
        assert path is not None
        link = w.link_of(path.local)
        assert link == fid % 2  # balance-xor: flow id modulo the bonded links
        used.add(link)
    assert used == {0, 1}
    # A link dying moves its flows to the one left.
    w.cut(0)
    assert w.run_until(lambda: w.eligible(w.a, w.b) == {1}, 3_000)
    w.run_until(lambda: False, 200)
    assert all(
        w.link_of(bond.select(w.now, c.port ^ 7000 ^ 17).local) == 1  # type: ignore[union-attr]
        for c in clients
    )


def test_balance_aware_moves_flows_off_a_degraded_link(tmp_path: Path) -> None:
    slow = LinkProfile(latency_ms=700)
    settings = _policy("balance-aware", failoverInterval=2000)
    w, bond, server, clients = _flows_world(tmp_path, settings, 41_000, 12)

    def chatter(ms: int) -> None:
        for _ in range(ms // 100):
            for c in clients:
                c.sendto(b"y" * 64, w.v4(w.b), 7000, w.now)
            w.run_until(lambda: False, 100)
            server.queue.clear()

    chatter(2_000)
    on = Counter(bond.path_of_flow(f.id).local[0] for f in bond.flows)  # type: ignore[union-attr]
    assert len(on) == 2  # flows spread over both links at first
    w.w.net.set_profile((link_ip(1, 3), 9993), (link_ip(1, 4), 9993), slow)
    chatter(40_000)  # QoS reports measure the slow link; it is avoided, flows move one a tick
    degraded = next(bp for bp in bond.paths if w.link_of(bp.path.local) == 1)
    assert degraded.qos.latency > 500 and degraded.should_avoid
    assert all(w.link_of(bond.path_of_flow(f.id).local) == 0 for f in bond.flows)  # type: ignore[union-attr]


def test_qos_reports_measure_each_links_latency(tmp_path: Path) -> None:
    profiles = {0: LinkProfile(latency_ms=5), 1: LinkProfile(latency_ms=40)}
    w = BondWorld(tmp_path, _policy("balance-rr", failoverInterval=1000), profiles=profiles)
    tx, rx = _pair(w)
    w.wait_bonded()
    w.run_until(lambda: False, TRIAL_MS)
    _transfer(w, tx, rx, 2_000_000)
    w.run_until(lambda: False, 5_000)
    bond = w.bond(w.a, w.b)
    assert bond is not None
    lat = {w.link_of(bp.path.local): bp.qos.latency for bp in bond.paths}
    # (round trip - holding time) / 2: the one-way latency (QoS is sent every 2 s here).
    assert 4 <= lat[0] <= 8 and 38 <= lat[1] <= 44, lat
    assert all(bp.qos.last_qos_received > 0 for bp in bond.paths)
    assert w.b.node.counters.verbs_in["QOS_MEASUREMENT"] > 0
    # ACKs: b says how much it received on each path; a turns them into throughput.
    assert w.b.node.counters.verbs_in["ACK"] > 0
    back = w.bond(w.b, w.a)
    assert back is not None and all(bp.acked_at > 0 for bp in back.paths)


def test_three_links_fail_in_turn(tmp_path: Path) -> None:
    w = BondWorld(tmp_path, {"defaultBondingPolicy": "active-backup"}, links=3)
    tx, rx = _pair(w)
    w.wait_bonded()
    w.run_until(lambda: False, TRIAL_MS)
    bond = w.bond(w.a, w.b)
    assert bond is not None and bond.active is not None
    first = w.link_of(bond.active.path.local)
    w.cut(first)  # idle: the reference's failoverInterval (5 s) decides
    assert w.run_until(lambda: w.link_of(bond.active.path.local) != first, 6_000)  # type: ignore[union-attr]
    second = w.link_of(bond.active.path.local)
    st = _transfer(w, tx, rx, 1_000_000, cut_at=0.5)
    assert st["link"] == second
    left = {0, 1, 2} - {first, second}
    assert w.link_of(bond.active.path.local) in left


def test_a_peer_without_bonding_gets_along_with_a_bonding_one(tmp_path: Path) -> None:
    """Only a bonds: b drops the QoS reports it receives (counted) and both keep working."""
    w = BondWorld(tmp_path, {"defaultBondingPolicy": "balance-rr"})
    from ztnode.core.bond import BondingSettings

    w.b.node.configure_bonding(BondingSettings(), w.now)
    tx, rx = _pair(w)
    assert w.run_until(lambda: len(w.eligible(w.a, w.b)) == 2, 30_000)
    w.run_until(lambda: False, 25_000)
    _transfer(w, tx, rx, 1_000_000)
    assert w.b.node.bond(w.a.node.address) is None
    assert w.b.node.counters.drops.get("no_bond", 0) > 0


def test_a_links_mtu_bounds_the_datagrams_on_it(tmp_path: Path) -> None:
    """``links.<if>.mtu`` (and ``bond setmtu``): ZeroTier fragments at that path's MTU, the
    other link keeps the node's (the network here has an MTU of 2800: frames fragment)."""
    links = {"eth0": {"mode": "primary"}, "eth1": {"mode": "spare", "mtu": 1400}}
    w = BondWorld(tmp_path, _policy("broadcast", links=links))
    sizes: dict[int, int] = {0: 0, 1: 0}

    def tap(local: tuple[str, int], remote: tuple[str, int], data: bytes) -> None:
        if local[0] in (link_ip(0, 3), link_ip(1, 3)) and remote[0].endswith(".4"):
            k = int(local[0].split(".")[1])
            sizes[k] = max(sizes[k], len(data))

    w.w.net.taps.append(tap)
    tx, rx = _pair(w)
    w.wait_bonded()
    _transfer(w, tx, rx, 300_000)
    # Broadcast sends one packet on both: its fragmented flag is under the MAC, so both
    # copies are cut at the smaller MTU.
    assert sizes[0] <= 1400 and sizes[1] <= 1400 and sizes[1] > 1000, sizes
    w.a.node.bonds.set_mtu(1432, "eth1", link_ip(1, 4))
    bond = w.bond(w.a, w.b)
    assert bond is not None and {bp.path.mtu for bp in bond.paths} == {0, 1432}
