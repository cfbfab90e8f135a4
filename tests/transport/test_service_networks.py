"""Joined networks and controller data survive restarts (``networks.d``, ``controller.db``).

Processes on loopback as in ``tests/cli/test_cli_networks.py`` (whose helpers this reuses): a
root+controller process and a member process. The member joins and is authorised; both are
stopped with Ctrl-C; the member restarts while the controller is still down, so the OK it
reports can only come from the config it cached; then the controller restarts and must have
lost nothing, the member's refresh must succeed with the same addresses, and a change made
through the controller API must reach the running member within seconds.
"""

from __future__ import annotations

import json
import stat
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.processes import (
    CTL_ID,
    MEMBER_HEX,
    MEMBER_ID,
    cli,
    cli_json,
    create_network,
    member_record,
    networks,
    node,
    status,
    wait_for,
    world,
)
from ztnode.wire.netconf import NetworkConfig

pytestmark = pytest.mark.e2e  # starts processes or uses real sockets (loopback only)

# Member fields a member's own requests may change (its version, and so the record revision),
# and what the controller saw of it (last seen, online, address), which a restart starts over.
VOLATILE = {
    "vMajor",
    "vMinor",
    "vRev",
    "vProto",
    "revision",
    "lastSeen",
    "online",
    "physicalAddress",
}


def cached_config(home: Path, nwid: str) -> NetworkConfig:
    data = (home / "networks.d" / f"{nwid}.conf").read_bytes()
    assert data.strip(), "networks.d holds only the placeholder"
    return NetworkConfig.decode(data)


def stable(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k not in VOLATILE} for m in members]


def discovering(node: Any, nwid: str) -> bool:
    """The network's multicast subscriptions include mDNS's and LLMNR's IPv4 groups."""
    subs = {s["mac"] for s in networks(node).get(nwid, {}).get("multicastSubscriptions", [])}
    return {"01:00:5e:00:00:fb", "01:00:5e:00:00:fc"} <= subs


@pytest.mark.slow
def test_restarts_keep_networks_members_and_configs(tmp_path: Path) -> None:
    with world(tmp_path) as (ctl, member, planet):
        port = int(cli_json("info", *ctl.h)["config"]["settings"]["primaryPort"])
        nwid = create_network(ctl, "persist-net")
        assert cli("join", nwid, *member.h).returncode == 0
        r = cli("controller", "member", "authorize", nwid, MEMBER_HEX, *ctl.h)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: status(member, nwid) == "OK", 10, "the member's config")
        # The node's mDNS and LLMNR join their groups just after the network is up.
        wait_for(lambda: discovering(member, nwid), 10, "mDNS and LLMNR groups")
        before = networks(member)[nwid]
        (ip,) = member_record(ctl, nwid, MEMBER_HEX)["ipAssignments"]
        assert f"{ip}/24" in before["assignedAddresses"]
        nets_before = cli_json("controller", "network", "list", *ctl.h)
        members_before = cli_json("controller", "member", "list", nwid, *ctl.h)

        assert member.stop() == 0
        # The config dictionary itself, private to the node, is what networks.d keeps.
        conf = member.home / "networks.d" / f"{nwid}.conf"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600
        cfg = cached_config(member.home, nwid)
        assert f"{cfg.network_id:016x}" == nwid and cfg.issued_to == MEMBER_ID.address
        assert cfg.name == "persist-net" and cfg.revision == before["netconfRevision"]
        assert [str(a) for a in cfg.static_ips] == before["assignedAddresses"]
        assert ctl.stop() == 0

    # The member comes back first, alone: still joined, OK from its cache, same addresses.
    member_home, ctl_home = member.home, ctl.home
    with node(member_home, planet, MEMBER_ID) as member:
        wait_for(lambda: discovering(member, nwid), 10, "mDNS and LLMNR groups")
        now = networks(member)
        assert list(now) == [nwid]
        assert now[nwid] == before

        # The controller comes back on its port: every network and member is still there.
        with node(ctl_home, planet, CTL_ID, port, controller=True) as ctl:
            assert cli_json("controller", "network", "list", *ctl.h) == nets_before
            members_after = cli_json("controller", "member", "list", nwid, *ctl.h)
            assert stable(members_after) == stable(members_before)
            record = member_record(ctl, nwid, MEMBER_HEX)
            assert record["authorized"] is True and record["ipAssignments"] == [ip]

            # The member's refresh (due at once after a restart, retried while the controller
            # was away) is answered with a fresh config and the same addresses.
            wait_for(
                lambda: cached_config(member_home, nwid).timestamp > cfg.timestamp,
                15,
                "the member's refresh after the restarts",
            )
            refreshed = networks(member)[nwid]
            assert refreshed["status"] == "OK"
            assert refreshed["assignedAddresses"] == before["assignedAddresses"]
            assert refreshed["name"] == "persist-net"
            record = member_record(ctl, nwid, MEMBER_HEX)
            assert record["ipAssignments"] == [ip] and record["authorized"] is True
            assert record["vMajor"] == 1  # recorded from the member's (real) refresh request

            # A change through the API (a plain urllib POST, as any tool sends it) reaches the
            # running member within seconds, and is what it caches from then on.
            token = (ctl_home / "authtoken.secret").read_text().strip()
            req = urllib.request.Request(
                f"http://127.0.0.1:{ctl.api_port}/controller/network/{nwid}",
                data=json.dumps({"name": "renamed-net"}).encode(),
                headers={"X-ZT1-Auth": token, "Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert json.loads(resp.read())["name"] == "renamed-net"
            wait_for(lambda: networks(member)[nwid]["name"] == "renamed-net", 5, "the rename")
            renamed = networks(member)[nwid]
            assert renamed["netconfRevision"] > refreshed["netconfRevision"]
            assert renamed["assignedAddresses"] == before["assignedAddresses"]
            wait_for(
                lambda: cached_config(member_home, nwid).name == "renamed-net",
                5,
                "the renamed config in networks.d",
            )

            assert member.stop() == 0 and ctl.stop() == 0
    for home in (member_home, ctl_home):
        log = home.parent / f"{home.name}.log"
        assert "Traceback" not in log.read_text(), log.read_text()
