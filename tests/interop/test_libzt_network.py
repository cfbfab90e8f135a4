"""VL2 against a real ZeroTier 1.8.4 core (libzt): our controller, a private network, two members.

One namespace (layout "single": every node on 192.168.217.1 with its own port) holds:

* our **root and controller**: one ``ztnode node --controller`` subprocess, the planet's only
  root, which also serves the network (its id starts with the root's address);
* a **libzt** node (``tests/interop/libzt_worker.py``);
* our **leaf**: an in-process :class:`~ztnode.transport.service.NodeService` on a socket that
  lives in the namespace.

Everything the test does to the network goes through the controller's HTTP API (ZeroTierOne's
``/controller/...`` routes, token in ``X-ZT1-Auth``), over TCP sockets opened inside the
namespace. libzt is observed two ways (see ``LibztWorker.network``): the wrapper's view
(``zts_net_get_status``, ``zts_addr_get_all``) and the ZeroTier core's own
(``ZT_Node_networkConfig``). In libzt 1.8.4 only the core's status ever shows ACCESS_DENIED: the
core records the controller's ERROR without a config callback, and the wrapper's status is a copy
taken at config callbacks. So statuses are asserted on the core, addresses on both.

"The same membership" is shown three ways: the controller lists both members authorised with
distinct addresses; both nodes hold the same config (name, revision, routes, type); and each
holds the other's certificate of membership. For the last, our leaf sends libzt an ARP request
for libzt's IPv4 (a unicast FRAME, preceded by our credentials); libzt's IP stack answers with an
ARP reply, before which the libzt core pushes its own COM to us. No IPv6 traffic is sent, so
libzt's IPv6 receive crash (LIBZT_PEER.md) cannot arise; libzt gets no retries here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from tests.interop.conftest import need_root
from tests.interop.netns import NetNamespace
from tests.interop.peer import LibztPeer
from tests.interop.world import ControllerProcess, HttpApi, make_planet
from ztnode.core import events as ev
from ztnode.core.network import NetworkStatus, rfc4193_address, sixplane_address
from ztnode.transport.localapi import network_json
from ztnode.transport.service import NodeService, ServiceConfig
from ztnode.wire.mac import mac_from_address
from ztnode.wire.world import World

IDS = test_identities()
P_LIBZT, P_LEAF = 29984, 29985
IDENTITY_GATE = 2.2  # s; a 1.x root validates one new identity per 2 s per source /24
PUSH_WAIT = 5.0  # s; a pushed change must reach a running member well within this
ETH_ARP = 0x0806

ROUTE = {"target": "10.147.20.0/24", "via": None}
EXTRA_ROUTE = {"target": "10.201.0.0/16", "via": "10.147.20.1"}  # via a member: not on-link
NETWORK: dict[str, Any] = {
    "name": "libzt-interop",
    "private": True,
    "v4AssignMode": {"zt": True},
    "v6AssignMode": {"rfc4193": True, "6plane": True, "zt": False},
    "ipAssignmentPools": [{"ipRangeStart": "10.147.20.1", "ipRangeEnd": "10.147.20.254"}],
    "routes": [ROUTE],
}
MOVE_TO = ("10.147.20.77", "10.147.20.78", "10.147.20.79")  # libzt's next IPv4 (inside ROUTE)


# ------------------------------------------------------------------------------ helpers


def expected_addresses(nwid: int, address: int, ipv4: list[str], bits: int = 24) -> set[str]:
    """What a member of this network must hold: its IPv4 assignments (with the bits of the route
    that covers them), its rfc4193 and its 6plane address."""
    out = {f"{ip}/{bits}" for ip in ipv4}
    out.add(str(rfc4193_address(nwid, address)))
    out.add(str(sixplane_address(nwid, address)))
    return out


def plain(cidrs: set[str]) -> set[str]:
    return {c.split("/")[0] for c in cidrs}


def arp_request(sha: int, spa: str, tpa: str) -> bytes:
    """An Ethernet ARP request (who has ``tpa``? tell ``spa`` at ``sha``), without the MACs."""
    return (
        bytes.fromhex("0001 0800 06 04 0001".replace(" ", ""))
        + sha.to_bytes(6, "big")
        + ipaddress.IPv4Address(spa).packed
        + bytes(6)
        + ipaddress.IPv4Address(tpa).packed
    )


def our_routes(node_net: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    return sorted(((r["target"], r["via"]) for r in node_net["routes"]), key=str)


def libzt_routes(core: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    return sorted(((r["target"], r["via"]) for r in core["routes"]), key=str)


async def _until(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(step)
    return cond()


class LibztView:
    """Polls the libzt worker (off the event loop) and keeps the latest answer."""

    def __init__(self, lz: LibztPeer, nwid: str) -> None:
        self.lz = lz
        self.nwid = nwid
        self.last: dict[str, Any] = {}
        self.statuses: list[tuple[float, str, str | None]] = []  # (t, wrapper, core)

    async def poll(self) -> dict[str, Any]:
        st = await asyncio.to_thread(self.lz.call, "network", 10, nwid=self.nwid)
        self.last = st
        core = st.get("core") or {}
        entry = (time.monotonic(), st["status"], core.get("status"))
        if not self.statuses or self.statuses[-1][1:] != entry[1:]:
            self.statuses.append(entry)
        return st

    async def until(self, cond: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            st = await self.poll()
            if cond(st):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)


def core_status(st: dict[str, Any]) -> str | None:
    core = st.get("core")
    return core.get("status") if core else None


# ------------------------------------------------------------------------------ the test


def test_libzt_member_of_our_private_network(libzt_installed: None, tmp_path: Path) -> None:
    need_root()
    t0 = time.monotonic()
    root_id, leaf_id = IDS[0], IDS[1]
    with NetNamespace() as ns:
        ip = ns.addresses[0]
        planet = make_planet(root_id, ip)
        planet_file = tmp_path / "planet"
        planet_file.write_bytes(planet.to_bytes())
        root_home = tmp_path / "root"
        root_home.mkdir()
        root_id.save(root_home / "identity.secret", include_private=True)
        leaf_home = tmp_path / "leaf"
        leaf_home.mkdir()
        leaf_id.save(leaf_home / "identity.secret", include_private=True)
        lz_home = tmp_path / "libzt"
        lz_home.mkdir()

        root = ControllerProcess(ns, root_home, planet_file, ip)
        try:
            api = root.wait_ready(20)
            with LibztPeer(netns=ns.name) as lz:
                asyncio.run(_scenario(ns, ip, planet, leaf_home, lz_home, lz, root, api, t0))
        finally:
            root.stop()
    print(f"total {time.monotonic() - t0:.1f} s")


async def _scenario(
    ns: NetNamespace,
    ip: str,
    planet: World,
    leaf_home: Path,
    lz_home: Path,
    lz: LibztPeer,
    root: ControllerProcess,
    api: HttpApi,
    t0: float,
) -> None:
    marks: dict[str, float] = {}

    def mark(what: str) -> None:
        marks[what] = round(time.monotonic() - t0, 1)

    # 1. The network, through the controller's API.
    created = await api.acall("POST", "/controller/network", NETWORK)
    nwid_hex: str = created["id"]
    nwid = int(nwid_hex, 16)
    assert nwid >> 24 == IDS[0].address and created["private"] is True
    mark("network created")

    # 2. libzt starts and joins at once (the core asks for a config at its next 5 s tick).
    await asyncio.to_thread(
        lz.call,
        "start",
        30,
        storage=str(lz_home),
        planet=planet.to_bytes().hex(),
        port=P_LIBZT,
        blacklist_if=[],
    )
    view = LibztView(lz, nwid_hex)
    await asyncio.to_thread(lz.call, "join", 30, nwid=nwid_hex)
    mark("libzt joined")

    # Our leaf starts once the root's identity gate for this /24 has reopened after libzt's
    # HELLO (libzt writes its identity, then HELLOs at once), so neither waits a 5 s retry.
    ident_file = lz_home / "identity.public"
    await _until(ident_file.exists, 20, 0.02)
    await asyncio.sleep(IDENTITY_GATE)
    sock = ns.socket(bind=(ip, P_LEAF))
    service = NodeService(ServiceConfig(home=leaf_home, planet=planet, sockets=(sock,)))
    events: list[ev.Event] = []
    try:
        node = await service.start()
    except BaseException:
        sock.close()
        raise
    service.subscribe(events.append)
    # The leaf's IP stack consumes the frames it receives; a tap shows them to the test too.
    assert service.host is not None
    service.host.frame_taps.setdefault(nwid, []).append(events.append)
    leaf_addr = node.address
    leaf_hex = f"{leaf_addr:010x}"

    async def members() -> dict[str, dict[str, Any]]:
        ids = await api.acall("GET", f"/controller/network/{nwid_hex}/member")
        return {
            a: await api.acall("GET", f"/controller/network/{nwid_hex}/member/{a}") for a in ids
        }

    def report(what: str) -> str:
        net = node.network(nwid)
        lines = [
            what,
            f"elapsed {time.monotonic() - t0:.1f} s; marks {marks}",
            f"libzt statuses {[(round(t - t0, 1), w, c) for t, w, c in view.statuses]}",
            f"libzt last {json.dumps(view.last)}",
            f"leaf network {json.dumps(network_json(net)) if net else None}",
            f"leaf counters {json.dumps(node.counters.as_dict())}",
            "leaf events: " + ", ".join(type(e).__name__ for e in events[-40:]),
            "root log:",
            root.log_text(),
        ]
        return "\n".join(lines)

    try:
        # The leaf is authorised ahead of its first request (a member record made by the API).
        await api.acall(
            "POST", f"/controller/network/{nwid_hex}/member/{leaf_hex}", {"authorized": True}
        )
        service.join(nwid)

        # 2b. libzt online; the controller denies its request: the core says ACCESS_DENIED.
        ok = await view.until(lambda st: core_status(st) == "ACCESS_DENIED", 30)
        assert ok, report("libzt never reported ACCESS_DENIED before authorisation")
        mark("libzt denied")
        st_status = await asyncio.to_thread(lz.call, "status", 10)
        lz_hex: str = st_status["address"]
        lz_addr = int(lz_hex, 16)
        member = await api.acall("GET", f"/controller/network/{nwid_hex}/member/{lz_hex}")
        assert member["authorized"] is False and member["ipAssignments"] == []
        # The wrapper saw no config and no failure callback: it still says "requesting".
        assert view.last["status"] == "REQUESTING_CONFIGURATION", report("wrapper status")
        assert view.last["addresses"] == []

        # 3. Authorise it: the controller pushes the config at once.
        t_auth = time.monotonic()
        await api.acall(
            "POST", f"/controller/network/{nwid_hex}/member/{lz_hex}", {"authorized": True}
        )
        ok = await view.until(
            lambda st: st["status"] == "OK" and core_status(st) == "OK" and st["addresses"] != [],
            PUSH_WAIT,
        )
        assert ok, report("libzt not OK after authorisation")
        dt_auth = time.monotonic() - t_auth
        mark("libzt OK")
        member = await api.acall("GET", f"/controller/network/{nwid_hex}/member/{lz_hex}")
        assert member["authorized"] is True and len(member["ipAssignments"]) == 1
        lz_v4 = member["ipAssignments"]
        want = expected_addresses(nwid, lz_addr, lz_v4)
        # Transport readiness and the address set can lag the status by one callback.
        ok = await view.until(
            lambda st: set(st["cidrs"]) == want and set(st["core"]["addresses"]) == want, 2
        )
        st = view.last
        assert set(st["addresses"]) == plain(want), report("libzt addresses != controller's")
        assert len(st["addresses"]) == 3
        assert set(st["cidrs"]) == want and set(st["core"]["addresses"]) == want, report("bits")
        core = st["core"]
        assert core["name"] == NETWORK["name"] and core["type"] == "PRIVATE"
        assert libzt_routes(core) == [("10.147.20.0/24", None)], report("libzt routes")
        assert core["mac"] == f"{mac_from_address(lz_addr, nwid):012x}"

        # 5a. Our leaf: OK with its own assignment (it asked as soon as it had joined).
        def leaf_ok() -> bool:
            net = node.network(nwid)
            return net is not None and net.status == NetworkStatus.OK

        assert await _until(leaf_ok, 20), report("our leaf never got its config")
        mark("leaf OK")
        net = node.network(nwid)
        assert net is not None and net.config is not None
        ctl_members = await members()
        assert set(ctl_members) == {lz_hex, leaf_hex}, report("controller's member list")
        leaf_v4 = ctl_members[leaf_hex]["ipAssignments"]
        assert ctl_members[leaf_hex]["authorized"] is True and len(leaf_v4) == 1
        assert set(leaf_v4).isdisjoint(lz_v4), report("both members got the same IPv4")
        ours = {str(a) for a in net.assigned_addresses()}
        assert ours == expected_addresses(nwid, leaf_addr, leaf_v4), report("leaf addresses")

        # 4. Changes while both run: libzt's IPv4 moves, and the network gains a route.
        moved_ip = next(a for a in MOVE_TO if a not in (*lz_v4, *leaf_v4))
        t_move = time.monotonic()
        await api.acall(
            "POST",
            f"/controller/network/{nwid_hex}/member/{lz_hex}",
            {"ipAssignments": [moved_ip]},
        )
        want = expected_addresses(nwid, lz_addr, [moved_ip])
        ok = await view.until(
            lambda st: set(st["cidrs"]) == want and set(st["core"]["addresses"]) == want,
            PUSH_WAIT,
        )
        assert ok, report("libzt's address change did not arrive")
        assert set(view.last["addresses"]) == plain(want)
        dt_move = time.monotonic() - t_move
        mark("libzt moved")

        t_route = time.monotonic()
        changed = await api.acall(
            "POST",
            f"/controller/network/{nwid_hex}",
            {"routes": [ROUTE, EXTRA_ROUTE]},
        )
        want_routes = [("10.147.20.0/24", None), (EXTRA_ROUTE["target"], EXTRA_ROUTE["via"])]
        ok = await view.until(lambda st: libzt_routes(st["core"]) == want_routes, PUSH_WAIT)
        assert ok, report("libzt's routes did not change")
        dt_route = time.monotonic() - t_route
        assert view.last["core"]["revision"] == changed["revision"]
        mark("libzt rerouted")

        def leaf_rerouted() -> bool:
            n = node.network(nwid)
            return (
                n is not None and n.config is not None and n.config.revision == changed["revision"]
            )

        assert await _until(leaf_rerouted, PUSH_WAIT), report("our leaf missed the route change")

        # 5b. The same config on both sides: name, revision, type, routes.
        ours_json = network_json(net)
        core = view.last["core"]
        assert (ours_json["name"], ours_json["netconfRevision"], ours_json["type"]) == (
            core["name"],
            core["revision"],
            core["type"],
        ), report("the two members hold different configs")
        assert our_routes(ours_json) == libzt_routes(core) == want_routes
        assert ours_json["status"] == core["status"] == "OK"

        # 5c. Each holds the other's COM. Our leaf asks (ARP) who has libzt's new address; the
        # FRAME goes with our credentials, and libzt's IP stack answers only if its core admitted
        # it; libzt's core pushes its own COM before its answer, and our gate checks it.
        leaf_ip = leaf_v4[0]
        lz_mac = mac_from_address(lz_addr, nwid)
        arp = arp_request(net.mac, leaf_ip, moved_ip)

        def arp_reply() -> ev.FrameReceived | None:
            for e in events:
                if (
                    isinstance(e, ev.FrameReceived)
                    and e.source == lz_addr
                    and e.ethertype == ETH_ARP
                    and len(e.payload) >= 28
                    and e.payload[6:8] == b"\x00\x02"  # an ARP reply...
                    and e.payload[14:18] == ipaddress.IPv4Address(moved_ip).packed  # ...for it
                ):
                    return e
            return None

        # One request every second, as an IP stack retries ARP: the first FRAME can be lost.
        # libzt learns our identity by WHOIS and then replays the packets it had queued for
        # us in the order of its receive ring's slots, not of arrival; when our FRAME comes
        # out before our credentials it answers ERROR(NEED_MEMBERSHIP_CERTIFICATE), our node
        # pushes the credentials again (as the reference does) and the next request passes.
        t_arp = time.monotonic()
        deadline = t_arp + 15
        sent = 0
        while arp_reply() is None and time.monotonic() < deadline:
            assert service.call(lambda n, now: n.send_frame(nwid, lz_mac, ETH_ARP, arp, now))
            sent += 1
            await _until(lambda: arp_reply() is not None, 1.0)
        reply = arp_reply()
        assert reply is not None, report(f"libzt never answered {sent} ARP requests")
        dt_arp = time.monotonic() - t_arp
        mark("ARP answered")
        assert reply.dest_mac == net.mac and reply.source_mac == lz_mac
        assert reply.payload[8:14] == lz_mac.to_bytes(6, "big")  # "moved_ip is at" libzt
        assert (
            reply.payload[18:28]
            == net.mac.to_bytes(6, "big") + ipaddress.IPv4Address(leaf_ip).packed
        )
        lz_com = net.memberships[lz_addr].com if lz_addr in net.memberships else None
        assert lz_com is not None and lz_com.issued_to == lz_addr, report("no COM from libzt")
        lz_peer = node.peer(lz_addr)
        assert lz_peer is not None and net.gate(lz_addr, lz_peer.identity)
        assert node.counters.drops["mac_failed"] == 0

        # 6. Deauthorise libzt: it is revoked everywhere and told ACCESS_DENIED at once.
        t_deauth = time.monotonic()
        await api.acall(
            "POST", f"/controller/network/{nwid_hex}/member/{lz_hex}", {"authorized": False}
        )
        ok = await view.until(lambda st: core_status(st) == "ACCESS_DENIED", PUSH_WAIT)
        assert ok, report("libzt not ACCESS_DENIED after deauthorisation")
        dt_deauth = time.monotonic() - t_deauth
        mark("libzt denied again")
        # Our leaf applied the revocation: libzt's COM no longer opens its gate.
        assert await _until(
            lambda: not net.gate(lz_addr, lz_peer.identity),
            PUSH_WAIT,
        ), report("our leaf still admits libzt")
        ctl_members = await members()
        assert ctl_members[lz_hex]["authorized"] is False
        assert ctl_members[leaf_hex]["authorized"] is True
        assert net.status == NetworkStatus.OK

        print(
            f"libzt {lz_hex}, leaf {leaf_hex}, network {nwid_hex}; marks {marks}; "
            f"OK {dt_auth:.2f} s after authorisation, address moved in {dt_move:.2f} s, "
            f"route in {dt_route:.2f} s, ARP answered after {dt_arp:.2f} s ({sent} sent), "
            f"ACCESS_DENIED {dt_deauth:.2f} s after deauthorisation; "
            f"libzt statuses {[(round(t - t0, 1), w, c) for t, w, c in view.statuses]}"
        )
    finally:
        await service.stop()


if __name__ == "__main__":  # pragma: no cover - manual runs
    sys.exit(pytest.main([__file__, "-s", "-q"]))
