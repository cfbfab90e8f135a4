"""The controller HTTP API: ZeroTierOne's routes and JSON, and clean 4xx errors that change
nothing (§10.5). Most tests call the server's dispatcher directly; one goes over a socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.data import test_identities
from ztnode.controller.configbuild import build_config
from ztnode.controller.controller import Controller
from ztnode.controller.store import ControllerStore, Store
from ztnode.testing.world import seeded_random_bytes
from ztnode.transport.controllerapi import register_controller_routes
from ztnode.transport.httpapi import JsonApi, Request, fetch_json
from ztnode.wire.netconf import NetworkConfigRequestMetadata

IDS = test_identities()
CTL = IDS[0]
M1, M2 = IDS[1], IDS[2]
CTL_HEX = f"{CTL.address:010x}"
TOKEN = "s3cret-token"
T0 = 1_700_000_000_000


class Harness:
    def __init__(self, store: Store | None = None) -> None:
        self.now = T0
        self.changes = 0
        self.on_change: Callable[[], None] | None = None
        self.ctl = Controller(
            CTL,
            store if store is not None else ControllerStore(":memory:"),
            random_bytes=seeded_random_bytes(11),
            config_builder=build_config,
        )
        self.api = JsonApi(TOKEN)
        register_controller_routes(self.api, self.ctl, self.clock, self.changed)

    def clock(self) -> int:
        self.now += 1
        return self.now

    def changed(self) -> None:
        self.changes += 1
        if self.on_change is not None:
            self.on_change()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, list[str]] | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        hdrs = {"x-zt1-auth": TOKEN} if headers is None else headers
        req = Request(method, path, query or {}, hdrs, data)
        return asyncio.run(self.api.dispatch(req))

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, out = self.call(method, path, body)
        assert status == 200, (status, out)
        return out

    def snapshot(self) -> Any:
        store = self.ctl.store
        return {n: (store.get_network(n), store.members(n)) for n in store.network_ids()}

    def create(self, body: Any = None) -> str:
        nwid: str = self.ok("POST", "/controller/network", body or {})["id"]
        return nwid


def test_controller_status(h: Harness) -> None:
    out = h.ok("GET", "/controller")
    assert out == {"controller": True, "apiVersion": 4, "clock": h.now, "databaseReady": True}


def test_create_list_get_update_delete_network(h: Harness) -> None:
    assert h.ok("GET", "/controller/network") == []
    created = h.ok("POST", "/controller/network", {"name": "first", "private": False})
    nwid = created["id"]
    assert len(nwid) == 16 and nwid.startswith(CTL_HEX)
    assert created["nwid"] == nwid and created["objtype"] == "network"
    assert created["name"] == "first" and created["private"] is False
    assert created["revision"] == 1
    put = h.ok("PUT", "/controller/network", {})
    assert put["id"] != nwid
    assert sorted(h.ok("GET", "/controller/network")) == sorted([nwid, put["id"]])
    assert h.ok("GET", f"/controller/network/{nwid}") == created
    assert h.ok("GET", f"/controller/network/{nwid.upper()}") == created
    updated = h.ok("POST", f"/controller/network/{nwid}", {"mtu": 1400})
    assert updated["mtu"] == 1400 and updated["revision"] == 2 and updated["name"] == "first"
    assert h.ok("PUT", f"/controller/network/{nwid}/", {"mtu": 1500})["mtu"] == 1500
    deleted = h.ok("DELETE", f"/controller/network/{nwid}")
    assert deleted["mtu"] == 1500
    assert h.ok("GET", "/controller/network") == [put["id"]]
    assert h.call("GET", f"/controller/network/{nwid}")[0] == 404


def test_legacy_create_form(h: Harness) -> None:
    out = h.ok("POST", f"/controller/network/{CTL_HEX}______", {"name": "legacy"})
    assert out["id"].startswith(CTL_HEX) and out["name"] == "legacy"
    assert out["id"][10:] != "______"
    out2 = h.ok("PUT", f"/controller/network/{CTL_HEX.upper()}______", {})
    assert out2["id"].startswith(CTL_HEX)
    before = h.snapshot()
    status, err = h.call("POST", "/controller/network/0123456789______", {})
    assert status == 400 and "error" in err
    status, _ = h.call("POST", "/controller/network/zz______", {})
    assert status == 400
    status, _ = h.call("GET", f"/controller/network/{CTL_HEX}______")
    assert status == 404
    assert h.snapshot() == before


def test_post_network_id_creates(h: Harness) -> None:
    nwid = f"{CTL_HEX}abcdef"
    out = h.ok("POST", f"/controller/network/{nwid}", {"name": "explicit"})
    assert out["id"] == nwid and out["revision"] == 1
    # A network id that does not start with our address is refused (ZeroTierOne stores it).
    status, err = h.call("POST", f"/controller/network/{M1.address:010x}abcdef", {})
    assert status == 400 and CTL_HEX in err["error"]
    assert h.ok("GET", "/controller/network") == [nwid]


def test_members(h: Harness) -> None:
    nwid = h.create()
    base = f"/controller/network/{nwid}/member"
    assert h.ok("GET", base) == {}
    a1 = f"{M1.address:010x}"
    m = h.ok("POST", f"{base}/{a1}", {"authorized": True, "name": "one"})
    assert m["id"] == m["address"] == a1 and m["nwid"] == nwid and m["objtype"] == "member"
    assert m["authorized"] is True and m["lastAuthorizedCredentialType"] == "api"
    assert m["lastAuthorizedTime"] == h.now
    a2 = f"{M2.address:010x}"
    h.ok("PUT", f"{base}/{a2.upper()}", {})
    h.ok("POST", f"{base}/{a2}", {"name": "two"})
    assert h.ok("GET", base) == {a1: 1, a2: 2}
    assert h.ok("GET", f"{base}/{a1}") == m
    old = h.ok("DELETE", f"{base}/{a1}")
    assert old == m
    assert h.ok("GET", base) == {a2: 2}
    assert h.call("GET", f"{base}/{a1}")[0] == 404
    assert h.call("DELETE", f"{base}/{a1}")[0] == 404


def test_unstable_routes(h: Harness) -> None:
    n1 = h.create({"name": "a"})
    n2 = h.create({"name": "b"})
    h.ok("POST", f"/controller/network/{n1}/member/{M1.address:010x}", {"authorized": True})
    h.ok("POST", f"/controller/network/{n1}/member/{M2.address:010x}", {})
    out = h.ok("GET", "/unstable/controller/network")
    assert out["meta"] == {"networkCount": 2}
    by_id = {n["id"]: n for n in out["data"]}
    assert by_id[n1]["meta"] == {"totalMemberCount": 2, "authorizedMemberCount": 1}
    assert by_id[n2]["meta"] == {"totalMemberCount": 0, "authorizedMemberCount": 0}
    assert by_id[n1]["name"] == "a"
    assert "meta" not in h.ok("GET", f"/controller/network/{n1}")  # not stored
    members = h.ok("GET", f"/unstable/controller/network/{n1}/member")
    assert members["meta"] == {"totalCount": 2, "authorizedCount": 1}
    assert {m["id"] for m in members["data"]} == {f"{M1.address:010x}", f"{M2.address:010x}"}
    missing = f"{CTL_HEX}000999"
    assert h.call("GET", f"/unstable/controller/network/{missing}/member")[0] == 404


def test_unknown_network_404_changes_nothing(h: Harness) -> None:
    nwid = h.create()
    before = h.snapshot()
    missing = f"{CTL_HEX}000999"
    for method, path, body in (
        ("GET", f"/controller/network/{missing}", None),
        ("DELETE", f"/controller/network/{missing}", None),
        ("GET", f"/controller/network/{missing}/member", None),
        ("GET", f"/controller/network/{missing}/member/{M1.address:010x}", None),
        ("POST", f"/controller/network/{missing}/member/{M1.address:010x}", {"authorized": True}),
        ("DELETE", f"/controller/network/{missing}/member/{M1.address:010x}", None),
        ("GET", f"/controller/network/{nwid}/member/{M1.address:010x}", None),
        ("GET", "/controller/network/123", None),
        ("POST", "/controller/network/12345678901234567", {}),
        ("POST", f"/controller/network/{nwid}/member/123", {}),
        ("GET", "/controller/nothing", None),
    ):
        status, out = h.call(method, path, body)
        assert status == 404, (method, path, status, out)
        assert isinstance(out, dict) and isinstance(out.get("error"), str)
    assert h.snapshot() == before
    assert h.changes == 1  # only the create


def test_malformed_json_400(h: Harness) -> None:
    nwid = h.create()
    member = f"/controller/network/{nwid}/member/{M1.address:010x}"
    before = h.snapshot()
    for path in ("/controller/network", f"/controller/network/{nwid}", member):
        for raw in (
            b"{",
            b"{'a': 1}",
            b"\xff\xfe",
            b'{"name": "x",}',
            b"nul",
            b"[" * 100_000,  # deeper than json's recursion limit
            b'{"mtu": ' + b"9" * 5000 + b"}",  # beyond int's digit limit
        ):
            status, out = h.call("POST", path, raw=raw)
            assert status == 400, (path, raw)
            assert "malformed JSON" in out["error"]
    assert h.snapshot() == before


@pytest.mark.parametrize(
    "body",
    [
        [],
        "name",
        42,
        None,
        {"name": 1},
        {"private": "yes"},
        {"mtu": "1400"},
        {"routes": [{"target": "not-an-ip/8"}]},
        {"ipAssignmentPools": [{"ipRangeStart": "10.0.0.1", "ipRangeEnd": "x"}]},
        {"rules": [{"type": "WHAT"}]},
        {"v6AssignMode": 3},
        {"authTokens": "abc"},
        {"capabilities": [{"id": "x"}]},
        {"tags": {"id": 1}},
        {"dns": {"servers": "10.0.0.1"}},
        {"name": "ok", "multicastLimit": -1},
    ],
)
def test_wrong_types_network_400(h: Harness, body: Any) -> None:
    nwid = h.create({"name": "orig"})
    before = h.snapshot()
    changes = h.changes
    raw = json.dumps(body).encode()
    for method, path in (
        ("POST", "/controller/network"),
        ("PUT", "/controller/network"),
        ("POST", f"/controller/network/{CTL_HEX}______"),
        ("POST", f"/controller/network/{nwid}"),
        ("POST", f"/controller/network/{CTL_HEX}777777"),
    ):
        status, out = h.call(method, path, raw=raw)
        assert status == 400, (method, path, out)
        assert isinstance(out["error"], str) and out["error"]
    assert h.snapshot() == before
    assert h.changes == changes


@pytest.mark.parametrize(
    "body",
    [
        [],
        "x",
        {"authorized": "true"},
        {"authorized": 1},
        {"ipAssignments": [1]},
        {"ipAssignments": ["10.0.0.1", "bad"]},
        {"tags": [[1, 2, 3]]},
        {"capabilities": "1"},
        {"activeBridge": "false"},
        {"name": None},
        {"authorized": True, "noAutoAssignIps": 0},
    ],
)
def test_wrong_types_member_400(h: Harness, body: Any) -> None:
    nwid = h.create()
    h.ok("POST", f"/controller/network/{nwid}/member/{M1.address:010x}", {"name": "m"})
    before = h.snapshot()
    for addr in (M1.address, M2.address):
        path = f"/controller/network/{nwid}/member/{addr:010x}"
        status, out = h.call("POST", path, body)
        assert status == 400, out
    assert h.snapshot() == before


def test_reserved_member_address_400(h: Harness) -> None:
    nwid = h.create()
    before = h.snapshot()
    for addr in ("ff00000001", "0000000000"):
        status, _ = h.call("POST", f"/controller/network/{nwid}/member/{addr}", {})
        assert status == 400
    assert h.snapshot() == before


def test_auth(h: Harness) -> None:
    nwid = h.create()
    before = h.snapshot()
    for headers, query in (
        ({}, None),
        ({"x-zt1-auth": "wrong"}, None),
        ({"authorization": "Bearer wrong"}, None),
        ({}, {"auth": ["wrong"]}),
    ):
        for method, path in (
            ("GET", "/controller"),
            ("GET", "/controller/network"),
            ("POST", "/controller/network"),
            ("DELETE", f"/controller/network/{nwid}"),
            ("POST", f"/controller/network/{nwid}/member/{M1.address:010x}"),
        ):
            status, out = h.call(method, path, {}, headers=headers, query=query)
            assert status == 401 and "error" in out
    assert h.snapshot() == before
    assert h.call("GET", "/controller", headers={"authorization": f"Bearer {TOKEN}"})[0] == 200
    assert h.call("GET", "/controller", headers={}, query={"auth": [TOKEN]})[0] == 200


def test_wrong_method_405(h: Harness) -> None:
    assert h.call("DELETE", "/controller")[0] == 405
    assert h.call("DELETE", "/controller/network")[0] == 405
    assert h.call("POST", "/unstable/controller/network", {})[0] == 405


def test_empty_body_is_empty_object(h: Harness) -> None:
    out = h.ok("POST", "/controller/network")
    assert out["name"] == "" and out["private"] is True


def test_on_change_only_after_edits(h: Harness) -> None:
    nwid = h.create()
    assert h.changes == 1
    h.ok("GET", f"/controller/network/{nwid}")
    h.ok("GET", "/controller/network")
    h.ok("GET", f"/controller/network/{nwid}/member")
    assert h.changes == 1
    h.ok("POST", f"/controller/network/{nwid}", {"name": "x"})
    h.ok("POST", f"/controller/network/{nwid}/member/{M1.address:010x}", {})
    h.ok("DELETE", f"/controller/network/{nwid}/member/{M1.address:010x}")
    h.ok("DELETE", f"/controller/network/{nwid}")
    assert h.changes == 5


def test_edit_reaches_online_member_at_once(h: Harness) -> None:
    """The API's edit queues a push for an online member, ready when on_change fires."""
    nwid = h.create({"name": "v1"})
    h.ok("POST", f"/controller/network/{nwid}/member/{M1.address:010x}", {"authorized": True})
    answer = h.ctl.handle_request(
        M1.public(), int(nwid, 16), NetworkConfigRequestMetadata().encode(), h.clock()
    )
    assert answer is not None and answer.config is not None and answer.config.name == "v1"
    pushed: list[str] = []
    h.on_change = lambda: pushed.extend(p.config.name for p in h.ctl.pending_pushes(h.now))
    h.ok("POST", f"/controller/network/{nwid}", {"name": "v2"})
    assert pushed == ["v2"]


@pytest.mark.e2e
def test_over_a_socket() -> None:
    """Real HTTP: headers, keep-alive, JSON bodies, status codes."""
    h = Harness()

    async def run() -> None:
        port = await h.api.start("127.0.0.1", 0)
        try:
            status, out = await fetch_json("127.0.0.1", port, "GET", "/controller", TOKEN)
            assert status == 200 and out["apiVersion"] == 4
            status, net = await fetch_json(
                "127.0.0.1", port, "POST", f"/controller/network/{CTL_HEX}______", TOKEN, {}
            )
            assert status == 200 and net["id"].startswith(CTL_HEX)
            status, _ = await fetch_json("127.0.0.1", port, "GET", "/controller", "bad")
            assert status == 401
            status, out = await fetch_json(
                "127.0.0.1", port, "POST", f"/controller/network/{net['id']}", TOKEN, [1]
            )
            assert status == 400 and "object" in out["error"]
        finally:
            await h.api.close()

    asyncio.run(run())


# --- fuzz ------------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_network_keys = st.sampled_from(
    [
        "name",
        "private",
        "enableBroadcast",
        "multicastLimit",
        "mtu",
        "remoteTraceTarget",
        "remoteTraceLevel",
        "v4AssignMode",
        "v6AssignMode",
        "routes",
        "ipAssignmentPools",
        "rules",
        "authTokens",
        "capabilities",
        "tags",
        "dns",
        "rulesSource",
        "id",
        "revision",
    ]
)
_member_keys = st.sampled_from(
    [
        "authorized",
        "activeBridge",
        "noAutoAssignIps",
        "authenticationExpiryTime",
        "authenticationURL",
        "name",
        "remoteTraceTarget",
        "remoteTraceLevel",
        "ipAssignments",
        "tags",
        "capabilities",
        "identity",
    ]
)
# Values that some field accepts, so that accepted bodies are explored too, not only refusals.
_plausible = st.sampled_from(
    [
        True,
        False,
        0,
        32,
        1500,
        "",
        "zt",
        "rfc4193,6plane",
        "0123456789",
        [],
        [None],
        {"zt": True},
        {"tok": 0},
        {"domain": "d", "servers": ["10.0.0.1"]},
        [{"target": "10.0.0.0/24", "via": None}],
        [{"ipRangeStart": "10.0.0.1", "ipRangeEnd": "10.0.0.9"}],
        [{"type": "ACTION_ACCEPT"}, {"type": "MATCH_IP_PROTOCOL", "ipProtocol": 6}],
        [{"id": 1, "default": True, "rules": []}],
        [{"id": 1, "default": None}],
        ["10.0.0.7", "fd00::7"],
        [[1, 2]],
        [3, 1],
    ]
)
_network_bodies = _json | st.dictionaries(_network_keys, _plausible | _json, max_size=5)
_member_bodies = _json | st.dictionaries(_member_keys, _plausible | _json, max_size=5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_network_bodies)
def test_fuzz_network_post_never_500(body: Any) -> None:
    h = Harness()
    nwid = h.create({"name": "base"})
    before = h.snapshot()
    for method, path in (
        ("POST", f"/controller/network/{nwid}"),
        ("POST", "/controller/network"),
    ):
        status, out = h.call(method, path, body)
        assert status in (200, 400), (status, out)
        if status == 400:
            assert h.snapshot() == before
        else:
            json.dumps(out)  # serialisable
            # Whatever was accepted can be read back and posted again unchanged.
            again = h.ok("POST", f"/controller/network/{out['id']}", out)
            assert again["revision"] <= out["revision"] + 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_member_bodies)
def test_fuzz_member_post_never_500(body: Any) -> None:
    h = Harness()
    nwid = h.create()
    path = f"/controller/network/{nwid}/member/{M1.address:010x}"
    h.ok("POST", path, {"authorized": True})
    before = h.snapshot()
    status, out = h.call("POST", path, body)
    assert status in (200, 400), (status, out)
    if status == 400:
        assert h.snapshot() == before
    else:
        assert h.ok("POST", path, out) == out
