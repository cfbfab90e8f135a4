"""Every ``ztnode`` node command, text and ``-j``, against running nodes, with zerotier-cli parity.

A root process that is also the controller and the root of a moon, and a member process, run on
loopback (the helpers of ``tests/cli/test_cli_networks.py``); a third member runs in this process
(the asyncio ``Node`` on a thread of its own) to ping the member over the network. Each of
``info``, ``peers``, ``listpeers``, ``networks``, ``listnetworks``, ``join``, ``leave``, ``set``,
``listmoons``, ``orbit``, ``deorbit`` and ``metrics`` runs with and without ``-j``: the text is
zerotier-cli's format (one.cpp), the JSON parses and carries ZeroTierOne's field names with
their JSON types (the lists below, from service/OneService.cpp), and the commands do what they
say: ``set NWID allowManaged=0`` takes the member's addresses out of its IP stack (the other
member's pings go unanswered) and ``allowManaged=1`` puts them back, across a restart too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.helpers.metrics import check_zerotier_names, parse, value
from tests.helpers.processes import (
    CTL_HEX,
    CTL_ID,
    IDS,
    MEMBER_HEX,
    MEMBER_ID,
    NETWORK_FIELDS,
    cli,
    cli_json,
    create_network,
    free_udp_port,
    node,
    status,
    wait_for,
    write_planet,
)
from ztnode.identity import Identity
from ztnode.sockets.aio import Node

pytestmark = pytest.mark.e2e  # starts processes or uses real sockets (loopback only)

T = TypeVar("T")
PEER_ID = IDS[2]
JsonType = type | tuple[type, ...]

# --- ZeroTierOne's JSON, service/OneService.cpp ----------------------------------------------
# /status (statusGet)
STATUS_FIELDS: dict[str, JsonType] = {
    "address": str,
    "publicIdentity": str,
    "online": bool,
    "tcpFallbackActive": bool,
    "versionMajor": int,
    "versionMinor": int,
    "versionRev": int,
    "versionBuild": int,
    "version": str,
    "clock": int,
    "config": dict,
    "planetWorldId": int,
    "planetWorldTimestamp": int,
}
# /status config.settings
STATUS_SETTINGS_FIELDS: dict[str, JsonType] = {
    "allowTcpFallbackRelay": bool,
    "forceTcpRelay": bool,
    "primaryPort": int,
    "secondaryPort": int,
    "tertiaryPort": int,
    "homeDir": str,
    "listeningOn": list,
    "surfaceAddresses": list,
    "portMappingEnabled": bool,
    "softwareUpdate": str,
    "softwareUpdateChannel": str,
}
# /peer (_peerToJson; the bond fields only for bonded peers)
PEER_FIELDS: dict[str, JsonType] = {
    "address": str,
    "versionMajor": int,
    "versionMinor": int,
    "versionRev": int,
    "version": str,
    "latency": int,
    "role": str,
    "isBonded": bool,
    "tunneled": bool,
    "paths": list,
}
PEER_PATH_FIELDS: dict[str, JsonType] = {
    "address": str,
    "lastSend": int,
    "lastReceive": int,
    "trustedPathId": int,
    "active": bool,
    "expired": bool,
    "preferred": bool,
    "localSocket": int,
    "localPort": int,
}
# /network (_networkToJson; the SSO fields only for SSO networks): NETWORK_FIELDS, shared with
# tests/cli/test_cli_networks.py.
NETWORK_ROUTE_FIELDS = {"target", "via", "flags", "metric"}
NETWORK_MULTICAST_FIELDS = {"mac", "adi"}
# /moon (_moonToJson) and the answer to an orbit whose moon has not arrived (moonPost)
MOON_FIELDS: dict[str, JsonType] = {
    "id": str,
    "timestamp": int,
    "signature": str,
    "updatesMustBeSignedBy": str,
    "roots": list,
    "waiting": bool,
}
WAITING_MOON_FIELDS: dict[str, JsonType] = MOON_FIELDS | {
    "signature": type(None),
    "updatesMustBeSignedBy": type(None),
}
MOON_ROOT_FIELDS: dict[str, JsonType] = {"identity": str, "stableEndpoints": list}
# DELETE /network/<nwid> and DELETE /moon/<id>
RESULT = {"result": True}


def assert_fields(obj: Any, fields: dict[str, JsonType], what: str) -> None:
    """Every ZeroTierOne field is there with ZeroTierOne's JSON type (ints are not bools)."""
    assert isinstance(obj, dict), (what, obj)
    for key, kind in fields.items():
        assert key in obj, f"{what}: no {key!r} in {sorted(obj)}"
        v = obj[key]
        assert isinstance(v, kind), f"{what}.{key} = {v!r}, ZeroTierOne gives {kind}"
        if kind is int:
            assert not isinstance(v, bool), f"{what}.{key} = {v!r}"


def assert_status(st: Any) -> None:
    assert_fields(st, STATUS_FIELDS, "/status")
    assert_fields(st["config"]["settings"], STATUS_SETTINGS_FIELDS, "/status config.settings")


def assert_peer(p: Any) -> None:
    assert_fields(p, PEER_FIELDS, "/peer")
    for path in p["paths"]:
        assert_fields(path, PEER_PATH_FIELDS, "/peer paths")


def assert_network(n: Any) -> None:
    assert_fields(n, NETWORK_FIELDS, "/network")
    for r in n["routes"]:
        assert set(r) == NETWORK_ROUTE_FIELDS, r
    for m in n["multicastSubscriptions"]:
        assert set(m) == NETWORK_MULTICAST_FIELDS, m
        assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", m["mac"]) and isinstance(m["adi"], int)
    assert set(n["dns"]) == {"domain", "servers"}
    assert all(isinstance(a, str) for a in n["assignedAddresses"])


def assert_moon(m: Any, *, waiting: bool = False) -> None:
    assert_fields(m, WAITING_MOON_FIELDS if waiting else MOON_FIELDS, "/moon")
    assert m["waiting"] is waiting
    assert re.fullmatch(r"[0-9a-f]{16}", m["id"])
    for r in m["roots"]:
        assert_fields(r, MOON_ROOT_FIELDS, "/moon roots")


def udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ok(*args: str) -> str:
    """Run the CLI; it must succeed; its stdout."""
    r = cli(*args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    return r.stdout


def usage_error(*args: str) -> str:
    """Run the CLI; it must refuse with exit 2 and one line on stderr; that line."""
    r = cli(*args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == "", (r.stdout, r.stderr)
    return r.stderr


# --- a member in this process ------------------------------------------------------------------


class ThreadNode:
    """An asyncio ``Node`` on an event loop of its own thread, driven from the test."""

    def __init__(self, home: Path, planet: Path, ident: Identity) -> None:
        home.mkdir()
        ident.save(home / "identity.secret", include_private=True)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> Node:
            n = Node(home, planet=str(planet), allow_loopback=True, bind=("127.0.0.1",))
            n.service.config.validate_in_process_pool = False  # no fork from a threaded test
            return await n.start()

        self.node = self.run(start())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def pings(self, nwid: str, ip: str, tries: int = 3) -> bool:
        """Whether ``ip`` answers one of ``tries`` pings sent over network ``nwid``."""

        async def ping() -> bool:
            net = self.node.network(nwid)
            assert net is not None
            for _ in range(tries):
                try:
                    await net.ping(ip, timeout=1.0)
                    return True
                except TimeoutError:
                    continue
            return False

        return self.run(ping())

    def close(self) -> None:
        try:
            self.run(self.node.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


@contextlib.contextmanager
def thread_node(home: Path, planet: Path, ident: Identity) -> Iterator[ThreadNode]:
    tn = ThreadNode(home, planet, ident)
    try:
        yield tn
    finally:
        tn.close()


# --- the test -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_cli_command_against_running_nodes(tmp_path: Path) -> None:
    port = member_port = free_udp_port()
    while member_port == port:
        member_port = free_udp_port()
    planet = tmp_path / "planet"
    write_planet(planet, CTL_ID, port)
    # A moon whose root is the controller's node, made with the CLI and installed in its home.
    moon_file = tmp_path / "moon"
    ok(
        "world", "make", "--type", "moon", "--root",
        f"{CTL_ID.public().to_string()}=127.0.0.1/{port}",
        "--signing-key", str(tmp_path / "moon.key"), "--out", str(moon_file),
    )  # fmt: skip
    moon_id = CTL_ID.address
    moon16 = f"{moon_id:016x}"
    (tmp_path / "ctl" / "moons.d").mkdir(parents=True)
    (tmp_path / "ctl" / "moons.d" / f"{moon16}.moon").write_bytes(moon_file.read_bytes())

    with node(tmp_path / "ctl", planet, CTL_ID, port, controller=True) as ctl:
        with node(tmp_path / "member", planet, MEMBER_ID, member_port) as member:
            h = member.h
            wait_for(lambda: cli_json("info", *h)["online"], 15, "the member to come online")

            # info ------------------------------------------------------------------------------
            info = cli_json("info", *h)
            assert_status(info)
            assert info["address"] == MEMBER_HEX and info["online"] is True
            assert ok("info", *h).splitlines() == [
                f"200 info {MEMBER_HEX} {info['version']} ONLINE"
            ]
            # zerotier-cli's switches before the command, values attached (one.cpp cli()),
            # and a path for a command: the raw GET, its body as sent; 404 -> "404 PATH BODY".
            token = (member.home / "authtoken.secret").read_text().strip()
            switches = (f"-D{member.home}", f"-p{member.api_port}", "-H127.0.0.1", f"-T{token}")
            assert ok(*switches, "info").startswith(f"200 info {MEMBER_HEX} ")
            assert json.loads(ok(f"-D{member.home}", "-j", "/status"))["address"] == MEMBER_HEX
            missing = cli(f"-D{member.home}", "/nothing/here")
            assert missing.returncode == 1 and missing.stdout.startswith("404 /nothing/here {")
            refused = cli(f"-p{member.api_port}", "-Twrong", "-D/nonexistent", "/status")
            assert refused.returncode == 1 and refused.stdout.startswith("401 /status ")

            # peers, listpeers ------------------------------------------------------------------
            peers = cli_json("peers", *h)
            for p in peers:
                assert_peer(p)
            root = next(p for p in peers if p["address"] == CTL_HEX)
            assert root["role"] == "PLANET" and root["versionMajor"] == 1
            listed = cli_json("listpeers", *h)  # the same /peer JSON, as zerotier-cli -j prints
            for p in listed:
                assert_peer(p)
            assert {p["address"] for p in listed} == {p["address"] for p in peers}
            lines = ok("peers", *h).splitlines()
            assert lines[:2] == [
                "200 peers",
                "<ztaddr>   <ver>  <role> <lat> <link>   <lastTX> <lastRX> <path>",
            ]
            row = next(x for x in lines[2:] if x.startswith(CTL_HEX))
            assert re.fullmatch(
                rf"{CTL_HEX} {re.escape(root['version'])} +PLANET +-?\d+ DIRECT   "
                rf"\d+ +\d+ +127\.0\.0\.1/{port}",
                row,
            ), row
            lines = ok("listpeers", *h).splitlines()
            assert lines[0] == "200 listpeers <ztaddr> <path> <latency> <version> <role>"
            row = next(x for x in lines[1:] if f" {CTL_HEX} " in x)
            assert re.fullmatch(
                rf"200 listpeers {CTL_HEX} 127\.0\.0\.1/{port};\d+;\d+ -?\d+ "
                rf"{re.escape(root['version'])} PLANET",
                row,
            ), row

            # join, networks, listnetworks --------------------------------------------------------
            nwid = create_network(ctl, "parity")
            assert ok("join", nwid, *h).startswith("200 join OK")
            ok("controller", "member", "authorize", nwid, MEMBER_HEX, *ctl.h)
            wait_for(lambda: status(member, nwid) == "OK", 10, "the member's network to be OK")
            nets = cli_json("networks", *h)
            assert cli_json("listnetworks", *h) == nets
            (net,) = nets
            assert_network(net)
            assert net["nwid"] == nwid and net["status"] == "OK"
            assert (
                net["allowManaged"],
                net["allowGlobal"],
                net["allowDefault"],
                net["allowDNS"],
            ) == (
                True,
                False,
                False,
                False,
            )
            assigned = net["assignedAddresses"]
            assert len(assigned) == 2 and sorted(net["stackAddresses"]) == sorted(assigned)
            assert net["multicastSubscriptions"]  # ARP and NDP groups of the stack's addresses
            text = ok("networks", *h)
            assert ok("listnetworks", *h) == text
            assert text.splitlines() == [
                "200 listnetworks <nwid> <name> <mac> <status> <type> <dev> <ZT assigned ips>",
                f"200 listnetworks {nwid} parity {net['mac']} OK PRIVATE - {','.join(assigned)}",
            ]
            member_ip = next(a.split("/")[0] for a in assigned if "." in a)

            # get, status ------------------------------------------------------------------------
            assert ok("get", nwid, "name", *h) == "parity\n"
            assert ok("get", nwid, "status", *h) == "OK\n"
            assert ok("get", nwid, "ip4", *h) == f"{member_ip}\n"
            v6 = [a.split("/")[0] for a in assigned if ":" in a]
            assert ok("get", nwid, "ip", *h).splitlines() == [a.split("/")[0] for a in assigned]
            assert ok("get", nwid, "ip6", *h).splitlines() == v6
            assert ok("get", nwid, "nonsense", *h) == "error, unknown property name\n"
            r = cli("get", "ffffffffffffffff", "name", *h)
            assert r.returncode == 0 and "unknown network ID" in r.stderr
            assert ok("status", *h) == ok("info", *h)
            dump_file = tmp_path / "zerotier_dump.txt"
            assert ok("dump", "--out", str(dump_file), *h) == f"Writing dump to: {dump_file}\n"
            dump = dump_file.read_text()
            for heading in ("status\n------\n", "networks\n--------\n", "peers\n-----\n",
                            "local.conf\n----------\n", "Network Interfaces\n"):  # fmt: skip
                assert heading in dump, heading
            assert dump.startswith("platform: Linux\nzerotier version: 1.")
            assert f'"address": "{MEMBER_HEX}"' in dump and nwid in dump

            with thread_node(tmp_path / "peer", planet, PEER_ID) as peer:
                ok("controller", "member", "authorize", nwid, f"{PEER_ID.address:010x}", *ctl.h)
                peer.run(peer.node.join(nwid, timeout=20))

                # metrics: counters move with the peer's pings -------------------------------
                before, types = parse(ok("metrics", *h))
                check_zerotier_names(before, types)
                assert peer.pings(nwid, member_ip)
                for _ in range(4):
                    assert peer.pings(nwid, member_ip, tries=1)
                metrics_token = (member.home / "metricstoken.secret").read_text().strip()
                after, types = parse(ok("metrics", *h, "--token", metrics_token))
                check_zerotier_names(after, types)
                for d in ("rx", "tx"):
                    assert value(after, "zt_data", protocol="udp", direction=d) > value(
                        before, "zt_data", protocol="udp", direction=d
                    )
                    assert value(after, "ztnode_packets_total", direction=d) >= (
                        value(before, "ztnode_packets_total", direction=d) + 5
                    )
                frames = [
                    sum(
                        value(s, "zt_packet", packet_type=t, direction="rx")
                        for t in ("frame", "ext_frame")
                    )
                    for s in (before, after)
                ]
                assert frames[1] >= frames[0] + 5, frames
                assert value(after, "zt_num_networks") == 1
                assert value(after, "ztnode_tcp_retransmitted_bytes_total", network_id=nwid) == 0
                assert value(after, "ztnode_peers", role="leaf") >= 1  # the peer
                as_json = cli_json("metrics", *h)
                assert isinstance(as_json, list) and as_json
                assert all(set(s) == {"name", "labels", "value"} for s in as_json)
                assert {s["name"] for s in as_json} >= {
                    "zt_packet",
                    "zt_data",
                    "zt_peer_path_count",
                }
                udp_rx = next(
                    s["value"]
                    for s in as_json
                    if s["name"] == "zt_data"
                    and s["labels"] == {"protocol": "udp", "direction": "rx"}
                )
                assert udp_rx >= value(after, "zt_data", protocol="udp", direction="rx")
                assert "401" in usage_error("metrics", *h, "--token", "wrong")
                assert "401" in usage_error("info", *h, "--token", metrics_token)

                # set: allowManaged=0 takes the stack's addresses away, =1 brings them back -----
                local_conf = member.home / "networks.d" / f"{nwid}.local.conf"
                assert not local_conf.exists()
                assert ok("set", nwid, "allowManaged=0", *h).splitlines() == [
                    f"200 set {nwid} allowManaged=0 allowGlobal=0 allowDefault=0 allowDNS=0"
                ]
                assert local_conf.read_bytes() == (
                    b"allowManaged=0\nallowGlobal=0\nallowDefault=0\nallowDNS=0\n"
                )
                off = cli_json("networks", *h)[0]
                assert_network(off)
                assert off["allowManaged"] is False and off["stackAddresses"] == []
                assert off["assignedAddresses"] == assigned  # still what the controller assigned
                assert not peer.pings(nwid, member_ip)
                on = cli_json("set", nwid, "allowManaged=1", *h)
                assert_network(on)
                assert on["allowManaged"] is True and sorted(on["stackAddresses"]) == sorted(
                    assigned
                )
                assert peer.pings(nwid, member_ip)
                both = cli_json("set", nwid, "allowGlobal=1", "allowDNS=true", *h)
                assert (both["allowGlobal"], both["allowDNS"], both["allowDefault"]) == (
                    True,
                    True,
                    False,
                )
                assert local_conf.read_bytes() == (
                    b"allowManaged=1\nallowGlobal=1\nallowDefault=0\nallowDNS=1\n"
                )
                assert "allowFoo" in usage_error("set", nwid, "allowFoo=1", *h)
                assert "0 or 1" in usage_error("set", nwid, "allowManaged=maybe", *h)
                assert "not a network id" in usage_error("set", "123", "allowManaged=0", *h)
                other = "ffffffffffffff01"
                assert "not a member" in usage_error("set", other, "allowManaged=0", *h)
                assert not (member.home / "networks.d" / f"{other}.conf").exists()
                assert member.api("POST", f"/network/{nwid}", {"allowManaged": "no"})[0] == 400

                # The peer is a leaf in the member's peer list now.
                peer_hex = f"{PEER_ID.address:010x}"
                assert any(
                    p["address"] == peer_hex and p["role"] == "LEAF" for p in cli_json("peers", *h)
                )

            # listmoons, orbit, deorbit ---------------------------------------------------------
            assert cli_json("listmoons", *h) == []
            assert ok("listmoons", *h).splitlines() == ["200 listmoons <id> <timestamp> <roots>"]
            assert ok("orbit", CTL_HEX, CTL_HEX, *h).splitlines() == ["200 orbit OK"]
            member_moon = member.home / "moons.d" / f"{moon16}.moon"

            def moons() -> list[dict[str, Any]]:
                return list(cli_json("listmoons", *h))

            wait_for(lambda: [m["waiting"] for m in moons()] == [False], 10, "the moon to arrive")
            (moon,) = moons()
            assert_moon(moon)
            assert moon["id"] == moon16
            assert moon["roots"] == [
                {"identity": CTL_ID.public().to_string(), "stableEndpoints": [f"127.0.0.1/{port}"]}
            ]
            wait_for(member_moon.exists, 5, "the moon to be saved in moons.d")
            assert member_moon.read_bytes() == moon_file.read_bytes()
            assert ok("listmoons", *h).splitlines()[1:] == [
                f"200 listmoons {moon16} {moon['timestamp']} {CTL_HEX}@127.0.0.1/{port}"
            ]
            assert cli_json("orbit", CTL_HEX, CTL_HEX, *h) == moon  # had it: answered as is
            assert member.api("GET", f"/moon/{CTL_HEX}") == (200, moon)
            assert member.api("GET", f"/moon/{moon16}") == (200, moon)
            assert ok("deorbit", CTL_HEX, *h).splitlines() == ["200 deorbit OK"]
            assert moons() == [] and not member_moon.exists()
            waiting = cli_json("orbit", moon16, CTL_HEX, *h)
            assert_moon(waiting, waiting=True)
            assert waiting["id"] == moon16 and waiting["roots"] == []
            wait_for(lambda: [m["waiting"] for m in moons()] == [False], 10, "the moon again")
            assert cli_json("deorbit", moon16, *h) == RESULT
            assert moons() == []
            assert "not a moon id" in usage_error("deorbit", "0", *h)
            assert "not a seed" in usage_error("orbit", CTL_HEX, "xyz", *h)
            assert "not a seed" in usage_error("orbit", CTL_HEX, "0", *h)

            # Settings survive a restart, and are applied to the stack before it has addresses.
            assert ok("set", nwid, "allowManaged=0", *h).startswith(
                f"200 set {nwid} allowManaged=0"
            )
            assert member.stop() == 0
        # The member again, same home: its settings are read back. Same UDP port: the root
        # would otherwise keep answering at the old one for a while.
        wait_for(lambda: udp_port_free(member_port), 10, "the member's UDP port to be free")
        with node(tmp_path / "member", planet, MEMBER_ID, member_port) as member:
            h = member.h
            wait_for(lambda: status(member, nwid) == "OK", 15, "the network after the restart")
            net = cli_json("networks", *h)[0]
            assert (net["allowManaged"], net["allowGlobal"], net["allowDNS"]) == (False, True, True)
            assert net["stackAddresses"] == [] and net["assignedAddresses"] == assigned
            assert sorted(cli_json("set", nwid, "allowManaged=1", *h)["stackAddresses"]) == sorted(
                assigned
            )

            # leave (-j), join (-j), leave ------------------------------------------------------
            assert cli_json("leave", nwid, *h) == RESULT
            assert cli_json("networks", *h) == [] and not local_conf.exists()
            joined = cli_json("join", nwid, *h)
            assert_network(joined)
            assert joined["nwid"] == nwid and joined["allowManaged"] is True
            assert joined["allowGlobal"] is False  # leaving forgot the local settings
            wait_for(lambda: status(member, nwid) == "OK", 10, "the network after re-joining")
            assert ok("leave", nwid, *h).splitlines() == ["200 leave OK"]
            assert ok("networks", *h).splitlines()[1:] == []
            assert member.stop() == 0 and ctl.stop() == 0
    for log in (tmp_path / "ctl.log", tmp_path / "member.log"):
        assert "Traceback" not in log.read_text(), log.read_text()
