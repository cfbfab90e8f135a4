"""Multicast gathers: a group with no known member is asked for again on every send.

An ARP sent before its target announced its group (a libzt node announces a few seconds after
its network is up) must reach the target once it has, not a whole gather interval later.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from tests.helpers.controller_worlds import World
from ztnode.core import events as ev
from ztnode.core.network import NetworkStatus
from ztnode.core.node import Node
from ztnode.wire.mac import mac_from_address


def test_arp_retried_after_the_owner_subscribes(tmp_path: Path) -> None:
    t = World(tmp_path, members=2)
    a, b = t.members
    for n in (a, b):
        n.join(t.nwid, t.now)
        t.authorize(n)
    assert t.w.run_until(lambda: all(t.status(n) == NetworkStatus.OK for n in (a, b)), 10_000)
    ip_a = next(x for x in t.addresses(a) if x.startswith("10.147.20.")).split("/")[0]
    arp = (
        b"\x00\x01\x08\x00\x06\x04\x00\x01"
        + mac_from_address(b.address, t.nwid).to_bytes(6, "big")
        + bytes(4)
        + bytes(6)
        + ipaddress.IPv4Address(ip_a).packed
    )
    # b asks before a has subscribed: the gather finds nobody (as with a libzt node that
    # announces its ARP group a few seconds after its network is up).
    assert b.send_frame(t.nwid, 0xFFFFFFFFFFFF, 0x0806, arp, t.now)
    t.w.run_for(1_000)
    a.multicast_subscribe(t.nwid, 0xFFFFFFFFFFFF, int(ipaddress.IPv4Address(ip_a)), t.now)
    t.w.run_for(1_000)

    def arrived(n: Node) -> bool:
        return any(
            isinstance(e, ev.FrameReceived) and e.payload == arp for e in t.w.net.events[id(n)]
        )

    # b's stack retries its ARP every second, as ours does; ZeroTierOne's Multicaster gathers again
    # on every send while it knows no member of the group (gs.members.empty()).
    for _ in range(5):
        assert b.send_frame(t.nwid, 0xFFFFFFFFFFFF, 0x0806, arp, t.now)
        if t.w.run_until(lambda: arrived(a), 1_000):
            break
    assert arrived(a), (
        "ARP never reached the owner after it subscribed (next gather only after 60 s)"
    )


def test_a_root_that_is_a_member_answers_gathers_with_itself(tmp_path: Path) -> None:
    """Multicaster::gather puts the answering node first when it subscribes to the group, root
    or not: a root (or a controller that is the planet's root) joined to a network must be
    reachable by ARP like any member."""
    t = World(tmp_path, members=1)
    (b,) = t.members
    root = t.w.roots[0]
    for n in (root, b):
        n.join(t.nwid, t.now)
        t.authorize(n)
    assert t.w.run_until(lambda: all(t.status(n) == NetworkStatus.OK for n in (root, b)), 10_000)
    ip_root = next(x for x in t.addresses(root) if x.startswith("10.147.20.")).split("/")[0]
    group_adi = int(ipaddress.IPv4Address(ip_root))
    root.multicast_subscribe(t.nwid, 0xFFFFFFFFFFFF, group_adi, t.now)
    t.w.run_for(1_000)
    arp = b"arp-for-the-root"
    for _ in range(5):
        assert b.send_frame(t.nwid, 0xFFFFFFFFFFFF, 0x0806, arp, t.now)
        if t.w.run_until(lambda: t.frames(root, arp) > 0, 1_000):
            break
    assert t.frames(root, arp) > 0, "the root never received a multicast for its own group"
