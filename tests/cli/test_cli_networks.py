"""``ztnode join`` / ``leave`` / ``networks`` against a real controller, as processes.

A root process that is also the network controller (``--controller``; the planet's only root,
on 127.0.0.1) and a member process run on loopback with ``--allow-loopback``. The network is
made, the member authorised and deauthorised with ``ztnode controller ...``; what the member
reports is read with ``ztnode networks``. Waits are bounded and every process is killed by its
pid in a ``finally``. ``tests/transport/test_service_networks.py`` reuses the helpers here.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.processes import (
    MEMBER_HEX,
    MEMBER_ID,
    NETWORK_FIELDS,
    POOL,
    ROUTE,
    cli,
    cli_json,
    create_network,
    member_record,
    networks,
    status,
    wait_for,
    world,
)

pytestmark = pytest.mark.e2e  # starts processes or uses real sockets (loopback only)

# --- processes -------------------------------------------------------------------------------


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


@pytest.mark.slow
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
