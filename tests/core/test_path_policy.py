"""The operator's path rules in the core (core/pathpolicy.py; the reference's pathCheck and
pathLookup callbacks, service/OneService.cpp nodePathCheckFunction/nodePathLookupFunction):
blacklisted addresses are never contacted or learned, a new rule drops a live path at once,
ZeroTier is never carried over ZeroTier, and a peer with no direct path is greeted at its
``try`` addresses at most every 30 s (Peer::tryMemorizedPath)."""

from __future__ import annotations

import ipaddress

from tests.core.test_node_behaviour import (
    IDS,
    Forger,
    _contacted,
    _push,
    addr,
    echo,
    events_of,
    inject,
    online,
)
from ztnode.core import events as ev
from ztnode.core.network import Network
from ztnode.core.pathpolicy import TRY_MEMORIZED_PATH_INTERVAL, PathPolicy, PeerHints
from ztnode.testing.world import LocalWorld
from ztnode.wire.constants import Verb
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.netconf import NetworkConfig

net = ipaddress.ip_network


def test_pushed_paths_in_blacklists_are_not_contacted() -> None:
    w, root, a, _ = online(seed=31)
    f = Forger(31)
    root.set_path_policy(
        PathPolicy(
            global_blacklist=(net("10.1.0.0/16"),),
            peers={a.address: PeerHints(blacklist=(net("10.2.0.0/24"),))},
        )
    )
    push = _push("10.1.0.1/9993", "10.2.0.1/9993", "10.2.1.1/9993", "10.3.0.1/9993")
    outs = inject(w, root, f.packet(a, root, Verb.PUSH_DIRECT_PATHS, push), addr(w, a))
    assert {o.remote for o in outs} == {("10.2.1.1", 9993), ("10.3.0.1", 9993)}
    assert not _contacted(outs, "10.1.") and not _contacted(outs, "10.2.0.")


def test_a_new_rule_drops_a_live_path_and_it_is_not_learned_again() -> None:
    w, _root, a, b = online(seed=32)
    assert w.direct(a, b)
    w.net.take_events(a)
    b_ip = addr(w, b)[0]
    a.set_path_policy(PathPolicy(global_blacklist=(net(f"{b_ip}/32"),)))
    peer = a.peer(b.address)
    assert peer is not None and peer.paths == []
    downs = [e for e in events_of(w, a) if isinstance(e, ev.PathDown)]
    assert [(d.address, d.reason) for d in downs] == [(b.address, "refused by local.conf")]
    # Traffic goes on through the root; the address is never a path of a's again.
    assert echo(w, a, b)
    w.run_for(60_000)
    assert echo(w, a, b)
    assert all(s.path.remote[0] != b_ip for s in peer.paths)
    # Lifting the rule lets it back (b keeps greeting a directly).
    a.set_path_policy(PathPolicy())
    assert w.run_until(lambda: w.direct(a, b), 200_000)


def test_try_hints_are_greeted_when_no_direct_path_exists() -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=2, seed=33)
    a, b = w.leaves
    w.net.block(addr(w, a)[0], addr(w, b)[0])
    assert w.run_until(w.all_online, 15_000)
    assert echo(w, a, b)  # through the root
    assert not w.direct(a, b)
    hint = ("10.99.0.7", 9993)
    now = w.net.now

    def hinted() -> bool:
        a.datagrams_to_send(now)
        a.send_echo(b.address, b"x", now)
        return any(o.remote == hint for o in a.datagrams_to_send(now))

    assert not hinted()  # no hints: nothing sent there
    a.set_path_policy(PathPolicy(peers={b.address: PeerHints(try_addresses=(hint,))}))
    assert hinted()
    assert not hinted()  # at most every 30 s
    now += TRY_MEMORIZED_PATH_INTERVAL
    a.handle_timer(now)
    assert hinted()
    # The reference draws a family at random, then an address of it: with two IPv4 hints
    # (and no IPv6 one) both are tried over time, and some intervals try nothing.
    two = (("10.99.0.7", 9993), ("10.99.0.8", 9993))
    a.set_path_policy(PathPolicy(peers={b.address: PeerHints(try_addresses=two)}))
    rounds: list[set[tuple[str, int]]] = []
    for _ in range(24):  # the node's random numbers are seeded: the same draws every run
        now += TRY_MEMORIZED_PATH_INTERVAL
        a.handle_timer(now)
        a.datagrams_to_send(now)
        a.send_echo(b.address, b"x", now)
        rounds.append({o.remote for o in a.datagrams_to_send(now) if o.remote in two})
    assert set().union(*rounds) == set(two)
    assert set() in rounds and all(len(r) <= 1 for r in rounds)


def test_zerotier_over_zerotier_is_refused() -> None:
    _w, _root, a, b = online(seed=34)
    remote = ("10.147.17.9", 9993)
    assert a.should_use_path(b.address, remote)
    joined = Network(0x1234, a.address)
    joined.config = NetworkConfig(
        0x1234, 0, a.address, static_ips=(InetAddress.parse("10.147.17.5/24"),)
    )
    a.networks[0x1234] = joined
    try:
        assert not a.should_use_path(b.address, remote)
        assert a.should_use_path(b.address, ("10.147.18.9", 9993))
    finally:
        del a.networks[0x1234]
