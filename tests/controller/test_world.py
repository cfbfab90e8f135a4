"""The real controller, a root and several members in memory, under virtual time.

Issue 4's behaviours end to end through the wire: private-network authorization and
deauthorization (the member loses access and its peers stop accepting its frames), IP pool
exhaustion, a config change reaching members at once, credentials expiring and refreshing, and a
controller restart with nothing lost.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers.controller_worlds import NETWORK, World
from ztnode.controller import open_controller
from ztnode.core import events as ev
from ztnode.core.network import NetworkStatus, rfc4193_address
from ztnode.core.node import Node
from ztnode.testing.world import seeded_random_bytes
from ztnode.wire.mac import mac_from_address


def test_authorization_then_addresses_pushed_at_once(tmp_path: Path) -> None:
    t = World(tmp_path)
    a = t.members[0]
    a.join(t.nwid, t.now)
    assert t.wait_status(a, NetworkStatus.ACCESS_DENIED)
    t0 = t.now
    t.authorize(a)
    assert t.wait_status(a, NetworkStatus.OK, 5_000)
    assert t.now - t0 < 1_000  # pushed, not picked up at the next 60 s refresh
    member = t.ctl.get_member(t.nwid, a.address)
    ips = member["ipAssignments"]
    assert isinstance(ips, list) and len(ips) == 1
    assert t.addresses(a) == {f"{ips[0]}/24", str(rfc4193_address(t.nwid, a.address))}
    cfg = a.network(t.nwid).config  # type: ignore[union-attr]
    assert cfg is not None and cfg.name == "office" and cfg.com is not None


def test_deauthorized_member_loses_access_and_its_frames(tmp_path: Path) -> None:
    t = World(tmp_path)
    a, b = t.members
    for n in (a, b):
        n.join(t.nwid, t.now)
        t.authorize(n)
    assert t.w.run_until(lambda: all(t.status(n) == NetworkStatus.OK for n in (a, b)), 10_000)
    t.send(a, b, b"before")
    assert t.w.run_until(lambda: t.frames(b, b"before") == 1, 10_000)
    t.authorize(a, False)
    assert t.wait_status(a, NetworkStatus.ACCESS_DENIED, 3_000)
    t.w.run_for(2_000)
    t.send(a, b, b"after")
    t.w.run_for(10_000)
    assert t.frames(b, b"after") == 0
    assert b.counters.drops["not_a_member"] >= 1
    # b still talks to other members: a fresh frame from the host's own member works.
    assert t.status(b) == NetworkStatus.OK


def test_ip_pool_exhaustion_is_handled(tmp_path: Path) -> None:
    tiny = dict(NETWORK)
    tiny["ipAssignmentPools"] = [{"ipRangeStart": "10.147.20.10", "ipRangeEnd": "10.147.20.12"}]
    t = World(tmp_path, members=3, network=tiny)
    for n in t.members:
        n.join(t.nwid, t.now)
        t.authorize(n)
    assert t.w.run_until(lambda: all(t.status(n) == NetworkStatus.OK for n in t.members), 15_000)
    v4 = [[a for a in t.addresses(n) if a.startswith("10.147.20.")] for n in t.members]
    assigned = [x[0] for x in v4 if x]
    # start..end-1 is the usable range (the reference never picks ipRangeEnd): two addresses,
    # three members. Everyone still gets a config; one member simply has no IPv4.
    assert len(assigned) == 2 and len(set(assigned)) == 2
    assert sum(1 for x in v4 if not x) == 1
    assert all(str(rfc4193_address(t.nwid, n.address)) in t.addresses(n) for n in t.members)


def test_config_change_reaches_members_at_once(tmp_path: Path) -> None:
    t = World(tmp_path)
    a, b = t.members
    for n in (a, b):
        n.join(t.nwid, t.now)
        t.authorize(n)
    assert t.w.run_until(lambda: all(t.status(n) == NetworkStatus.OK for n in (a, b)), 10_000)
    t0 = t.now
    t.ctl.update_network(
        t.nwid,
        {
            "name": "renamed",
            "routes": [*NETWORK["routes"], {"target": "10.99.0.0/16", "via": None}],
        },
        t.now,
    )
    t.changed()

    def renamed() -> bool:
        return all(
            (cfg := n.network(t.nwid).config) is not None  # type: ignore[union-attr]
            and cfg.name == "renamed"
            and len(cfg.routes) == 2
            for n in (a, b)
        )

    assert t.w.run_until(renamed, 5_000)
    assert t.now - t0 < 1_000
    # A member's address changed by the operator arrives the same way.
    t.ctl.update_member(t.nwid, a.address, {"ipAssignments": ["10.147.20.99"]}, t.now)
    t.changed()
    assert t.w.run_until(lambda: "10.147.20.99/24" in t.addresses(a), 5_000)
    removed = [e for e in t.w.net.events[id(a)] if isinstance(e, ev.AddressRemoved)]
    assert removed


def test_credentials_expire_and_refresh(tmp_path: Path) -> None:
    t = World(tmp_path)
    a, b = t.members
    for n in (a, b):
        n.join(t.nwid, t.now)
        t.authorize(n)
    assert t.w.run_until(lambda: all(t.status(n) == NetworkStatus.OK for n in (a, b)), 10_000)
    ctmd = b.network(t.nwid).config.credential_time_max_delta  # type: ignore[union-attr]
    # Members keep refreshing (every 60 s), so frames keep flowing across many windows.
    for i in range(4):
        t.w.run_for(ctmd // 2)
        t.send(a, b, b"tick%d" % i)
        assert t.w.run_until(lambda i=i: t.frames(b, b"tick%d" % i) == 1, 10_000)
    # The controller stops answering a (as if a were unreachable from it): a's COM stops being
    # renewed while b's moves on, so once they are more than ctmd apart b refuses a's frames.
    real = t.ctl

    class IgnoresA:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def handle_request(self, member: object, *args: object, **kw: object) -> object:
            if getattr(member, "address", None) == a.address:
                return None
            return real.handle_request(member, *args, **kw)  # type: ignore[arg-type]

    t.host.controller = IgnoresA()  # type: ignore[assignment]
    t.w.run_for(ctmd + 3 * 60_000)
    t.send(a, b, b"stale")
    t.w.run_for(10_000)
    assert t.frames(b, b"stale") == 0
    # Answered again: a's next refresh brings a fresh COM and b accepts its frames again.
    t.host.controller = real
    t.w.run_for(70_000)
    t.send(a, b, b"fresh")
    assert t.w.run_until(lambda: t.frames(b, b"fresh") == 1, 10_000)


def test_controller_restart_loses_nothing(tmp_path: Path) -> None:
    t = World(tmp_path)
    a = t.members[0]
    a.join(t.nwid, t.now)
    t.authorize(a)
    assert t.wait_status(a, NetworkStatus.OK)
    before = t.addresses(a)
    member_before = t.ctl.get_member(t.nwid, a.address)
    network_before = t.ctl.get_network(t.nwid)
    t.ctl.close()
    # A new controller process on the same database.
    t.ctl = open_controller(t.host.identity, tmp_path, seeded_random_bytes(7))
    t.host.controller = t.ctl
    assert t.ctl.get_network(t.nwid) == network_before
    assert t.ctl.get_member(t.nwid, a.address) == member_before
    # The member's next refresh is answered by the restarted controller with the same IPs.
    updates = len([e for e in t.w.net.events[id(a)] if isinstance(e, ev.NetworkConfigUpdated)])
    t.w.run_for(70_000)
    after = [e for e in t.w.net.events[id(a)] if isinstance(e, ev.NetworkConfigUpdated)]
    assert len(after) > updates
    assert t.addresses(a) == before
    assert t.status(a) == NetworkStatus.OK


def test_withdrawn_tag_is_revoked_and_member_stays_in_good_standing(tmp_path: Path) -> None:
    from ztnode.wire.credentials import CredentialType

    t = World(tmp_path)
    a, b = t.members
    for n in (a, b):
        n.join(t.nwid, t.now)
        t.authorize(n)
    t.ctl.update_member(t.nwid, a.address, {"tags": [[7, 1]]}, t.now)
    t.changed()
    assert t.w.run_until(lambda: all(t.status(n) == NetworkStatus.OK for n in (a, b)), 10_000)
    assert t.w.run_until(
        lambda: [g.id for g in a.network(t.nwid).config.tags] == [7],  # type: ignore[union-attr]
        5_000,
    )
    t.send(a, b, b"tagged")
    assert t.w.run_until(lambda: t.frames(b, b"tagged") == 1, 10_000)
    assert 7 in b.network(t.nwid).membership(a.address).tags  # type: ignore[union-attr]
    t.w.run_for(2_000)
    t.ctl.update_member(t.nwid, a.address, {"tags": []}, t.now)
    t.changed()
    held = b.network(t.nwid).membership(a.address)  # type: ignore[union-attr]
    assert t.w.run_until(lambda: (CredentialType.TAG, 7) in held.thresholds, 5_000)
    assert a.network(t.nwid).config.tags == ()  # type: ignore[union-attr]
    # a got a fresh config with the change, so its next frame carries credentials b accepts.
    t.send(a, b, b"still a member")
    assert t.w.run_until(lambda: t.frames(b, b"still a member") == 1, 10_000)


def test_arp_request_reaches_the_member_that_owns_the_address(tmp_path: Path) -> None:
    """Broadcast ARP becomes a multicast to the (ff:ff:ff:ff:ff:ff, target IPv4) group: the
    owner announces it (LIKE), the asker gathers it from the root and controller and sends
    MULTICAST_FRAME only to members of that group."""
    import ipaddress

    t = World(tmp_path, members=3)
    a, b, c = t.members
    for n in (a, b, c):
        n.join(t.nwid, t.now)
        t.authorize(n)
    assert t.w.run_until(lambda: all(t.status(n) == NetworkStatus.OK for n in (a, b, c)), 10_000)
    ip_a = next(x for x in t.addresses(a) if x.startswith("10.147.20.")).split("/")[0]
    adi = int(ipaddress.IPv4Address(ip_a))
    a.multicast_subscribe(t.nwid, 0xFFFFFFFFFFFF, adi, t.now)
    t.w.run_for(1_000)
    arp = (
        b"\x00\x01\x08\x00\x06\x04\x00\x01"
        + mac_from_address(b.address, t.nwid).to_bytes(6, "big")
        + bytes(4)
        + bytes(6)
        + ipaddress.IPv4Address(ip_a).packed
    )
    assert b.send_frame(t.nwid, 0xFFFFFFFFFFFF, 0x0806, arp, t.now)

    def arrived(n: Node) -> bool:
        return any(
            isinstance(e, ev.FrameReceived) and e.payload == arp and e.dest_mac == 0xFFFFFFFFFFFF
            for e in t.w.net.events[id(n)]
        )

    assert t.w.run_until(lambda: arrived(a), 5_000)
    t.w.run_for(2_000)
    assert not arrived(c)  # c never subscribed to that group


def test_broadcast_reaches_every_member(tmp_path: Path) -> None:
    t = World(tmp_path, members=3)
    a, b, c = t.members
    for n in (a, b, c):
        n.join(t.nwid, t.now)
        t.authorize(n)
    assert t.w.run_until(lambda: all(t.status(n) == NetworkStatus.OK for n in (a, b, c)), 10_000)
    t.w.run_for(1_000)
    assert b.send_frame(t.nwid, 0xFFFFFFFFFFFF, 0x88B5, b"to everyone", t.now)
    assert t.w.run_until(
        lambda: t.frames(a, b"to everyone") == 1 == t.frames(c, b"to everyone"), 5_000
    )
    assert t.frames(b, b"to everyone") == 0  # never to ourselves
    # With broadcast disabled in the network, nothing goes out.
    t.ctl.update_network(t.nwid, {"enableBroadcast": False}, t.now)
    t.changed()
    assert t.w.run_until(
        lambda: not b.network(t.nwid).config.enable_broadcast,  # type: ignore[union-attr]
        5_000,
    )
    assert not b.send_frame(t.nwid, 0xFFFFFFFFFFFF, 0x88B5, b"blocked", t.now)
