"""``ztnode join`` / ``leave`` / ``networks`` against a real controller, as processes.

A root process that is also the network controller (``--controller``; the planet's only root,
on 127.0.0.1) and a member process run on loopback with ``--allow-loopback``. The network is
made, the member authorised and deauthorised with ``ztnode controller ...``; what the member
reports is read with ``ztnode networks``. Waits are bounded and every process is killed by its
pid in a ``finally``. ``tests/test_service_networks.py`` reuses the helpers here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import test_identities
from ztnode.crypto import c25519_generate
from ztnode.identity import Identity
from ztnode.transport.httpapi import fetch_json
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import Root, World, WorldType

IDS = test_identities()
CTL_ID, MEMBER_ID = IDS[0], IDS[1]
CTL_HEX, MEMBER_HEX = f"{CTL_ID.address:010x}", f"{MEMBER_ID.address:010x}"
START_TIMEOUT = 20.0
POOL, ROUTE = "10.147.17.10-10.147.17.20", "10.147.17.0/24"

# ZeroTierOne's /network fields and the JSON types it gives them (service/OneService.cpp).
NETWORK_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "nwid": str,
    "mac": str,
    "name": str,
    "status": str,
    "type": str,
    "mtu": int,
    "dhcp": bool,
    "bridge": bool,
    "broadcastEnabled": bool,
    "portError": int,
    "netconfRevision": int,
    "portDeviceName": str,
    "allowManaged": bool,
    "allowGlobal": bool,
    "allowDefault": bool,
    "allowDNS": bool,
    "assignedAddresses": list,
    "routes": list,
    "multicastSubscriptions": list,
    "dns": dict,
}


# --- processes -------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ztnode.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def cli_json(*args: str) -> Any:
    r = cli(*args, "-j")
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return json.loads(r.stdout)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_planet(path: Path, root: Identity, port: int) -> None:
    pub, priv = c25519_generate()
    ep = InetAddress.parse(f"127.0.0.1/{port}")
    planet = World.make(WorldType.PLANET, 0xC11, 1_000, pub, (Root(root.public(), (ep,)),), priv)
    path.write_bytes(planet.to_bytes())


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    home: Path
    api_port: int
    log: Path

    @property
    def h(self) -> tuple[str, str]:
        """``--home HOME`` for the CLI."""
        return ("--home", str(self.home))

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        token = (self.home / "authtoken.secret").read_text().strip()
        return asyncio.run(
            fetch_json("127.0.0.1", self.api_port, method, path, token, body, timeout=10)
        )

    def stop(self) -> int:
        """Ctrl-C, and the exit code of the clean stop that follows."""
        os.kill(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=20)


@contextlib.contextmanager
def node(
    home: Path, planet: Path, ident: Identity, port: int = 0, *, controller: bool = False
) -> Iterator[Proc]:
    """Run ``ztnode node`` with a fixed identity; wait (bounded) for its API; always kill it."""
    home.mkdir(exist_ok=True)
    if not (home / "identity.secret").exists():
        ident.save(home / "identity.secret", include_private=True)
    (home / "ztnode.port").unlink(missing_ok=True)
    log = home.parent / f"{home.name}.log"
    argv = [
        sys.executable, "-m", "ztnode.cli", "node", "--home", str(home), "--port", str(port),
        "--bind", "127.0.0.1", "--allow-loopback", "--api-port", "0", "--planet", str(planet),
    ]  # fmt: skip
    if controller:
        argv.append("--controller")
    with log.open("ab") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        port_file = home / "ztnode.port"
        deadline = time.monotonic() + START_TIMEOUT
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None:
                pytest.fail(f"node exited with {proc.returncode}: {log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"node did not start within {START_TIMEOUT} s: {log.read_text()}")
            time.sleep(0.05)
        yield Proc(proc, home, int(port_file.read_text()), log)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> float:
    """Poll until ``cond()`` is true; the seconds it took (fails after ``timeout``)."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def networks(member: Proc) -> dict[str, dict[str, Any]]:
    """``ztnode networks -j`` by network id."""
    return {n["nwid"]: n for n in cli_json("networks", *member.h)}


def status(member: Proc, nwid: str) -> str | None:
    net = networks(member).get(nwid)
    return None if net is None else str(net["status"])


def online(p: Proc) -> bool:
    return bool(cli_json("info", *p.h)["online"])


def create_network(ctl: Proc, name: str) -> str:
    r = cli(
        "controller", "network", "create", "--name", name, "--v4-pool", POOL, "--route", ROUTE,
        "--v6", "rfc4193", *ctl.h,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    nwid = r.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{16}", nwid) and nwid.startswith(CTL_HEX)
    return nwid


def member_record(ctl: Proc, nwid: str, address: str) -> dict[str, Any]:
    members = {m["id"]: m for m in cli_json("controller", "member", "list", nwid, *ctl.h)}
    return dict(members[address])


def zt_mac(nwid: int, address: int) -> str:
    """A member's MAC, straight from protocol-network.md §1.3 (node/MAC.hpp)."""
    first = (nwid & 0xFE) | 0x02
    if first == 0x52:
        first = 0x32
    octets = [first] + [
        ((address >> (32 - 8 * i)) ^ (nwid >> (8 + 8 * i))) & 0xFF for i in range(5)
    ]
    return ":".join(f"{o:02x}" for o in octets)


def rfc4193(nwid: str, address: str) -> str:
    """``fd`` + network id + ``9993`` + address, /88 (protocol-network.md §9)."""
    raw = bytes.fromhex("fd" + nwid + "9993" + address)
    return f"{ipaddress.IPv6Address(raw)}/88"


@contextlib.contextmanager
def world(tmp_path: Path) -> Iterator[tuple[Proc, Proc, Path]]:
    """A root+controller process and a member process on loopback, the member online."""
    port = free_udp_port()
    planet = tmp_path / "planet"
    write_planet(planet, CTL_ID, port)
    with (
        node(tmp_path / "ctl", planet, CTL_ID, port, controller=True) as ctl,
        node(tmp_path / "member", planet, MEMBER_ID) as member,
    ):
        wait_for(lambda: online(member), 15, "the member to come online")
        yield ctl, member, planet


def assert_zerotier_network_json(net: dict[str, Any]) -> None:
    """Every field ZeroTierOne's /network has, with its type."""
    for key, kind in NETWORK_FIELDS.items():
        assert key in net, key
        value = net[key]
        assert isinstance(value, kind), (key, value)
        if kind is int:
            assert not isinstance(value, bool), (key, value)
    assert all(isinstance(a, str) for a in net["assignedAddresses"])
    for r in net["routes"]:
        assert set(r) == {"target", "via", "flags", "metric"}, r
        assert isinstance(r["target"], str) and (r["via"] is None or isinstance(r["via"], str))
        assert isinstance(r["flags"], int) and isinstance(r["metric"], int)
    for m in net["multicastSubscriptions"]:
        assert set(m) == {"mac", "adi"}, m
    assert set(net["dns"]) == {"domain", "servers"}
    assert isinstance(net["dns"]["domain"], str) and isinstance(net["dns"]["servers"], list)
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", net["mac"])
    assert net["id"] == net["nwid"]


# --- the test --------------------------------------------------------------------------------


def test_join_authorize_leave_deauthorize(tmp_path: Path) -> None:
    with world(tmp_path) as (ctl, member, _planet):
        nwid = create_network(ctl, "cli-net")
        conf = member.home / "networks.d" / f"{nwid}.conf"

        # Joined but not authorised: the controller says no.
        r = cli("join", nwid, *member.h)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("200 join OK (")
        assert conf.read_bytes().strip() == b""  # a placeholder until a config arrives
        wait_for(lambda: status(member, nwid) == "ACCESS_DENIED", 10, "ACCESS_DENIED")
        denied = networks(member)[nwid]
        assert_zerotier_network_json(denied)
        assert denied["assignedAddresses"] == [] and denied["netconfRevision"] == 0
        assert conf.read_bytes().strip() == b""
        again = cli_json("join", nwid, *member.h)  # joining twice changes nothing
        assert again == denied and list(networks(member)) == [nwid]

        # Authorised: the controller pushes the config (a NETWORK_CONFIG verb, not the answer
        # to the member's next request).
        r = cli("controller", "member", "authorize", nwid, MEMBER_HEX, *ctl.h)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"{MEMBER_HEX} authorized"
        took = wait_for(lambda: status(member, nwid) == "OK", 5, "the authorisation to apply")
        status_code, counters = member.api("GET", "/counters")
        assert status_code == 200 and counters["verbsIn"].get("NETWORK_CONFIG", 0) >= 1, (
            took,
            counters["verbsIn"],
        )
        record = member_record(ctl, nwid, MEMBER_HEX)
        assert record["authorized"] is True
        (ip,) = record["ipAssignments"]
        assert ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(ROUTE)
        lo, hi = (ipaddress.IPv4Address(x) for x in POOL.split("-"))
        assert lo <= ipaddress.IPv4Address(ip) <= hi

        net = networks(member)[nwid]
        assert_zerotier_network_json(net)
        # The reference's order: the RFC 4193 address first, then the assigned IPv4 address
        # with the prefix length of the route that contains it.
        assert net["assignedAddresses"] == [rfc4193(nwid, MEMBER_HEX), f"{ip}/24"]
        assert net["name"] == "cli-net" and net["status"] == "OK" and net["type"] == "PRIVATE"
        assert net["nwid"] == nwid
        assert net["mac"] == zt_mac(int(nwid, 16), MEMBER_ID.address)
        assert net["routes"] == [{"target": ROUTE, "via": None, "flags": 0, "metric": 0}]
        assert net["netconfRevision"] > 0 and net["mtu"] == 2800
        assert net["portError"] == 0 and net["broadcastEnabled"] is True
        assert net["dns"] == {"domain": "", "servers": []}
        assert (net["allowManaged"], net["allowGlobal"], net["allowDefault"]) == (
            True,
            False,
            False,
        )
        assert member.api("GET", f"/network/{nwid}") == (200, net)
        assert conf.read_bytes().strip() != b""  # the config dictionary now

        # Text: zerotier-cli's listnetworks lines.
        r = cli("networks", *member.h)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == (
            "200 listnetworks <nwid> <name> <mac> <status> <type> <dev> <ZT assigned ips>"
        )
        assert lines[1:] == [
            f"200 listnetworks {nwid} cli-net {net['mac']} OK PRIVATE - "
            + ",".join(net["assignedAddresses"])
        ]

        # Deauthorised: the member learns at once (a revocation and an ERROR), not in 60 s.
        r = cli("controller", "member", "deauthorize", nwid, MEMBER_HEX, *ctl.h)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"{MEMBER_HEX} deauthorized"
        wait_for(lambda: status(member, nwid) == "ACCESS_DENIED", 5, "the deauthorisation")
        assert member_record(ctl, nwid, MEMBER_HEX)["ipAssignments"] == [ip]
        # ... and authorised again: pushed at once, with the address it had.
        r = cli("controller", "member", "authorize", nwid, MEMBER_HEX, *ctl.h)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: status(member, nwid) == "OK", 5, "the new authorisation")
        assert networks(member)[nwid]["assignedAddresses"] == net["assignedAddresses"]

        # Leave: gone from the list and from networks.d.
        r = cli("leave", nwid, *member.h)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "200 leave OK"
        assert networks(member) == {}
        assert not conf.exists()
        r = cli("networks", *member.h)
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 1
        again = cli("leave", nwid, *member.h)
        assert again.returncode == 2 and "404" in again.stderr

        # Bad network ids: exit 2, one line saying why, nothing joined.
        for bad in ("xyz", "0123456789abcde", "0123456789abcdeg", "0123456789abcdef0", "0" * 16):
            for verb in ("join", "leave"):
                r = cli(verb, bad, *member.h)
                assert r.returncode == 2, (verb, bad, r.stdout, r.stderr)
                assert "not a network id" in r.stderr and "Traceback" not in r.stderr
                assert r.stdout == ""
        assert networks(member) == {}
        assert list((member.home / "networks.d").iterdir()) == []

        assert member.stop() == 0 and ctl.stop() == 0
        for p in (ctl, member):
            assert "Traceback" not in p.log.read_text(), p.log.read_text()
