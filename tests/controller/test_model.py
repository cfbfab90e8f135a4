"""ZeroTierOne's controller JSON: defaults, POST fields, validation and quirks (§10.1/10.2)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ztnode.controller.model import (
    ApiError,
    apply_member_post,
    apply_network_post,
    finish_save,
    new_member,
    new_network,
    parse_address,
    parse_nwid,
    same_record,
)

NWID = 0x8056C2E21C000001
ADDR = 0x1234567890
NOW = 1_700_000_000_000


def saved_network(**body: Any) -> dict[str, Any]:
    return apply_network_post(new_network(NWID, NOW), body, NOW)


def saved_member(**body: Any) -> dict[str, Any]:
    return apply_member_post(new_member(NWID, ADDR, NOW), body, NOW)


def bad_network(body: object, match: str = "") -> None:
    current = saved_network()
    before = copy.deepcopy(current)
    with pytest.raises(ApiError, match=match) as e:
        apply_network_post(current, body, NOW + 1)
    assert e.value.status == 400
    assert current == before


def bad_member(body: object, match: str = "") -> None:
    current = saved_member()
    before = copy.deepcopy(current)
    with pytest.raises(ApiError, match=match) as e:
        apply_member_post(current, body, NOW + 1)
    assert e.value.status == 400
    assert current == before


# --- defaults --------------------------------------------------------------------------------


def test_network_defaults_exactly() -> None:
    n = saved_network()
    assert n == {
        "id": "8056c2e21c000001",
        "nwid": "8056c2e21c000001",
        "objtype": "network",
        "name": "",
        "private": True,
        "enableBroadcast": True,
        "multicastLimit": 32,
        "mtu": 2800,
        "v4AssignMode": {"zt": False},
        "v6AssignMode": {"rfc4193": False, "zt": False, "6plane": False},
        "authTokens": [None],
        "capabilities": [],
        "tags": [],
        "routes": [],
        "ipAssignmentPools": [],
        "remoteTraceTarget": None,
        "remoteTraceLevel": 0,
        "rulesSource": "",
        "rules": [{"not": False, "or": False, "type": "ACTION_ACCEPT"}],
        "dns": [],
        "ssoEnabled": False,
        "clientId": "",
        "authorizationEndpoint": "",
        "creationTime": NOW,
        "revision": 1,
    }
    assert "certificateTimeoutWindowSize" not in n


def test_member_defaults_exactly() -> None:
    m = saved_member()
    assert m == {
        "id": "1234567890",
        "address": "1234567890",
        "nwid": "8056c2e21c000001",
        "objtype": "member",
        "authorized": False,
        "activeBridge": False,
        "noAutoAssignIps": False,
        "ssoExempt": False,
        "ipAssignments": [],
        "tags": [],
        "capabilities": [],
        "creationTime": NOW,
        "revision": 1,
        "lastAuthorizedTime": 0,
        "lastDeauthorizedTime": 0,
        "lastAuthorizedCredentialType": None,
        "lastAuthorizedCredential": None,
        "authenticationExpiryTime": 0,
        "vMajor": -1,
        "vMinor": -1,
        "vRev": -1,
        "vProto": -1,
        "remoteTraceTarget": None,
        "remoteTraceLevel": 0,
    }


def test_unsaved_records_have_revision_zero() -> None:
    assert new_network(NWID, NOW)["revision"] == 0
    assert new_member(NWID, ADDR, NOW)["revision"] == 0


# --- revision --------------------------------------------------------------------------------


def test_revision_bumps_only_on_real_change() -> None:
    n = saved_network(name="a")
    assert n["revision"] == 1
    same = apply_network_post(n, {"name": "a", "private": True}, NOW + 5)
    assert same["revision"] == 1
    assert same == n
    changed = apply_network_post(n, {"name": "b"}, NOW + 5)
    assert changed["revision"] == 2
    assert n["revision"] == 1  # the input is not modified


def test_posting_get_result_back_changes_nothing() -> None:
    n = saved_network(
        name="full",
        routes=[{"target": "10.0.0.0/24", "via": None}],
        ipAssignmentPools=[{"ipRangeStart": "10.0.0.1", "ipRangeEnd": "10.0.0.254"}],
        v6AssignMode={"rfc4193": True},
        tags=[{"id": 1, "default": 5}],
        capabilities=[{"id": 2, "default": True, "rules": [{"type": "ACTION_DROP"}]}],
        authTokens={"secret": 0},
        dns={"domain": "zt.example", "servers": ["10.0.0.1"]},
        rules=[{"type": "ACTION_ACCEPT"}],
    )
    again = apply_network_post(n, copy.deepcopy(n), NOW + 10)
    assert again == n
    # ZeroTierOne's quirk, kept: the default rule carries not/or, a rendered action does not,
    # so the first echo of a fresh network re-renders its rule (one revision); then it is stable.
    plain = saved_network()
    echoed = apply_network_post(plain, copy.deepcopy(plain), NOW + 10)
    assert echoed["rules"] == [{"type": "ACTION_ACCEPT"}]
    assert echoed["revision"] == plain["revision"] + 1
    assert apply_network_post(echoed, copy.deepcopy(echoed), NOW + 20) == echoed
    m = saved_member(authorized=True, ipAssignments=["10.0.0.5"], tags=[[1, 2]], capabilities=[3])
    assert apply_member_post(m, copy.deepcopy(m), NOW + 10) == m


def test_same_record_and_finish_save() -> None:
    a = {"x": 1, "revision": 4}
    assert same_record(a, {"x": 1, "revision": 9})
    assert not same_record(a, {"x": 2, "revision": 4})
    b = {"x": 1, "revision": 0}
    assert finish_save(a, b) is False and b["revision"] == 4
    c = {"x": 2}
    assert finish_save(a, c) is True and c["revision"] == 5
    d = {"x": 1}
    assert finish_save(None, d) is True and d["revision"] == 1


# --- network fields --------------------------------------------------------------------------


def test_scalar_fields() -> None:
    n = saved_network(
        name="net",
        private=False,
        enableBroadcast=False,
        multicastLimit=0,
        remoteTraceTarget="ABCDEF0123",
        remoteTraceLevel=3,
        rulesSource="accept;",
    )
    assert n["name"] == "net"
    assert n["private"] is False
    assert n["enableBroadcast"] is False
    assert n["multicastLimit"] == 0
    assert n["remoteTraceTarget"] == "abcdef0123"
    assert n["remoteTraceLevel"] == 3
    assert n["rulesSource"] == "accept;"
    assert saved_network(remoteTraceTarget="")["remoteTraceTarget"] is None
    assert saved_network(remoteTraceTarget=None)["remoteTraceTarget"] is None


@pytest.mark.parametrize(
    ("given", "stored"), [(1500, 1500), (100, 1280), (99999, 10000), (-5, 1280), (2800.0, 2800)]
)
def test_mtu_clamped(given: Any, stored: int) -> None:
    assert saved_network(mtu=given)["mtu"] == stored


@pytest.mark.parametrize(
    "body",
    [
        {"name": 5},
        {"name": "x" * 128},
        {"name": "a\0b"},
        {"private": "false"},
        {"private": 0},
        {"enableBroadcast": None},
        {"multicastLimit": -1},
        {"multicastLimit": 1 << 32},
        {"multicastLimit": "32"},
        {"multicastLimit": 1.5},
        {"multicastLimit": True},
        {"mtu": "1500"},
        {"remoteTraceTarget": "xyz"},
        {"remoteTraceTarget": 12},
        {"remoteTraceLevel": -1},
        {"rulesSource": 1},
    ],
)
def test_scalar_field_types(body: dict[str, Any]) -> None:
    bad_network(body, next(iter(body)))


def test_body_must_be_object() -> None:
    for body in ([], "x", 1, None, [{"name": "a"}]):
        bad_network(body, "request body must be an object")
        bad_member(body, "request body must be an object")


def test_unknown_and_readonly_fields_ignored() -> None:
    n = saved_network()
    got = apply_network_post(
        n,
        {
            "id": "ffffffffffffffff",
            "nwid": "1",
            "revision": 99,
            "creationTime": 5,
            "objtype": "member",
            "ssoEnabled": True,
            "certificateTimeoutWindowSize": 1,
            "meta": {"x": 1},
            "whatever": [1, 2],
            "clock": 7,
        },
        NOW,
    )
    assert got == n


def test_v4_assign_mode_forms() -> None:
    assert saved_network(v4AssignMode="zt")["v4AssignMode"] == {"zt": True}
    assert saved_network(v4AssignMode="")["v4AssignMode"] == {"zt": False}
    assert saved_network(v4AssignMode={"zt": True})["v4AssignMode"] == {"zt": True}
    assert saved_network(v4AssignMode={})["v4AssignMode"] == {"zt": False}
    bad_network({"v4AssignMode": "dhcp"}, "v4AssignMode")
    bad_network({"v4AssignMode": True}, "v4AssignMode")
    bad_network({"v4AssignMode": {"zt": "yes"}}, "v4AssignMode.zt")


def test_v6_assign_mode_forms() -> None:
    assert saved_network(v6AssignMode="rfc4193,6plane,rfc4193")["v6AssignMode"] == {
        "rfc4193": True,
        "zt": False,
        "6plane": True,
    }
    assert saved_network(v6AssignMode="zt")["v6AssignMode"] == {
        "rfc4193": False,
        "zt": True,
        "6plane": False,
    }
    # The object form replaces the whole mode: absent keys are off, as the reference reads them.
    n = saved_network(v6AssignMode={"rfc4193": True})
    assert n["v6AssignMode"] == {"rfc4193": True, "zt": False, "6plane": False}
    n2 = apply_network_post(n, {"v6AssignMode": {"6plane": True}}, NOW)
    assert n2["v6AssignMode"] == {"rfc4193": False, "zt": False, "6plane": True}
    bad_network({"v6AssignMode": "rfc4193,bogus"}, "bogus")
    bad_network({"v6AssignMode": ["zt"]}, "v6AssignMode")
    bad_network({"v6AssignMode": {"zt": 1}}, "v6AssignMode.zt")


def test_routes() -> None:
    n = saved_network(
        routes=[
            {"target": "10.1.0.0/16", "via": None},
            {"target": "0.0.0.0/0", "via": "10.1.0.1"},
            {"target": "fd00:0:0:0::/64"},
            {"target": "10.2.3.4/8", "via": ""},
        ]
    )
    assert n["routes"] == [
        {"target": "10.1.0.0/16", "via": None},
        {"target": "0.0.0.0/0", "via": "10.1.0.1"},
        {"target": "fd00::/64", "via": None},
        {"target": "10.2.3.4/8", "via": None},  # host bits kept, as ZeroTierOne keeps them
    ]


@pytest.mark.parametrize(
    "routes",
    [
        "10.0.0.0/8",
        [{"target": "10.0.0.0"}],
        [{"target": "10.0.0.300/8"}],
        [{"target": "10.0.0.0/33"}],
        [{"target": "fd00::/129"}],
        [{"target": "10.0.0.0/x"}],
        [{"target": 10}],
        [{"via": "10.0.0.1"}],
        [{"target": "10.0.0.0/8", "via": "fd00::1"}],
        [{"target": "10.0.0.0/8", "via": "nonsense"}],
        [{"target": "fe80::%eth0/64"}],
        ["10.0.0.0/8"],
        [{"target": "10.0.0.0/8"}] * 129,
    ],
)
def test_bad_routes(routes: Any) -> None:
    bad_network({"routes": routes}, "routes")


def test_pools() -> None:
    n = saved_network(
        ipAssignmentPools=[
            {"ipRangeStart": "10.0.0.1", "ipRangeEnd": "10.0.0.254"},
            {"ipRangeStart": "fd00::0001", "ipRangeEnd": "fd00::ffff"},
            {"ipRangeStart": "10.9.9.9", "ipRangeEnd": "10.9.9.9"},
        ]
    )
    assert n["ipAssignmentPools"] == [
        {"ipRangeStart": "10.0.0.1", "ipRangeEnd": "10.0.0.254"},
        {"ipRangeStart": "fd00::1", "ipRangeEnd": "fd00::ffff"},
        {"ipRangeStart": "10.9.9.9", "ipRangeEnd": "10.9.9.9"},
    ]


@pytest.mark.parametrize(
    "pools",
    [
        {"ipRangeStart": "10.0.0.1", "ipRangeEnd": "10.0.0.2"},
        [{"ipRangeStart": "10.0.0.1"}],
        [{"ipRangeStart": "10.0.0.1", "ipRangeEnd": "fd00::1"}],
        [{"ipRangeStart": "10.0.0.9", "ipRangeEnd": "10.0.0.1"}],
        [{"ipRangeStart": "10.0.0.1/24", "ipRangeEnd": "10.0.0.9"}],
        [{"ipRangeStart": "hello", "ipRangeEnd": "10.0.0.9"}],
        [{"ipRangeStart": 167772161, "ipRangeEnd": "10.0.0.9"}],
    ],
)
def test_bad_pools(pools: Any) -> None:
    bad_network({"ipAssignmentPools": pools}, "ipAssignmentPools")


def test_rules_rendered() -> None:
    n = saved_network(
        rules=[
            {"type": "MATCH_ETHERTYPE", "etherType": 2048, "not": True, "or": False},
            {"type": "ACTION_ACCEPT", "not": False, "or": False},
            {"type": "ACTION_DROP"},
        ]
    )
    assert n["rules"] == [
        {"type": "MATCH_ETHERTYPE", "etherType": 2048, "not": True, "or": False},
        {"type": "ACTION_ACCEPT"},
        {"type": "ACTION_DROP"},
    ]
    assert saved_network(rules=[])["rules"] == []


@pytest.mark.parametrize(
    "rules",
    [
        {"type": "ACTION_DROP"},
        [{"type": "NO_SUCH_RULE"}],
        [{}],
        ["ACTION_DROP"],
        [{"type": "ACTION_PRIORITY"}],  # the reference controller cannot parse it either
        [{"type": "ACTION_DROP"}] * 1025,
    ],
)
def test_bad_rules(rules: Any) -> None:
    bad_network({"rules": rules}, "rules")


def test_auth_tokens() -> None:
    n = saved_network(authTokens={"abc": 0, "def": NOW + 1000})
    assert n["authTokens"] == {"abc": 0, "def": NOW + 1000}
    for reset in (None, [], [None]):
        assert apply_network_post(n, {"authTokens": reset}, NOW)["authTokens"] == [None]
    bad_network({"authTokens": {"abc": -1}}, "authTokens")
    bad_network({"authTokens": {"abc": "0"}}, "authTokens")
    bad_network({"authTokens": ["abc"]}, "authTokens")


def test_capabilities_sorted_deduped() -> None:
    n = saved_network(
        capabilities=[
            {"id": 9, "rules": [{"type": "ACTION_DROP"}]},
            {"id": 1, "default": True, "rules": []},
            {"id": 9, "default": True},  # a later entry with the same id wins
        ]
    )
    assert n["capabilities"] == [
        {"id": 1, "default": True, "rules": []},
        {"id": 9, "default": True, "rules": []},
    ]


@pytest.mark.parametrize(
    "caps",
    [
        {"id": 1},
        [{"default": True}],
        [{"id": -1}],
        [{"id": 1 << 32}],
        [{"id": "1"}],
        [{"id": 1, "default": 1}],
        [{"id": 1, "rules": [{"type": "BOGUS"}]}],
        [{"id": 1, "rules": [{"type": "ACTION_DROP"}] * 65}],
        [{"id": i} for i in range(129)],
        [1],
    ],
)
def test_bad_capabilities(caps: Any) -> None:
    bad_network({"capabilities": caps}, "capabilities")


def test_network_tags() -> None:
    n = saved_network(tags=[{"id": 5, "default": 2}, {"id": 1}, {"id": 5, "default": None}])
    assert n["tags"] == [{"id": 1, "default": None}, {"id": 5, "default": None}]
    bad_network({"tags": [{"id": 1, "default": "x"}]}, "tags")
    bad_network({"tags": [{"id": 1, "default": -1}]}, "tags")
    bad_network({"tags": [[1, 2]]}, "tags")
    bad_network({"tags": [{"default": 1}]}, "tags")


def test_dns() -> None:
    n = saved_network(dns={"domain": "zt.example", "servers": ["10.0.0.1", "fd00::0001"]})
    assert n["dns"] == {"domain": "zt.example", "servers": ["10.0.0.1", "fd00::1"]}
    assert saved_network(dns={})["dns"] == {"domain": "", "servers": []}
    assert apply_network_post(n, {"dns": []}, NOW)["dns"] == []
    assert apply_network_post(n, {"dns": None}, NOW)["dns"] == []
    bad_network({"dns": {"domain": 5}}, "dns.domain")
    bad_network({"dns": {"domain": "x" * 128}}, "dns.domain")
    bad_network({"dns": {"servers": ["a.b"]}}, "dns.servers")
    bad_network({"dns": {"servers": ["10.0.0.1"] * 5}}, "dns.servers")
    bad_network({"dns": ["10.0.0.1"]}, "dns")


def test_error_changes_nothing_even_after_good_fields() -> None:
    """A bad field after good ones rejects the whole POST."""
    bad_network({"name": "new name", "private": False, "mtu": "big"}, "mtu")


# --- member fields ---------------------------------------------------------------------------


def test_authorize_and_deauthorize_record_times() -> None:
    m = saved_member()
    a = apply_member_post(m, {"authorized": True}, NOW + 10)
    assert a["authorized"] is True
    assert a["lastAuthorizedTime"] == NOW + 10
    assert a["lastAuthorizedCredentialType"] == "api"
    assert a["lastAuthorizedCredential"] is None
    assert a["revision"] == 2
    again = apply_member_post(a, {"authorized": True}, NOW + 20)
    assert again == a  # no change, no new timestamp, no revision bump
    d = apply_member_post(a, {"authorized": False}, NOW + 30)
    assert d["authorized"] is False
    assert d["lastDeauthorizedTime"] == NOW + 30
    assert d["lastAuthorizedTime"] == NOW + 10
    assert d["lastAuthorizedCredentialType"] == "api"
    assert d["revision"] == 3


def test_member_scalar_fields() -> None:
    m = saved_member(
        activeBridge=True,
        noAutoAssignIps=True,
        authenticationExpiryTime=5,
        name="laptop",
        remoteTraceTarget="0123456789",
        remoteTraceLevel=2,
        authenticationURL="https://example/",
    )
    assert m["activeBridge"] is True
    assert m["noAutoAssignIps"] is True
    assert m["authenticationExpiryTime"] == 5
    assert m["name"] == "laptop"
    assert m["remoteTraceTarget"] == "0123456789"
    assert m["remoteTraceLevel"] == 2
    assert "authenticationURL" not in m  # computed in ZeroTierOne, never stored


def test_member_ip_assignments() -> None:
    m = saved_member(ipAssignments=["10.0.0.5", "fd00:0::1", "10.0.0.5"])
    assert m["ipAssignments"] == ["10.0.0.5", "fd00::1"]
    assert apply_member_post(m, {"ipAssignments": []}, NOW)["ipAssignments"] == []


def test_member_tags_and_caps() -> None:
    m = saved_member(tags=[[5, 1], [1, 7], [5, 2]], capabilities=[9, 1, 9, 3])
    assert m["tags"] == [[1, 7], [5, 2]]
    assert m["capabilities"] == [1, 3, 9]


@pytest.mark.parametrize(
    "body",
    [
        {"authorized": "true"},
        {"authorized": 1},
        {"activeBridge": None},
        {"noAutoAssignIps": "no"},
        {"authenticationExpiryTime": -1},
        {"authenticationURL": 3},
        {"name": ["x"]},
        {"remoteTraceTarget": "short"},
        {"remoteTraceLevel": "1"},
        {"ipAssignments": "10.0.0.1"},
        {"ipAssignments": [167772161]},  # ZeroTierOne answers 500 here
        {"ipAssignments": ["10.0.0.1/24"]},
        {"ipAssignments": ["not an ip"]},
        {"tags": [[1]]},
        {"tags": [[1, "a"]]},
        {"tags": [{"id": 1, "value": 2}]},
        {"tags": [[-1, 1]]},
        {"capabilities": ["1"]},
        {"capabilities": [1 << 32]},
        {"capabilities": 1},
    ],
)
def test_bad_member_fields(body: dict[str, Any]) -> None:
    bad_member(body, next(iter(body)))


def test_member_readonly_fields_ignored() -> None:
    m = saved_member()
    got = apply_member_post(
        m,
        {
            "identity": "1234567890:0:00",
            "vMajor": 9,
            "revision": 50,
            "lastAuthorizedTime": 1,
            "lastAuthorizedCredentialType": "public",
            "ssoExempt": True,
            "id": "ffffffffff",
            "nwid": "0",
            "physicalAddr": "1.2.3.4/5",
        },
        NOW,
    )
    assert got == m


# --- ids -------------------------------------------------------------------------------------


def test_parse_ids() -> None:
    assert parse_nwid("8056C2E21C000001") == NWID
    assert parse_address("1234567890") == ADDR
    for text in ("8056c2e21c00001", "8056c2e21c0000011", "8056c2e21c00000g", ""):
        with pytest.raises(ApiError) as e:
            parse_nwid(text)
        assert e.value.status == 404
    for text in ("123456789", "12345678901", "12345678zz"):
        with pytest.raises(ApiError):
            parse_address(text)
