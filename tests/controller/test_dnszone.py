"""The zone a controller serves for a network's members: ZeroNSD's names, the addresses the
controller hands out, and the rules that keep one member from answering for another."""

from __future__ import annotations

from ipaddress import ip_address

import dns.name

from ztnode.controller.configbuild import rfc4193_address
from ztnode.controller.dnszone import member_zone, network_domain

NWID = "8056c2e21c000001"


def network(**extra: object) -> dict[str, object]:
    return {"id": NWID, "dns": {"domain": "Zt.Example.", "servers": ["10.0.0.1"]}, **extra}


def member(address: str, name: str = "", *, ips: tuple[str, ...] = (), **extra: object) -> dict:
    return {
        "id": address,
        "address": address,
        "authorized": True,
        "name": name,
        "ipAssignments": list(ips),
        "creationTime": 0,
        **extra,
    }


def lookup(zone: object, name: str) -> list[str] | None:
    got = zone.addresses(dns.name.from_text(name))  # type: ignore[attr-defined]
    return None if got is None else [str(a) for a in got]


def test_domain_and_no_domain() -> None:
    assert network_domain(network()) == "zt.example"
    assert network_domain({"id": NWID, "dns": []}) is None  # new networks: an empty array
    assert member_zone({"id": NWID, "dns": []}, [member("a1b2c3d4e5", ips=("10.0.0.5",))]) is None


def test_members_by_id_and_by_name() -> None:
    zone = member_zone(
        network(),
        [
            member("a1b2c3d4e5", "Build Box", ips=("10.0.0.5",)),
            member("0000000abc", ips=("10.0.0.6", "10.0.0.7")),
            member("1111111111", "offline", ips=("10.0.0.8",), authorized=False),
            member("2222222222", "no-ips"),
        ],
    )
    assert zone is not None
    assert lookup(zone, "zt-a1b2c3d4e5.zt.example.") == ["10.0.0.5"]
    assert lookup(zone, "build-box.zt.example.") == ["10.0.0.5"]
    assert lookup(zone, "zt-0000000abc.zt.example.") == ["10.0.0.6", "10.0.0.7"]
    assert lookup(zone, "offline.zt.example.") is None  # deauthorized members are not named
    assert lookup(zone, "zt-1111111111.zt.example.") is None
    assert lookup(zone, "no-ips.zt.example.") is None


def test_rfc4193_addresses_when_the_network_assigns_them() -> None:
    net = network(v6AssignMode={"rfc4193": True, "6plane": False})
    zone = member_zone(net, [member("a1b2c3d4e5", "web", ips=("10.0.0.5",))])
    assert zone is not None
    v6 = str(rfc4193_address(int(NWID, 16), 0xA1B2C3D4E5).ip)
    assert lookup(zone, "web.zt.example.") == ["10.0.0.5", v6]
    assert ip_address(v6).version == 6
    opted_out = member_zone(net, [member("a1b2c3d4e5", ips=("10.0.0.5",), noAutoAssignIps=True)])
    assert opted_out is not None
    assert lookup(opted_out, "zt-a1b2c3d4e5.zt.example.") == ["10.0.0.5"]


def test_the_older_member_keeps_a_shared_name_and_id_names_cannot_be_taken() -> None:
    zone = member_zone(
        network(),
        [
            member("bbbbbbbbbb", "web", ips=("10.0.0.9",), creationTime=20),
            member("aaaaaaaaaa", "web", ips=("10.0.0.8",), creationTime=10),
            member("cccccccccc", "zt-aaaaaaaaaa", ips=("10.0.0.66",), creationTime=5),
        ],
    )
    assert zone is not None
    assert lookup(zone, "web.zt.example.") == ["10.0.0.8"]  # created first
    assert lookup(zone, "zt-bbbbbbbbbb.zt.example.") == ["10.0.0.9"]
    assert lookup(zone, "zt-aaaaaaaaaa.zt.example.") == ["10.0.0.8"]  # not the impostor's
