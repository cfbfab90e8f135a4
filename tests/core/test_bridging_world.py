"""Bridging in an in-memory world (virtual time): our controller marks member c an active
bridge; frames a LAN host (foreign MAC X) sends through c reach a, a's answers go back to c,
multicasts reach the bridge, and nobody but a bridge may speak for a foreign MAC
(node/IncomingPacket.cpp, node/Switch.cpp, node/Multicaster.cpp, protocol-network.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.test_rules_world import ACCEPT, RulesWorld
from ztnode.wire.constants import Verb
from ztnode.wire.mac import BROADCAST_MAC
from ztnode.wire.verbs import ExtFrame, MulticastFrame

pytestmark = pytest.mark.slow

X = 0x02DEADBEEF01  # a host on the LAN behind the bridge
Y = 0x02DEADBEEF02  # a MAC nobody has announced yet
ETH_IPV4 = 0x0800


@pytest.fixture
def world(tmp_path: Path) -> RulesWorld:
    w = RulesWorld(tmp_path, [ACCEPT])
    w.member(w.c, {"activeBridge": True})
    # Every member hears of the new bridge at once (the controller pushes to all).
    assert w.run_until(lambda: _bridges(w.a, w) == [w.c.node.address], 5_000)
    return w


def _bridges(h: object, w: RulesWorld) -> list[int]:
    net = h.node.network(w.nwid)  # type: ignore[attr-defined]
    return net.bridges() if net is not None else []


def _introduce(w: RulesWorld, sender: object, to: object) -> None:
    """The sender's credentials first, as a real sender pushes them before a multicast."""
    net = sender.node.network(w.nwid)  # type: ignore[attr-defined]
    sender.node.credentials.push_credentials(net, to.node.address, w.now)  # type: ignore[attr-defined]
    w.run_until(lambda: False, 500)


def _frames(w: RulesWorld, h: object) -> list[tuple[int, int, bytes]]:
    return [(f.source_mac, f.dest_mac, f.payload) for f in w.frames[h.node.address]]  # type: ignore[attr-defined]


def test_a_lan_host_behind_the_bridge_is_reached_both_ways(world: RulesWorld) -> None:
    w = world
    a, b, c = w.a, w.b, w.c
    a_mac = a.node.network(w.nwid).mac
    # X speaks through c (c's side of the bridge port is not this test's business).
    body = ExtFrame(w.nwid, 0, a_mac, X, ETH_IPV4, b"from the lan").encode()
    c.node.switch.send(a.node.address, Verb.EXT_FRAME, body, w.now)
    assert w.run_until(lambda: (X, a_mac, b"from the lan") in _frames(w, a), 5_000)
    assert a.node.network(w.nwid).bridge_routes.lookup(X, w.now) == c.node.address
    # a answers X: the frame goes to c (learned), as EXT_FRAME, and c hands it to its port.
    assert a.node.send_frame(w.nwid, X, ETH_IPV4, b"to the lan", w.now)
    assert w.run_until(lambda: (a_mac, X, b"to the lan") in _frames(w, c), 5_000)
    assert not any(f[2] == b"to the lan" for f in _frames(w, b))
    # A MAC never seen goes to every active bridge.
    assert a.node.send_frame(w.nwid, Y, ETH_IPV4, b"who has Y", w.now)
    assert w.run_until(lambda: (a_mac, Y, b"who has Y") in _frames(w, c), 5_000)


def test_only_a_bridge_may_speak_for_a_foreign_mac(world: RulesWorld) -> None:
    w = world
    a, b = w.a, w.b
    a_mac = a.node.network(w.nwid).mac
    body = ExtFrame(w.nwid, 0, a_mac, X, ETH_IPV4, b"forged").encode()
    b.node.switch.send(a.node.address, Verb.EXT_FRAME, body, w.now)
    w.run_until(lambda: w.drops(a, "bridging_not_allowed") > 0, 5_000)
    assert w.drops(a, "bridging_not_allowed") == 1
    assert not any(f[2] == b"forged" for f in _frames(w, a))
    assert a.node.network(w.nwid).bridge_routes.lookup(X, w.now) is None
    forged = MulticastFrame.create(
        w.nwid, BROADCAST_MAC, 0, ETH_IPV4, b"forged mc", source_mac=X
    ).encode()
    _introduce(w, b, a)
    b.node.switch.send(a.node.address, Verb.MULTICAST_FRAME, forged, w.now)
    w.run_until(lambda: w.drops(a, "bridging_not_allowed") > 1, 5_000)
    assert w.drops(a, "bridging_not_allowed") == 2


def test_multicasts_reach_the_bridge_and_bridged_multicasts_are_learned(
    world: RulesWorld,
) -> None:
    w = world
    a, c = w.a, w.c
    a_mac = a.node.network(w.nwid).mac
    # A broadcast from a reaches c although c never announced the group: bridges get all.
    assert a.node.send_frame(w.nwid, BROADCAST_MAC, 0x88B5, b"to everyone", w.now)
    assert w.run_until(lambda: (a_mac, BROADCAST_MAC, b"to everyone") in _frames(w, c), 5_000)
    # A broadcast from X through c reaches a, and teaches a where X is.
    bridged = MulticastFrame.create(
        w.nwid, BROADCAST_MAC, 0, 0x88B5, b"lan broadcast", source_mac=X
    ).encode()
    _introduce(w, c, a)
    c.node.switch.send(a.node.address, Verb.MULTICAST_FRAME, bridged, w.now)
    assert w.run_until(lambda: (X, BROADCAST_MAC, b"lan broadcast") in _frames(w, a), 5_000)
    assert a.node.network(w.nwid).bridge_routes.lookup(X, w.now) == c.node.address


def test_no_bridge_means_nowhere_and_a_counted_drop(tmp_path: Path) -> None:
    w = RulesWorld(tmp_path, [ACCEPT])
    a = w.a
    assert not a.node.send_frame(w.nwid, Y, ETH_IPV4, b"lost", w.now)
    assert w.drops(a, "no_bridge") == 1


# --------------------------------------------------------------------- this node as a bridge

LAN_IP = "10.9.9.200"  # host X on the segment bridged through c


def _lan_frames(port_out: list[bytes]) -> list[object]:
    from scapy.layers.l2 import Ether

    return [Ether(f) for f in port_out]


def test_a_segment_bridged_through_c_reaches_a_and_c_itself(world: RulesWorld) -> None:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import ARP, Ether

    from ztnode.errors import LocalProtocolError

    w = world
    a, c = w.a, w.c
    out: list[bytes] = []
    with pytest.raises(LocalProtocolError, match="not an active bridge"):
        a.attach_bridge(w.nwid, out.append)
    port = c.attach_bridge(w.nwid, out.append)
    x_mac = "02:de:ad:be:ef:01"
    a_ip, c_ip = w.ip(a), w.ip(c)

    def from_lan(pkt: object) -> None:
        c.bridge_input(w.nwid, bytes(pkt), w.now)  # type: ignore[call-overload]
        c.flush(w.now)

    # X asks for a's MAC: the broadcast crosses the bridge; a answers X through c.
    from_lan(
        Ether(src=x_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=x_mac, psrc=LAN_IP, pdst=a_ip)
    )

    def arp_reply_from(ip: str) -> bytes | None:
        for f in _lan_frames(out):
            if ARP in f and f[ARP].op == 2 and f[ARP].psrc == ip:  # type: ignore[index]
                return str(f[ARP].hwsrc).encode()  # type: ignore[index]
        return None

    assert w.run_until(lambda: arp_reply_from(a_ip) is not None, 5_000)
    a_mac = arp_reply_from(a_ip)
    assert a_mac is not None
    # X pings a; the reply comes back to the segment.
    from_lan(
        Ether(src=x_mac, dst=a_mac.decode())
        / IP(src=LAN_IP, dst=a_ip)
        / ICMP(type=8, id=7, seq=1)
        / b"lan ping"
    )

    def echo_reply_from(ip: str) -> bool:
        return any(
            IP in f and ICMP in f and f[IP].src == ip and f[ICMP].type == 0  # type: ignore[index]
            for f in _lan_frames(out)
        )

    assert w.run_until(lambda: echo_reply_from(a_ip), 5_000)
    # c's own stack answers X too (not through the network: straight onto the segment).
    from_lan(
        Ether(src=x_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=x_mac, psrc=LAN_IP, pdst=c_ip)
    )
    assert w.run_until(lambda: arp_reply_from(c_ip) is not None, 5_000)
    assert port.counters["from_segment"] == 3 and port.counters["refused"] == 0


def test_a_multicast_frame_asking_for_members_gets_them(tmp_path: Path) -> None:
    """MULTICAST_FRAME's implicit gather (gather limit > 0): the receiver answers
    OK(MULTICAST_FRAME) with members it knows, itself included when it announces the group,
    and the sender learns them (IncomingPacket::_doMULTICAST_FRAME)."""
    from ipaddress import IPv4Address

    w = RulesWorld(tmp_path, [ACCEPT])
    a, b = w.a, w.b
    group = (BROADCAST_MAC, int(IPv4Address(w.ip(a))))  # a's ARP group, which a announces
    frame = MulticastFrame.create(
        w.nwid, BROADCAST_MAC, group[1], 0x0806, bytes(28), gather_limit=8
    ).encode()
    _introduce(w, b, a)
    b.node.switch.send(a.node.address, Verb.MULTICAST_FRAME, frame, w.now)
    net_b = b.node.network(w.nwid)
    assert w.run_until(lambda: a.node.address in net_b.members_of(group, w.now), 5_000)


def test_a_segment_host_with_a_member_looking_mac_is_named_once(
    world: RulesWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """A bridged host whose MAC starts with the network's member octet cannot be reached
    (every member takes it for a member's MAC, as ZeroTierOne does); the port says so once
    per MAC (random TAP and VM MACs collide one time in 64)."""
    from scapy.layers.l2 import ARP, Ether

    from ztnode.wire.mac import first_octet_for_network

    w = world
    port = w.c.attach_bridge(w.nwid, lambda frame: None)
    octet = first_octet_for_network(w.nwid)
    bad = f"{octet:02x}:11:22:33:44:55"
    good = "00:16:3e:11:22:33"  # globally administered: never a member's
    with caplog.at_level("WARNING", logger="ztnode.netstack"):
        for mac in (bad, bad, good):
            frame = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, pdst=LAN_IP)
            w.c.bridge_input(w.nwid, bytes(frame), w.now)
    named = [r for r in caplog.records if "reads as a ZeroTier member" in r.getMessage()]
    assert len(named) == 1 and bad.replace(":", "") in named[0].getMessage()
    assert port.counters["from_segment"] == 3
