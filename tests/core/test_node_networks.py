"""Joining networks, configs over the wire, credentials and the membership gate, in memory.

The controller here is a minimal stand-in (``MiniController``) that implements the node's
``HostedController`` contract directly with the wire codecs, so these tests exercise the node
side alone; ``test_controller_world.py`` runs the real controller.
"""

from __future__ import annotations

import ipaddress

from tests.helpers.controller_worlds import IDS, world_with_controller
from ztnode.core import events as ev
from ztnode.core.controller_iface import ConfigPush
from ztnode.core.network import NetworkStatus, rfc4193_address, sixplane_address
from ztnode.core.node import Node
from ztnode.testing.world import LocalWorld
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.mac import mac_from_address


def statuses(w: LocalWorld, node: Node) -> list[str]:
    return [e.status for e in w.net.events[id(node)] if isinstance(e, ev.NetworkStatusChanged)]


def test_join_authorized_gets_config_and_addresses() -> None:
    w, _ctl_node, ctl, nwid = world_with_controller()
    a = w.leaves[1]
    ctl.authorized.add(a.address)
    a.join(nwid, w.net.now)
    assert w.run_until(lambda: a.network(nwid).status == NetworkStatus.OK, 20_000)  # type: ignore[union-attr]
    net = a.network(nwid)
    assert net is not None and net.config is not None
    assert net.mac == mac_from_address(a.address, nwid)
    added = [e.address for e in w.net.events[id(a)] if isinstance(e, ev.AddressAdded)]
    assert f"10.9.0.{a.address & 0x7F}/24" in added
    assert str(rfc4193_address(nwid, a.address)) in added
    assert statuses(w, a)[-1] == "OK"


def test_unauthorized_is_access_denied_then_authorized_on_refresh() -> None:
    w, _ctl_node, ctl, nwid = world_with_controller()
    a = w.leaves[1]
    a.join(nwid, w.net.now)
    assert w.run_until(
        lambda: a.network(nwid).status == NetworkStatus.ACCESS_DENIED,  # type: ignore[union-attr]
        20_000,
    )
    ctl.authorized.add(a.address)
    # The next periodic refresh (at most 60 s away) brings the config.
    assert w.run_until(lambda: a.network(nwid).status == NetworkStatus.OK, 70_000)  # type: ignore[union-attr]


def test_controller_joins_its_own_network_in_process() -> None:
    w, ctl_node, ctl, nwid = world_with_controller()
    ctl.authorized.add(ctl_node.address)
    ctl_node.join(nwid, w.net.now)
    assert ctl_node.network(nwid).status == NetworkStatus.OK  # type: ignore[union-attr]


def _frames(w: LocalWorld, node: Node) -> list[ev.FrameReceived]:
    return [e for e in w.net.events[id(node)] if isinstance(e, ev.FrameReceived)]


def test_members_exchange_frames_after_credentials_and_deauth_cuts_them_off() -> None:
    w, ctl_node, ctl, nwid = world_with_controller(leaves=2)
    a, b = w.leaves[1], w.leaves[2]
    ctl.authorized |= {a.address, b.address}
    for n in (a, b):
        n.join(nwid, w.net.now)
    assert w.run_until(
        lambda: all(n.network(nwid).status == NetworkStatus.OK for n in (a, b)),  # type: ignore[union-attr]
        20_000,
    )
    # a -> b: the first frame carries a credential push ahead of it; b gates on a's COM.
    assert a.send_frame(nwid, mac_from_address(b.address, nwid), 0x0800, b"hello b", w.net.now)
    assert w.run_until(lambda: any(f.payload == b"hello b" for f in _frames(w, b)), 20_000)
    got = next(f for f in _frames(w, b) if f.payload == b"hello b")
    assert (got.source, got.source_mac) == (a.address, mac_from_address(a.address, nwid))
    # Deauthorize a: the revocation reaches b, which then refuses a's frames.
    ctl.deauthorize(a.address, (a.address, b.address), w.net.now)
    ctl_node.flush_controller(w.net.now)
    w.run_for(2_000)
    assert not b.network(nwid).gate(a.address, a.identity)  # type: ignore[union-attr]
    before = b.counters.drops["not_a_member"]
    a.send_frame(nwid, mac_from_address(b.address, nwid), 0x0800, b"after deauth", w.net.now)
    w.run_for(5_000)
    assert not any(f.payload == b"after deauth" for f in _frames(w, b))
    assert b.counters.drops["not_a_member"] > before
    # a was told at once (no waiting for its next refresh).
    assert a.network(nwid).status == NetworkStatus.ACCESS_DENIED  # type: ignore[union-attr]


def test_non_member_frames_are_refused() -> None:
    w, _ctl_node, ctl, nwid = world_with_controller(leaves=2)
    a, b = w.leaves[1], w.leaves[2]
    ctl.authorized.add(b.address)
    b.join(nwid, w.net.now)
    assert w.run_until(lambda: b.network(nwid).status == NetworkStatus.OK, 20_000)  # type: ignore[union-attr]
    # a never joined: it has no COM, so b must refuse whatever a sends on that network.
    from ztnode.wire.constants import Verb
    from ztnode.wire.verbs import Frame

    a.switch.send(b.address, Verb.FRAME, Frame(nwid, 0x0800, b"intruder").encode(), w.net.now)
    w.run_for(5_000)
    assert not _frames(w, b)
    assert b.counters.drops["not_a_member"] >= 1


def test_pushed_config_change_reaches_member_at_once() -> None:
    w, ctl_node, ctl, nwid = world_with_controller()
    a = w.leaves[1]
    ctl.authorized.add(a.address)
    a.join(nwid, w.net.now)
    assert w.run_until(lambda: a.network(nwid).status == NetworkStatus.OK, 20_000)  # type: ignore[union-attr]
    ident = ctl.identities[a.address]
    cfg = ctl.config_for(ident, w.net.now + 1)
    moved = InetAddress(ipaddress.ip_address("10.9.1.77"), 24)
    from dataclasses import replace

    ctl.pushes.append(ConfigPush(a.address, replace(cfg, static_ips=(moved,), revision=2)))
    ctl_node.flush_controller(w.net.now)
    t0 = w.net.now
    assert w.run_until(
        lambda: any(
            isinstance(e, ev.AddressAdded) and e.address == "10.9.1.77/24"
            for e in w.net.events[id(a)]
        ),
        5_000,
    )
    assert w.net.now - t0 < 1_000  # pushed, not waiting for the 60 s refresh
    assert a.network(nwid).config.revision == 2  # type: ignore[union-attr]


def test_adhoc_networks_are_configured_locally() -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=1)
    a = w.leaves[0]
    ports = 0xFF_0050_0050_000000  # ff | 0x0050 .. 0x0050 | 000000 (port 80 only)
    net = a.join(ports, w.net.now)
    assert net.status == NetworkStatus.OK and net.config is not None
    assert [str(x) for x in net.assigned_addresses()] == [str(sixplane_address(ports, a.address))]
    assert net.config.name == "adhoc-0050-0050"
    hub = 0xFF0A_0000000000_01
    net2 = a.join(hub, w.net.now)
    assert net2.config is not None and net2.config.multicast_limit == 1024
    assert f"10.{(a.address >> 16) & 0xFF}.{(a.address >> 8) & 0xFF}.{a.address & 0xFF}/8" in [
        str(x) for x in net2.assigned_addresses()
    ]
    bad = a.join(0xFF_0050_0010_000000, w.net.now)  # end < start
    assert bad.status == NetworkStatus.NOT_FOUND
    assert a.leave(ports) and a.network(ports) is None


def test_network_ids_that_no_controller_serves() -> None:
    w, ctl_node, ctl, nwid = world_with_controller()
    a = w.leaves[1]
    other = (ctl_node.address << 24) | 0x77  # ctl serves only 0x42
    ctl.network_id = nwid
    a.join(other, w.net.now)
    # MiniController answers OBJ_NOT_FOUND for networks it does not serve? It is never asked:
    # serves() is False, so the node stays silent and the member keeps requesting.
    w.run_for(20_000)
    assert a.network(other).status == NetworkStatus.REQUESTING_CONFIGURATION  # type: ignore[union-attr]
    # A node without any controller answers UNSUPPORTED_OPERATION: NOT_FOUND.
    nobody = (w.roots[0].address << 24) | 0x1
    a.join(nobody, w.net.now)
    assert w.run_until(lambda: a.network(nobody).status == NetworkStatus.NOT_FOUND, 20_000)  # type: ignore[union-attr]
