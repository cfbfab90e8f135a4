"""The controller's config builder (protocol-network.md §9, §10.3 step 7, §4.1, §5, §6.4)."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.data import test_identities
from tests.helpers.strategies import json_safe_rules
from ztnode.controller.configbuild import (
    COO_ID,
    POOL_TRIALS,
    PoolExhausted,
    build_config,
    credential_time_max_delta,
    ip_to_text,
    json_bool,
    json_int,
    json_str,
    network_id,
    parse_inet,
    rfc4193_address,
    sixplane_address,
)
from ztnode.identity import Identity
from ztnode.wire.credentials import ComQualifierId, OwnedThing
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.netconf import (
    CREDENTIAL_TIME_MAX_DELTA_DEFAULT,
    CREDENTIAL_TIME_MAX_DELTA_MAX,
    CREDENTIAL_TIME_MAX_DELTA_MIN,
    DnsConfig,
    NetconfFlag,
    NetworkConfig,
    NetworkType,
    Route,
    SpecialistType,
    SsoConfig,
)
from ztnode.wire.rules import ActionAccept, ActionDrop, MatchEthertype, rules_to_json

TS = 1_700_000_000_000
IDS = test_identities()
CONTROLLER = IDS[0]
MEMBER = IDS[1].public()
OTHER = IDS[2].public()
NWID = (CONTROLLER.address << 24) | 0x000001
NWID_HEX = f"{NWID:016x}"

IPAddr = IPv4Address | IPv6Address


def ia(text: str, port: int = 0) -> InetAddress:
    return InetAddress(ip_address(text), port)


def network(**fields: Any) -> dict[str, Any]:
    """A network record with just an id and a revision; everything else takes the defaults."""
    base: dict[str, Any] = {"id": NWID_HEX, "nwid": NWID_HEX, "objtype": "network", "revision": 3}
    base.update(fields)
    return base


def member(**fields: Any) -> dict[str, Any]:
    """A stored (revision 1, so not new) authorized member record."""
    addr = f"{MEMBER.address:010x}"
    base: dict[str, Any] = {
        "id": addr,
        "address": addr,
        "nwid": NWID_HEX,
        "authorized": True,
        "revision": 1,
        "ipAssignments": [],
        "tags": [],
        "capabilities": [],
    }
    base.update(fields)
    return base


def no_random(n: int) -> bytes:
    raise AssertionError("no randomness expected here")


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def build(
    net: dict[str, Any],
    mem: dict[str, Any] | None = None,
    *,
    identity: Identity = MEMBER,
    now: int = TS,
    random_bytes: Callable[[int], bytes] = no_random,
    allocated: Iterable[IPAddr] | None = None,
    **kwargs: Any,
) -> tuple[NetworkConfig, dict[str, Any]]:
    held = None if allocated is None else set(allocated)

    def lookup(nwid: int) -> set[IPAddr]:
        assert nwid == NWID
        assert held is not None
        return held

    return build_config(
        CONTROLLER,
        net,
        member() if mem is None else mem,
        identity,
        now,
        random_bytes,
        None if held is None else lookup,
        **kwargs,
    )


def v4_pool(start: str, end: str, route: str | None = None, **extra: Any) -> dict[str, Any]:
    """A network assigning IPv4 from one pool, with one on-link route if given."""
    routes = [{"target": route, "via": None}] if route else []
    return network(
        v4AssignMode={"zt": True},
        ipAssignmentPools=[{"ipRangeStart": start, "ipRangeEnd": end}],
        routes=routes,
        **extra,
    )


def first_candidate(start: str, end: str, address: int) -> IPv4Address:
    s, e = int(IPv4Address(start)), int(IPv4Address(end))
    return IPv4Address(s + (address & 0xFFFF_FFFF) % (e - s))


def auto_ips(cfg: NetworkConfig, family: type[IPAddr]) -> list[InetAddress]:
    special = {rfc4193_address(cfg.network_id, cfg.issued_to).ip}
    special.add(sixplane_address(cfg.network_id, cfg.issued_to).ip)
    return [a for a in cfg.static_ips if isinstance(a.ip, family) and a.ip not in special]


# --- §9: RFC 4193 and 6PLANE ----------------------------------------------------------------


def test_rfc4193_and_6plane_examples() -> None:
    rfc = rfc4193_address(0x8056C2E21C000001, 0x1234567890)
    plane = sixplane_address(0x8056C2E21C000001, 0x1234567890)
    assert rfc == ia("fd80:56c2:e21c:0:199:9312:3456:7890", 88)
    assert plane == ia("fc9c:56c2:e312:3456:7890::1", 40)
    assert f"{ip_to_text(rfc.ip)}/{rfc.port}" == "fd80:56c2:e21c:0:199:9312:3456:7890/88"
    assert f"{ip_to_text(plane.ip)}/{plane.port}" == "fc9c:56c2:e312:3456:7890::1/40"


@dataclass(frozen=True)
class _FakeIdentity:
    """Enough of an identity for the §9 example, whose controller address (8056c2e21c) no test
    identity has: signatures are not checked there."""

    address: int
    public_key: bytes = bytes(64)
    has_private: bool = True

    def sign(self, msg: bytes) -> bytes:
        return bytes(96)


def test_section9_example_through_the_builder() -> None:
    nwid = 0x8056C2E21C000001
    net = {"id": f"{nwid:016x}", "v6AssignMode": {"rfc4193": True, "6plane": True, "zt": False}}
    cfg, out = build_config(
        cast(Identity, _FakeIdentity(0x8056C2E21C)),
        net,
        {"revision": 1},
        cast(Identity, _FakeIdentity(0x1234567890)),
        TS,
        no_random,
    )
    assert [f"{ip_to_text(a.ip)}/{a.port}" for a in cfg.static_ips] == [
        "fd80:56c2:e21c:0:199:9312:3456:7890/88",
        "fc9c:56c2:e312:3456:7890::1/40",
    ]
    assert cfg.flags & NetconfFlag.ENABLE_IPV6_NDP_EMULATION
    assert "ipAssignments" not in out  # NDP-emulated addresses are not recorded


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ({"rfc4193": True}, ["rfc"]),
        ({"6plane": True}, ["6plane"]),
        ({"rfc4193": True, "6plane": 1}, ["rfc", "6plane"]),
        ({"rfc4193": False, "6plane": "false"}, []),
        ("rfc4193,6plane", []),  # only the stored object form counts
    ],
)
def test_v6_modes(mode: object, expected: list[str]) -> None:
    cfg, _ = build(network(v6AssignMode=mode))
    want = {
        "rfc": rfc4193_address(NWID, MEMBER.address),
        "6plane": sixplane_address(NWID, MEMBER.address),
    }
    assert list(cfg.static_ips) == [want[k] for k in expected]
    assert cfg.ndp_emulation == bool(expected)


def test_no_auto_assign_ips_turns_off_everything_automatic() -> None:
    net = network(
        v6AssignMode={"rfc4193": True, "6plane": True, "zt": True},
        v4AssignMode={"zt": True},
        ipAssignmentPools=[
            {"ipRangeStart": "10.0.0.1", "ipRangeEnd": "10.0.0.254"},
            {"ipRangeStart": "fd00::", "ipRangeEnd": "fd00::ffff:ffff:ffff:ffff"},
        ],
        routes=[{"target": "10.0.0.0/24"}, {"target": "fd00::/64"}, {"target": "10.9.0.0/16"}],
    )
    cfg, out = build(net, member(noAutoAssignIps=True, ipAssignments=["10.9.0.9"]))
    assert cfg.static_ips == (ia("10.9.0.9", 16),)  # manual IPs still go out
    assert not cfg.ndp_emulation
    assert out["ipAssignments"] == ["10.9.0.9"]


# --- §9: IPv4 pool --------------------------------------------------------------------------


def test_v4_pool_is_deterministic_from_the_address() -> None:
    net = v4_pool("10.1.0.1", "10.1.255.254", "10.1.0.0/16")
    cfg, out = build(net)
    assert auto_ips(cfg, IPv4Address) == [ia("10.1.250.205", 16)]
    assert out["ipAssignments"] == ["10.1.250.205"]
    again, _ = build(net, now=TS + 60_000)
    assert again.static_ips == cfg.static_ips
    for ident in IDS:
        got, _ = build(net, identity=ident.public())
        want = first_candidate("10.1.0.1", "10.1.255.254", ident.address)
        assert auto_ips(got, IPv4Address) == [InetAddress(want, 16)]


def test_v4_pool_skips_dot_255() -> None:
    low = MEMBER.address & 0xFF
    start = IPv4Address(int(IPv4Address("10.0.0.0")) + 255 - low)
    end = IPv4Address(int(start) + 256)
    assert first_candidate(str(start), str(end), MEMBER.address) == IPv4Address("10.0.0.255")
    cfg, out = build(v4_pool(str(start), str(end), "10.0.0.0/16"))
    assert out["ipAssignments"] == ["10.0.1.0"]
    assert auto_ips(cfg, IPv4Address) == [ia("10.0.1.0", 16)]


def test_v4_pool_skips_allocated_ips() -> None:
    net = v4_pool("10.1.0.1", "10.1.255.254", "10.1.0.0/16")
    cfg, out = build(net, allocated={IPv4Address("10.1.250.205"), IPv6Address("fd00::1")})
    assert out["ipAssignments"] == ["10.1.250.206"]
    assert auto_ips(cfg, IPv4Address) == [ia("10.1.250.206", 16)]


def test_v4_pool_never_chooses_the_end_unless_start_is_end() -> None:
    for ident in IDS:
        cfg, _ = build(v4_pool("10.0.0.1", "10.0.0.2", "10.0.0.0/24"), identity=ident.public())
        assert auto_ips(cfg, IPv4Address) == [ia("10.0.0.1", 24)]
        cfg, _ = build(v4_pool("10.0.0.7", "10.0.0.7", "10.0.0.0/24"), identity=ident.public())
        assert auto_ips(cfg, IPv4Address) == [ia("10.0.0.7", 24)]
    # With the only non-end candidate taken the pool is exhausted; the end is still not used.
    cfg, out = build(
        v4_pool("10.0.0.1", "10.0.0.2", "10.0.0.0/24"), allocated={IPv4Address("10.0.0.1")}
    )
    assert auto_ips(cfg, IPv4Address) == []
    assert out["ipAssignments"] == []


@pytest.mark.parametrize(
    ("start", "end"),
    [("10.0.0.9", "10.0.0.1"), ("0.0.0.0", "0.0.0.20"), ("fd00::1", "10.0.0.9"), ("x", "y")],
)
def test_v4_unusable_pools(start: str, end: str) -> None:
    cfg, _ = build(v4_pool(start, end, "0.0.0.0/1"))
    assert cfg.static_ips == ()


def test_v4_pool_needs_a_covering_route() -> None:
    assert build(v4_pool("10.0.0.1", "10.0.0.254"))[0].static_ips == ()
    assert build(v4_pool("10.0.0.1", "10.0.0.254", "10.0.1.0/24"))[0].static_ips == ()
    # A route with host bits set covers nothing here (the reference compares the raw target).
    assert build(v4_pool("10.0.0.1", "10.0.0.254", "10.0.0.1/24"))[0].static_ips == ()
    # A /0 route gives no automatic address either.
    assert build(v4_pool("10.0.0.1", "10.0.0.254", "0.0.0.0/0"))[0].static_ips == ()
    # A gateway route counts for IPv4, and the first matching route's prefix is used.
    net = network(
        v4AssignMode={"zt": True},
        ipAssignmentPools=[{"ipRangeStart": "10.0.0.1", "ipRangeEnd": "10.0.0.254"}],
        routes=[{"target": "10.0.0.0/8", "via": "192.168.1.1"}, {"target": "10.0.0.0/24"}],
    )
    got = auto_ips(build(net)[0], IPv4Address)
    assert len(got) == 1 and got[0].port == 8


def test_v4_pool_exhaustion_still_builds_a_config() -> None:
    start, end = "10.0.0.1", "10.0.0.6"
    everything = {IPv4Address(f"10.0.0.{i}") for i in range(1, 7)}
    net = v4_pool(start, end, "10.0.0.0/24", v6AssignMode={"rfc4193": True})
    cfg, out = build(net, allocated=everything)
    assert cfg.static_ips == (rfc4193_address(NWID, MEMBER.address),)
    assert out["ipAssignments"] == []
    assert cfg.com is not None and cfg.com.verify(CONTROLLER)
    assert issubclass(PoolExhausted, Exception)  # exported, never raised


def test_v4_pool_tries_at_most_1000_candidates() -> None:
    start, end = "10.0.0.1", "10.0.255.254"
    s, e = int(IPv4Address(start)), int(IPv4Address(end))
    counter = MEMBER.address & 0xFFFF_FFFF
    # Every trial counts, including the skipped x.x.x.255 ones.
    candidates = [IPv4Address(s + (counter + i) % (e - s)) for i in range(POOL_TRIALS + 1)]
    assert all(int(c) & 0xFF != 0xFF for c in candidates[POOL_TRIALS - 1 :])
    net = v4_pool(start, end, "10.0.0.0/16")
    cfg, _ = build(net, allocated=candidates[:POOL_TRIALS])
    assert auto_ips(cfg, IPv4Address) == []
    cfg, _ = build(net, allocated=candidates[: POOL_TRIALS - 1])
    assert auto_ips(cfg, IPv4Address) == [InetAddress(candidates[POOL_TRIALS - 1], 16)]


def test_v4_second_pool_used_when_the_first_is_full() -> None:
    net = network(
        v4AssignMode={"zt": True},
        ipAssignmentPools=[
            {"ipRangeStart": "10.0.0.1", "ipRangeEnd": "10.0.0.2"},
            {"ipRangeStart": "10.0.1.1", "ipRangeEnd": "10.0.1.2"},
            {"ipRangeStart": "10.0.2.1", "ipRangeEnd": "10.0.2.2"},
        ],
        routes=[{"target": "10.0.0.0/16"}],
    )
    cfg, out = build(net)
    assert out["ipAssignments"] == ["10.0.0.1"]  # at most one automatic IPv4
    cfg, out = build(net, allocated={IPv4Address("10.0.0.1")})
    assert out["ipAssignments"] == ["10.0.1.1"]
    assert auto_ips(cfg, IPv4Address) == [ia("10.0.1.1", 16)]


# --- §9: manual assignments -----------------------------------------------------------------


def test_manual_ips_outside_routes_are_kept_but_not_sent() -> None:
    net = v4_pool("10.1.0.1", "10.1.255.254", "10.1.0.0/16")
    mem = member(ipAssignments=["192.168.7.7", 42, None, "garbage", "fd00::7"])
    cfg, out = build(net, mem)
    assert auto_ips(cfg, IPv4Address) == [ia("10.1.250.205", 16)]  # unrouted: auto continues
    assert out["ipAssignments"] == [*mem["ipAssignments"], "10.1.250.205"]


def test_routed_manual_ip_stops_auto_assignment_for_its_family_only() -> None:
    net = network(
        v4AssignMode={"zt": True},
        v6AssignMode={"zt": True},
        ipAssignmentPools=[
            {"ipRangeStart": "10.1.0.1", "ipRangeEnd": "10.1.255.254"},
            {"ipRangeStart": "fd00::", "ipRangeEnd": "fd00::ffff:ffff:ffff:ffff"},
        ],
        routes=[
            {"target": "10.0.0.0/8"},
            {"target": "10.1.0.0/16", "via": "10.0.0.1"},
            {"target": "fd00::/64"},
        ],
    )
    cfg, out = build(net, member(ipAssignments=["10.1.2.3"]))
    # Longest containing route's prefix (a gateway route counts); no automatic IPv4.
    assert cfg.static_ips == (
        ia("10.1.2.3", 16),
        InetAddress(IPv6Address(int(IPv6Address("fd00::")) + MEMBER.address), 64),
    )
    assert out["ipAssignments"][0] == "10.1.2.3" and len(out["ipAssignments"]) == 2


def test_manual_ip_quirks() -> None:
    # A lone /0 route carries every IPv4 manual address with prefix 0.
    cfg, _ = build(network(routes=[{"target": "0.0.0.0/0"}]), member(ipAssignments=["8.8.8.8"]))
    assert cfg.static_ips == (ia("8.8.8.8", 0),)
    # IPv4 containment ignores the route's host bits; IPv6 containment requires them clear.
    net = network(routes=[{"target": "10.0.0.1/24"}, {"target": "fd00::1/64"}])
    cfg, _ = build(net, member(ipAssignments=["10.0.0.9", "fd00::9"]))
    assert cfg.static_ips == (ia("10.0.0.9", 24),)
    # A port in the stored text is replaced by the route's prefix.
    cfg, _ = build(
        network(routes=[{"target": "10.0.0.0/24"}]), member(ipAssignments=["10.0.0.9/8"])
    )
    assert cfg.static_ips == (ia("10.0.0.9", 24),)


def test_static_ips_capped_at_32_and_coo_at_16_things() -> None:
    ips = [f"10.0.0.{i}" for i in range(1, 41)]
    cfg, _ = build(network(routes=[{"target": "10.0.0.0/24"}]), member(ipAssignments=ips))
    assert len(cfg.static_ips) == 32
    (coo,) = cfg.certificates_of_ownership
    assert len(coo.things) == 16
    assert coo.verify(CONTROLLER)


# --- §9: IPv6 pool --------------------------------------------------------------------------


def test_v6_pool_puts_the_address_in_the_low_64_bits() -> None:
    net = network(
        v6AssignMode={"zt": True},
        ipAssignmentPools=[{"ipRangeStart": "fd00:1::", "ipRangeEnd": "fd00:1::ffff:ffff:ffff"}],
        routes=[{"target": "fd00:1::/64"}],
    )
    cfg, out = build(net)
    want = IPv6Address(int(IPv6Address("fd00:1::")) + MEMBER.address)
    assert cfg.static_ips == (InetAddress(want, 64),)
    assert out["ipAssignments"] == [ip_to_text(want)] == ["fd00:1::3e:2d69:7291"]
    assert not cfg.ndp_emulation


def test_v6_pool_random_candidates() -> None:
    # A range too small for the address: random candidates inside it, reproducible per seed.
    net = network(
        v6AssignMode={"zt": True},
        ipAssignmentPools=[{"ipRangeStart": "fd00::100", "ipRangeEnd": "fd00::200"}],
        routes=[{"target": "fd00::/112"}],
    )
    cfg, out = build(net, random_bytes=seeded(1))
    (got,) = cfg.static_ips
    assert IPv6Address("fd00::100") <= got.ip < IPv6Address("fd00::200") and got.port == 112
    assert out["ipAssignments"] == [ip_to_text(got.ip)]
    assert build(net, random_bytes=seeded(1))[0].static_ips == cfg.static_ips
    # Taken addresses are skipped.
    cfg2, _ = build(net, random_bytes=seeded(1), allocated={got.ip})
    assert cfg2.static_ips and cfg2.static_ips[0].ip != got.ip


def test_v6_pool_needs_an_on_link_route() -> None:
    calls = 0

    def counting(n: int) -> bytes:
        nonlocal calls
        calls += 1
        return bytes(n)

    net = network(
        v6AssignMode={"zt": True},
        ipAssignmentPools=[{"ipRangeStart": "fd00::", "ipRangeEnd": "fd00::ffff:ffff:ffff:ffff"}],
        routes=[{"target": "fd00::/64", "via": "fd99::1"}],
    )
    cfg, out = build(net, random_bytes=counting)
    assert cfg.static_ips == () and out["ipAssignments"] == []
    assert calls == POOL_TRIALS - 1  # the address-based first trial, then random ones


def test_v6_pool_exhausted() -> None:
    net = network(
        v6AssignMode={"zt": True},
        ipAssignmentPools=[{"ipRangeStart": "fd00::1", "ipRangeEnd": "fd00::3"}],
        routes=[{"target": "fd00::/64"}],
    )
    taken = {IPv6Address("fd00::1"), IPv6Address("fd00::2")}
    cfg, out = build(net, random_bytes=seeded(2), allocated=taken)
    assert cfg.static_ips == () and out["ipAssignments"] == []


# --- credentials ----------------------------------------------------------------------------


def test_com_is_signed_bound_and_agrees_within_ctmd() -> None:
    cfg, _ = build(network())
    com = cfg.com
    assert com is not None and com.verify(CONTROLLER)
    assert com.timestamp == TS and com.network_id == NWID and com.issued_to == MEMBER.address
    (ts_qualifier,) = [q for q in com.qualifiers if q.id == ComQualifierId.TIMESTAMP]
    assert ts_qualifier.max_delta == cfg.credential_time_max_delta == 30 * 60 * 1000

    ctmd = cfg.credential_time_max_delta
    other_mem = member(id=f"{OTHER.address:010x}", address=f"{OTHER.address:010x}")
    near, _ = build(network(), other_mem, identity=OTHER, now=TS + ctmd)
    far, _ = build(network(), other_mem, identity=OTHER, now=TS + ctmd + 1)
    assert near.com is not None and far.com is not None
    assert com.agrees_with(near.com, OTHER) and near.com.agrees_with(com, MEMBER)
    assert not com.agrees_with(far.com, OTHER) and not far.com.agrees_with(com, MEMBER)
    assert not com.agrees_with(near.com, MEMBER)  # bound to the other member's identity

    other_net = (CONTROLLER.address << 24) | 0x000002
    elsewhere, _ = build(network(id=f"{other_net:016x}"), other_mem, identity=OTHER)
    assert elsewhere.com is not None and not com.agrees_with(elsewhere.com, OTHER)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (None, CREDENTIAL_TIME_MAX_DELTA_DEFAULT),
        (10 * 60 * 1000, 10 * 60 * 1000),
        (1, CREDENTIAL_TIME_MAX_DELTA_MIN),
        (-5, CREDENTIAL_TIME_MAX_DELTA_MIN),
        (24 * 60 * 60 * 1000, CREDENTIAL_TIME_MAX_DELTA_MAX),
        (900_000.7, 900_000),
        ("600000", CREDENTIAL_TIME_MAX_DELTA_DEFAULT),
        ([1], CREDENTIAL_TIME_MAX_DELTA_DEFAULT),
    ],
)
def test_credential_time_max_delta(window: object, expected: int) -> None:
    net = network() if window is None else network(certificateTimeoutWindowSize=window)
    assert credential_time_max_delta(net) == expected
    cfg, _ = build(net)
    assert cfg.credential_time_max_delta == expected
    assert cfg.com is not None and cfg.com.qualifiers[0].max_delta == expected


NET_CAPS = [
    {"id": 3, "default": True, "rules": [{"type": "ACTION_DROP", "not": False, "or": False}]},
    {"id": 1, "default": True, "rules": []},
    {"id": 2, "default": False},
    {"id": 7, "rules": [{"type": "MATCH_ETHERTYPE", "etherType": 2048}, {"type": "ACTION_ACCEPT"}]},
    "not a capability",
]


@pytest.mark.parametrize(
    ("mem", "new", "ids", "persisted"),
    [
        ({}, None, [1, 3], [3, 1]),  # never saved: new, gets the defaults in network order
        (member(revision=0), None, [1, 3], [3, 1]),
        (member(), None, [], []),  # stored: no defaults
        (member(), True, [1, 3], [3, 1]),
        (member(revision=0), False, [], []),
        (member(capabilities=[7, 2, 99, "3"]), None, [2, 3, 7], [7, 2, 99, "3"]),
        (member(capabilities=[3], revision=0), None, [1, 3], [3, 1]),
        (member(capabilities="junk"), None, [], []),
    ],
)
def test_capabilities(
    mem: dict[str, Any], new: bool | None, ids: list[int], persisted: list[Any]
) -> None:
    cfg, out = build(network(capabilities=NET_CAPS), mem, new_member=new)
    assert [c.id for c in cfg.capabilities] == ids
    assert out["capabilities"] == persisted
    for cap in cfg.capabilities:
        assert cap.verify(CONTROLLER)
        assert cap.issued_to == MEMBER.address and cap.timestamp == TS
        assert cap.network_id == NWID and cap.max_custody_chain_length == 1
    rules = {c.id: c.rules for c in cfg.capabilities}
    if 3 in rules:
        assert rules[3] == (ActionDrop(),)
    if 7 in rules:
        assert rules[7] == (MatchEthertype(0x0800), ActionAccept())


def test_tags_with_network_defaults_persisted() -> None:
    net = network(
        tags=[
            {"id": 1, "default": 5},
            {"id": 2, "default": 6},
            {"id": 3, "default": None},
            {"id": 4, "default": True},
            {"id": 5},
            {"id": 6, "default": 2.0},
            "junk",
        ]
    )
    cfg, out = build(net, member(tags=[[1, 10], [9, 90], ["bad"], 7]))
    assert [(t.id, t.value) for t in cfg.tags] == [(1, 10), (2, 6), (6, 2), (9, 90)]
    assert out["tags"] == [[1, 10], [9, 90], ["bad"], 7, [2, 6], [6, 2.0]]
    for tag in cfg.tags:
        assert tag.verify(CONTROLLER)
        assert tag.issued_to == MEMBER.address and tag.timestamp == TS and tag.network_id == NWID
    # Defaults are added whatever the member's tags were stored as.
    _, out = build(network(tags=[{"id": 4, "default": 1}]), {"revision": 2})
    assert out["tags"] == [[4, 1]]


def test_coo_lists_every_static_ip() -> None:
    net = network(
        v6AssignMode={"rfc4193": True},
        v4AssignMode={"zt": True},
        ipAssignmentPools=[{"ipRangeStart": "10.1.0.1", "ipRangeEnd": "10.1.255.254"}],
        routes=[{"target": "10.1.0.0/16"}, {"target": "10.2.0.0/16"}],
    )
    cfg, _ = build(net, member(ipAssignments=["10.2.0.5"]))
    assert [a.ip for a in cfg.static_ips] == [
        rfc4193_address(NWID, MEMBER.address).ip,
        IPv4Address("10.2.0.5"),
    ]
    (coo,) = cfg.certificates_of_ownership
    assert coo.id == COO_ID and coo.issued_to == MEMBER.address and coo.timestamp == TS
    assert coo.things == tuple(OwnedThing.ip(a.ip) for a in cfg.static_ips)
    assert coo.verify(CONTROLLER)
    assert build(network())[0].certificates_of_ownership == ()


# --- rules, routes and the scalar fields ----------------------------------------------------


def test_rules() -> None:
    assert build(network())[0].rules == (ActionAccept(),)  # absent: initNetwork's default
    assert build(network(rules=[]))[0].rules == ()  # empty: drop everything
    assert build(network(rules=None))[0].rules == ()
    rules = [
        {"type": "MATCH_ETHERTYPE", "etherType": 2054, "not": True, "or": False},
        {"type": "ACTION_DROP"},
        {"type": "NO_SUCH_RULE"},
        {"type": "ACTION_ACCEPT"},
    ]
    assert build(network(rules=rules))[0].rules == (
        MatchEthertype(0x0806, not_=True),
        ActionDrop(),
        ActionAccept(),
    )


def test_routes() -> None:
    routes = [
        {"target": "10.0.0.0/16", "via": None},
        {"target": "0.0.0.0/0", "via": "10.0.0.1"},
        {"target": "fd00::/64", "via": "10.0.0.1"},  # gateway of the other family: dropped
        {"target": "fd01::/64", "via": "fd00::1"},
        {"target": "nonsense"},
        {"target": 5},
        {"via": "10.0.0.1"},
        "junk",
    ]
    cfg, _ = build(network(routes=routes))
    assert cfg.routes == (
        Route(ia("10.0.0.0", 16)),
        Route(ia("0.0.0.0", 0), ia("10.0.0.1")),
        Route(ia("fd00::", 64)),
        Route(ia("fd01::", 64), ia("fd00::1")),
    )
    assert all(r.flags == 0 and r.metric == 0 for r in cfg.routes)
    many = [{"target": f"10.{i // 256}.{i % 256}.0/24"} for i in range(200)]
    assert len(build(network(routes=many))[0].routes) == 128


def test_scalar_fields_defaults() -> None:
    cfg, _ = build({"id": NWID_HEX})
    assert cfg.network_id == NWID and cfg.issued_to == MEMBER.address and cfg.timestamp == TS
    assert cfg.type == NetworkType.PRIVATE and cfg.name == "" and cfg.revision == 0
    assert cfg.mtu == 2800 and cfg.multicast_limit == 32
    assert cfg.flags == NetconfFlag.ENABLE_BROADCAST
    assert cfg.remote_trace_target == 0 and cfg.remote_trace_level == 0
    assert cfg.dns == DnsConfig() and cfg.sso == SsoConfig() and cfg.specialists == ()


def test_scalar_fields_from_the_network() -> None:
    net = network(
        name="lan",
        private=False,
        enableBroadcast=False,
        multicastLimit=0,
        mtu=9000,
        revision=17,
        dns={
            "domain": "zt.example",
            "servers": ["10.0.0.53", "bad", "fd00::53/53", "1.1.1.1", "8.8.8.8"],
        },
    )
    cfg, _ = build(net)
    assert cfg.name == "lan" and cfg.type == NetworkType.PUBLIC and cfg.revision == 17
    assert cfg.flags == 0 and cfg.multicast_limit == 0 and cfg.mtu == 9000
    # Only the first four entries are read; one that does not parse leaves a null slot.
    servers = (ia("10.0.0.53"), ia("fd00::53", 53), ia("1.1.1.1"))
    assert cfg.dns == DnsConfig("zt.example", servers)


@pytest.mark.parametrize(("mtu", "expected"), [(100, 1280), (20000, 10000), ("1500", 1500)])
def test_mtu_is_clamped(mtu: object, expected: int) -> None:
    assert build(network(mtu=mtu))[0].mtu == expected


def test_name_and_dns_domain_fit_their_fields() -> None:
    cfg, _ = build(network(name="é" * 100, dns={"domain": "d" * 300}))
    assert len(cfg.name.encode("utf-8", "surrogateescape")) == 127
    assert len(cfg.dns.domain) == 127
    assert NetworkConfig.from_dictionary(cfg.to_dictionary()) == cfg
    assert build(network(name="a\0b"))[0].name == "a"


@pytest.mark.parametrize(
    ("net_fields", "mem_fields", "expected"),
    [
        ({}, {}, (0, 0)),
        ({"remoteTraceTarget": "abcdef0123", "remoteTraceLevel": 10}, {}, (0xABCDEF0123, 10)),
        ({"remoteTraceLevel": 20}, {}, (0, 20)),
        (
            {"remoteTraceTarget": "abcdef0123", "remoteTraceLevel": 10},
            {"remoteTraceTarget": "0123456789", "remoteTraceLevel": 30},
            (0x0123456789, 30),
        ),
        (
            {"remoteTraceTarget": "abcdef0123", "remoteTraceLevel": 10},
            {"remoteTraceTarget": "short", "remoteTraceLevel": 30},
            (0xABCDEF0123, 10),
        ),
        ({}, {"remoteTraceTarget": "abcdef0123"}, (0xABCDEF0123, 0)),
    ],
)
def test_remote_trace(
    net_fields: dict[str, Any], mem_fields: dict[str, Any], expected: tuple[int, int]
) -> None:
    cfg, _ = build(network(**net_fields), member(**mem_fields))
    assert (cfg.remote_trace_target, cfg.remote_trace_level) == expected


def test_active_bridges() -> None:
    cfg, _ = build(network(), active_bridges=[0x2222222222, 0x1111111111, 0x2222222222])
    assert cfg.active_bridges() == [0x1111111111, 0x2222222222]
    assert all(s & SpecialistType.ACTIVE_BRIDGE for s in cfg.specialists)
    cfg, _ = build(network(), member(activeBridge=True), active_bridges=[0xFFFFFFFFFF])
    assert cfg.active_bridges() == sorted([MEMBER.address, 0xFFFFFFFFFF])
    assert cfg.permits_bridging(MEMBER.address)


def test_sso() -> None:
    cfg, _ = build(network(ssoEnabled=True), member(authenticationExpiryTime=TS + 5000))
    assert cfg.sso == SsoConfig(version=0, enabled=True, authentication_expiry_time=TS + 5000)
    assert NetworkConfig.from_dictionary(cfg.to_dictionary()).sso == cfg.sso
    assert build(network(ssoEnabled=False))[0].sso == SsoConfig()


# --- whole-config properties ----------------------------------------------------------------


def rich_network() -> dict[str, Any]:
    return network(
        name="everything",
        revision=99,
        v4AssignMode={"zt": True},
        v6AssignMode={"rfc4193": True, "6plane": True, "zt": True},
        ipAssignmentPools=[
            {"ipRangeStart": "10.1.0.1", "ipRangeEnd": "10.1.255.254"},
            {"ipRangeStart": "fd00:1::", "ipRangeEnd": "fd00:1::ffff:ffff:ffff"},
        ],
        routes=[
            {"target": "10.1.0.0/16"},
            {"target": "fd00:1::/64"},
            {"target": "0.0.0.0/0", "via": "10.1.0.1"},
        ],
        rules=[
            {"type": "MATCH_ETHERTYPE", "etherType": 2048, "not": True},
            {"type": "ACTION_DROP"},
            {"type": "ACTION_ACCEPT"},
        ],
        capabilities=NET_CAPS,
        tags=[{"id": 1, "default": 5}, {"id": 2, "default": 6}],
        dns={"domain": "zt.example", "servers": ["10.1.0.53"]},
        remoteTraceTarget="abcdef0123",
        remoteTraceLevel=10,
        ssoEnabled=True,
    )


def test_round_trip_through_the_dictionary() -> None:
    mem = member(revision=0, tags=[[2, 1]], ipAssignments=["10.1.0.7"], activeBridge=True)
    cfg, _ = build(rich_network(), mem, active_bridges=[0x1111111111])
    assert cfg.capabilities and cfg.tags and cfg.certificates_of_ownership and cfg.routes
    assert NetworkConfig.from_dictionary(cfg.to_dictionary()) == cfg
    assert NetworkConfig.decode(cfg.encode()) == cfg


def test_inputs_are_not_mutated() -> None:
    net = rich_network()
    mem = member(revision=0, tags="odd", capabilities="odd")
    net_before, mem_before = copy.deepcopy(net), copy.deepcopy(mem)
    _, out = build(net, mem)
    assert net == net_before and mem == mem_before
    assert out is not mem and out != mem
    # The output shares no mutable parts with the input either.
    out2 = build(net, member())[1]
    out2["ipAssignments"].append("x")
    out2["tags"].append("x")
    assert member()["ipAssignments"] == []


def test_output_member_is_stable_when_saved_and_rebuilt() -> None:
    cfg, out = build(rich_network(), member(revision=0))
    cfg2, out2 = build(rich_network(), dict(out, revision=1), now=TS + 1)
    assert out2 == dict(out, revision=1)
    assert cfg2.static_ips == cfg.static_ips
    assert [c.id for c in cfg2.capabilities] == [c.id for c in cfg.capabilities]


def test_caller_errors() -> None:
    with pytest.raises(ValueError, match="network id"):
        build({"name": "no id"})
    with pytest.raises(ValueError, match="network id"):
        build({"id": "not hex at all!!"})
    with pytest.raises(ValueError, match="cannot sign"):
        build(network(id=f"{(IDS[3].address << 24) | 1:016x}"))
    with pytest.raises(ValueError, match="private key"):
        build_config(CONTROLLER.public(), network(), member(), MEMBER, TS, no_random)
    assert network_id({"nwid": NWID_HEX}) == NWID


# --- the lenient readers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1.0.0/16", ia("10.1.0.0", 16)),
        ("10.1.2.3", ia("10.1.2.3", 0)),
        ("fd00::1/88", ia("fd00::1", 88)),
        ("10.1.2.300/8", ia("0.0.0.0", 8)),  # unparsable: zeros of the family it looked like
        ("zz::zz", ia("::", 0)),
        ("fe80::1%eth0", ia("::", 0)),
        ("10.0.0.1/70000", ia("10.0.0.1", 70000 & 0xFFFF)),
        ("10.0.0.1/x", ia("10.0.0.1", 0)),
        ("10.0.0.1/-1", ia("10.0.0.1", 0xFFFF)),
        ("", None),
        ("localhost", None),
        ("1." + "1" * 70, None),  # 64 bytes or more: refused
    ],
)
def test_parse_inet(text: str, expected: InetAddress | None) -> None:
    assert parse_inet(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "::",
        "::1",
        "fd00::",
        "1::",
        "fd00:1::3e:2d69:7291",
        "1:0:0:2::3",
        "1:2:3:4:5:6:7:8",
        "1::2:0:0:3",
        "::1.2.3.4",
        "::ffff:1.2.3.4",
        "::1:2:3:4:5",
        "10.0.0.1",
    ],
)
def test_ip_to_text_matches_inet_ntop(text: str) -> None:
    assert ip_to_text(ip_address(text)) == text


def test_json_readers() -> None:
    assert json_int("42abc", 7) == 42 and json_int(None, 7) == 7 and json_int(-1, 0) == 2**64 - 1
    assert json_int(True, 0) == 1 and json_int(2.9, 0) == 2 and json_int(float("nan"), 5) == 5
    assert json_bool("true", False) and json_bool("1x", False) and not json_bool("yes", True)
    assert json_bool(None, True) and json_bool(-1, False) and not json_bool(0.5, True)
    assert json_str(12, "") == "12" and json_str(False, "") == "0" and json_str([], "d") == "d"


# --- property tests -------------------------------------------------------------------------

# Addresses drawn from a small space, with routes that often cover them, so that automatic
# assignment, exhaustion and the route checks all get exercised.
_ipv4 = st.builds(
    lambda a, b: f"10.0.{a}.{b}", st.integers(0, 3), st.integers(0, 255)
) | st.sampled_from(["10.0.0.1", "10.0.0.254", "10.0.0.255", "192.168.1.1", "0.0.0.0"])
_ipv6 = st.builds(lambda n: f"fd00::{n:x}", st.integers(0, 0x3FF)) | st.sampled_from(
    ["fd00::", "fd00::ffff:ffff:ffff:ffff", "fd00::1:0:0:0", "fd01::9"]
)
_cidr = st.one_of(
    st.sampled_from(
        ["10.0.0.0/16", "10.0.0.0/22", "10.0.1.0/24", "0.0.0.0/0", "fd00::/64", "fd00::/118"]
    ),
    st.builds(lambda ip, n: f"{ip}/{n}", _ipv4, st.integers(0, 33)),
    st.builds(lambda ip, n: f"{ip}/{n}", _ipv6, st.integers(0, 129)),
)
_json_rules = st.lists(json_safe_rules, max_size=6).map(rules_to_json)
_u32ish = st.integers(0, 2**32 + 5)


def _ordered_v4_pool(first: int, size: int) -> dict[str, str]:
    base = int(IPv4Address("10.0.0.0"))
    return {
        "ipRangeStart": str(IPv4Address(base + first)),
        "ipRangeEnd": str(IPv4Address(base + first + size)),
    }


def _ordered_v6_pool(first: int, size: int) -> dict[str, str]:
    base = int(IPv6Address("fd00::"))
    return {
        "ipRangeStart": str(IPv6Address(base + first)),
        "ipRangeEnd": str(IPv6Address(base + first + size)),
    }


_pools = st.lists(
    st.one_of(
        st.builds(_ordered_v4_pool, st.integers(0, 1000), st.integers(0, 40)),
        st.builds(_ordered_v4_pool, st.integers(0, 1000), st.integers(0, 40)),
        st.builds(_ordered_v6_pool, st.integers(0, 1000), st.integers(0, 40)),
        st.builds(_ordered_v6_pool, st.integers(0, 1000), st.integers(0, 40)),
        st.fixed_dictionaries({"ipRangeStart": _ipv4, "ipRangeEnd": _ipv4}),
        st.fixed_dictionaries({"ipRangeStart": _ipv6, "ipRangeEnd": _ipv6}),
    ),
    max_size=3,
)

valid_networks = st.fixed_dictionaries(
    {
        "id": st.just(NWID_HEX),
        # Always present (if often off), so that the addressing rules meet each other.
        "v4AssignMode": st.fixed_dictionaries({"zt": st.booleans()}),
        "v6AssignMode": st.fixed_dictionaries(
            {"rfc4193": st.booleans(), "zt": st.booleans(), "6plane": st.booleans()}
        ),
        "ipAssignmentPools": _pools,
        "routes": st.builds(
            lambda covering, more: covering + more,
            st.sampled_from(
                [
                    [],
                    [{"target": "10.0.0.0/16"}],
                    [{"target": "fd00::/64"}],
                    [{"target": "10.0.0.0/22", "via": None}, {"target": "fd00::/100"}],
                ]
            ),
            st.lists(
                st.fixed_dictionaries({"target": _cidr, "via": st.none() | _ipv4 | _ipv6}),
                max_size=3,
            ),
        ),
    },
    optional={
        "name": st.text(max_size=140),
        "private": st.booleans(),
        "enableBroadcast": st.booleans(),
        "multicastLimit": st.integers(0, 2**32 - 1),
        "mtu": st.integers(0, 20000),
        "revision": st.integers(0, 2**64 - 1),
        "rules": _json_rules,
        "capabilities": st.lists(
            st.fixed_dictionaries({"id": _u32ish, "default": st.booleans(), "rules": _json_rules}),
            max_size=4,
        ),
        "tags": st.lists(
            st.fixed_dictionaries(
                {"id": _u32ish, "default": st.none() | st.integers(-5, 2**32 + 5)}
            ),
            max_size=4,
        ),
        "dns": st.fixed_dictionaries(
            {"domain": st.text(max_size=140), "servers": st.lists(_ipv4 | _ipv6, max_size=5)}
        ),
        "remoteTraceTarget": st.none() | st.text("0123456789abcdef", min_size=10, max_size=10),
        "remoteTraceLevel": st.sampled_from([0, 10, 15, 20, 30]),
        "ssoEnabled": st.booleans(),
        "certificateTimeoutWindowSize": st.integers(-(2**63), 2**63 - 1),
    },
)
valid_members = st.fixed_dictionaries(
    {},
    optional={
        "revision": st.integers(0, 3),
        "activeBridge": st.booleans(),
        "noAutoAssignIps": st.booleans(),
        "ipAssignments": st.lists(_ipv4 | _ipv6, max_size=5),
        "tags": st.lists(st.tuples(_u32ish, _u32ish).map(list), max_size=4),
        "capabilities": st.lists(_u32ish, max_size=4),
        "remoteTraceTarget": st.none() | st.text("0123456789abcdef", min_size=10, max_size=10),
        "remoteTraceLevel": st.integers(0, 2**32),
        "authenticationExpiryTime": st.integers(0, 2**63),
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    valid_networks,
    valid_members,
    st.sampled_from(IDS[1:]),
    st.lists(_ipv4 | _ipv6, max_size=8),
    st.integers(0, 2**32),
)
def test_valid_json_never_raises_and_round_trips(
    net: dict[str, Any],
    mem: dict[str, Any],
    ident: Identity,
    taken: list[str],
    seed: int,
) -> None:
    net_before, mem_before = copy.deepcopy(net), copy.deepcopy(mem)
    allocated = {ip_address(t) for t in taken}
    cfg, out = build(
        net, mem, identity=ident.public(), random_bytes=seeded(seed), allocated=allocated
    )
    assert net == net_before and mem == mem_before
    assert NetworkConfig.from_dictionary(cfg.to_dictionary()) == cfg
    assert cfg.com is not None and cfg.com.verify(CONTROLLER)
    assert all(c.verify(CONTROLLER) for c in cfg.capabilities)
    assert all(t.verify(CONTROLLER) for t in cfg.tags)
    assert all(c.verify(CONTROLLER) for c in cfg.certificates_of_ownership)
    # Automatic assignments: only appended, at most one per family, never someone else's.
    before = mem.get("ipAssignments", [])
    added = out.get("ipAssignments", before)[len(before) :]
    assert out.get("ipAssignments", before)[: len(before)] == before
    fams = [ip_address(a).version for a in added]
    assert len(fams) == len(set(fams)) <= 2
    assert not any(ip_address(a) in allocated for a in added)
    assert all(not a.endswith(".255") for a in added)
    pools = [
        (ip_address(p["ipRangeStart"]), ip_address(p["ipRangeEnd"]))
        for p in net["ipAssignmentPools"]
    ]
    for text in added:
        ip = ip_address(text)
        assert any(a.ip == ip and a.port > 0 for a in cfg.static_ips)
        if isinstance(ip, IPv4Address):
            assert any(
                isinstance(s, IPv4Address)
                and isinstance(e, IPv4Address)
                and (s <= ip < e or s == e == ip)
                for s, e in pools
            )


_json_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json_any = st.recursive(
    _json_scalar,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_network_keys = [
    "name",
    "private",
    "enableBroadcast",
    "multicastLimit",
    "mtu",
    "revision",
    "v4AssignMode",
    "v6AssignMode",
    "ipAssignmentPools",
    "routes",
    "rules",
    "capabilities",
    "tags",
    "dns",
    "remoteTraceTarget",
    "remoteTraceLevel",
    "ssoEnabled",
    "certificateTimeoutWindowSize",
]
_member_keys = [
    "revision",
    "activeBridge",
    "noAutoAssignIps",
    "ipAssignments",
    "tags",
    "capabilities",
    "remoteTraceTarget",
    "remoteTraceLevel",
    "authenticationExpiryTime",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(_network_keys), _json_any, max_size=10),
    st.dictionaries(st.sampled_from(_member_keys), _json_any, max_size=6),
    st.integers(0, 2**32),
)
def test_junk_json_never_raises(net: dict[str, Any], mem: dict[str, Any], seed: int) -> None:
    cfg, out = build(dict(net, id=NWID_HEX), mem, random_bytes=seeded(seed))
    assert NetworkConfig.from_dictionary(cfg.to_dictionary()) == cfg
    assert isinstance(out, dict)
