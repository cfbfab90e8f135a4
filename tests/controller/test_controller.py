"""The hosted controller's request policy and change propagation (§10.3/10.4), sans-I/O."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from ztnode.controller import open_controller
from ztnode.controller.configbuild import build_config
from ztnode.controller.controller import (
    MIN_REQUEST_INTERVAL,
    ONLINE_WINDOW,
    RECENT_CONFIG_WINDOW,
    Controller,
)
from ztnode.controller.model import ApiError
from ztnode.controller.store import ControllerStore, Store
from ztnode.core.controller_iface import ConfigAnswer, HostedController
from ztnode.identity import Identity
from ztnode.testing.world import seeded_random_bytes
from ztnode.wire.constants import ErrorCode
from ztnode.wire.credentials import CredentialType
from ztnode.wire.dictionary import Dictionary
from ztnode.wire.netconf import AuthInfoKey, NetworkConfig, NetworkConfigRequestMetadata

IDS = test_identities()
CTL = IDS[0]
M1, M2, M3 = IDS[1], IDS[2], IDS[3]
T0 = 1_700_000_000_000
META = NetworkConfigRequestMetadata().encode()


class StubBuilder:
    """Stands in for configbuild: a bare config, and the member given one IP from a counter
    (unless it has one), so that persistence of builder changes can be checked."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = False
        self.counter = itertools.count(1)

    def __call__(
        self,
        controller: Identity,
        network: dict[str, Any],
        member: dict[str, Any],
        member_identity: Identity,
        now: int,
        random_bytes: Callable[[int], bytes],
        allocated: Callable[[int], Iterable[IPv4Address | IPv6Address]] | None = None,
        *,
        active_bridges: Iterable[int] | None = None,
        new_member: bool | None = None,
    ) -> tuple[NetworkConfig, dict[str, Any]]:
        nwid = int(network["id"], 16)
        self.calls.append(
            {
                "member": member_identity.address,
                "allocated": list(allocated(nwid)) if allocated else [],
                "bridges": sorted(active_bridges or ()),
                "new": new_member,
            }
        )
        if self.fail:
            raise RuntimeError("builder bug")
        out = dict(member)
        if not out["ipAssignments"]:
            out["ipAssignments"] = [f"10.9.0.{next(self.counter)}"]
        config = NetworkConfig(
            network_id=nwid,
            timestamp=now,
            issued_to=member_identity.address,
            revision=network["revision"],
            name=network["name"],
        )
        return config, out


@pytest.fixture
def builder() -> StubBuilder:
    return StubBuilder()


@pytest.fixture
def ctl(builder: StubBuilder, controller_store: Store) -> Controller:
    return Controller(
        CTL,
        controller_store,
        random_bytes=seeded_random_bytes(1),
        config_builder=builder,
    )


def make_net(ctl: Controller, **body: Any) -> int:
    return int(ctl.create_network(body, T0)["id"], 16)


def ask(ctl: Controller, who: Identity, nwid: int, now: int, meta: bytes = META) -> ConfigAnswer:
    answer = ctl.handle_request(who.public(), nwid, meta, now, ("192.0.2.1", 9993))
    assert answer is not None
    return answer


def test_is_a_hosted_controller(ctl: Controller) -> None:
    hosted: HostedController = ctl
    assert hosted.serves((CTL.address << 24) | 5)
    assert not hosted.serves((M1.address << 24) | 5)
    assert not hosted.serves(-1)


def test_needs_private_key(builder: StubBuilder) -> None:
    with pytest.raises(Exception, match="private"):
        Controller(
            CTL.public(),
            ControllerStore(":memory:"),
            random_bytes=seeded_random_bytes(1),
            config_builder=builder,
        )


def test_not_our_network_is_silent(ctl: Controller) -> None:
    assert ctl.handle_request(M1.public(), (M2.address << 24) | 1, META, T0) is None


def test_unknown_network_not_found(ctl: Controller) -> None:
    nwid = (CTL.address << 24) | 0x123
    assert ask(ctl, M1, nwid, T0).error == ErrorCode.OBJ_NOT_FOUND
    assert ctl.store.get_member(nwid, M1.address) is None


def test_private_network_denies_and_records_member(ctl: Controller, builder: StubBuilder) -> None:
    nwid = make_net(ctl)
    answer = ask(ctl, M1, nwid, T0 + 1)
    assert answer.error == ErrorCode.NETWORK_ACCESS_DENIED and answer.config is None
    m = ctl.store.get_member(nwid, M1.address)
    assert m is not None
    assert m["identity"] == M1.public().to_string()
    assert m["authorized"] is False
    assert m["revision"] == 1
    assert m["vMajor"] == -1  # version info only from authorised requests
    assert m["creationTime"] == T0 + 1
    assert builder.calls == []
    # Asking again (after the rate limit) changes nothing stored.
    assert ask(ctl, M1, nwid, T0 + 5000).error == ErrorCode.NETWORK_ACCESS_DENIED
    assert ctl.store.get_member(nwid, M1.address) == m


def test_authorized_member_gets_config(ctl: Controller, builder: StubBuilder) -> None:
    nwid = make_net(ctl, name="office")
    ctl.update_member(nwid, M1.address, {"authorized": True}, T0 + 1)
    meta = NetworkConfigRequestMetadata(major_version=1, minor_version=12, revision=2).encode()
    answer = ask(ctl, M1, nwid, T0 + 2, meta)
    assert answer.error is None and answer.config is not None
    assert answer.config.name == "office"
    assert answer.config.issued_to == M1.address
    m = ctl.store.get_member(nwid, M1.address)
    assert m is not None
    assert (m["vMajor"], m["vMinor"], m["vRev"], m["vProto"]) == (1, 12, 2, 12)
    assert m["ipAssignments"] == ["10.9.0.1"]  # the builder's change is persisted
    assert m["identity"] == M1.public().to_string()
    assert builder.calls[-1]["new"] is False  # created by the API before its first request


def test_new_member_flag_and_other_members_passed(ctl: Controller, builder: StubBuilder) -> None:
    nwid = make_net(ctl, private=False)
    ctl.update_member(nwid, M2.address, {"activeBridge": True, "ipAssignments": ["10.1.1.1"]}, T0)
    ask(ctl, M1, nwid, T0 + 1)
    call = builder.calls[-1]
    assert call["new"] is True
    assert call["bridges"] == [M2.address]
    assert call["allocated"] == [IPv4Address("10.1.1.1")]


def test_rate_limit(ctl: Controller) -> None:
    nwid = make_net(ctl, private=False)
    assert ask(ctl, M1, nwid, T0).config is not None
    assert ctl.handle_request(M1.public(), nwid, META, T0 + 500) is None
    assert ctl.handle_request(M1.public(), nwid, META, T0 + MIN_REQUEST_INTERVAL) is None
    # Another member is not limited by M1's request.
    assert ask(ctl, M2, nwid, T0 + 500).config is not None
    assert ask(ctl, M1, nwid, T0 + MIN_REQUEST_INTERVAL + 1).config is not None


def test_identity_mismatch_denied(ctl: Controller) -> None:
    nwid = make_net(ctl, private=False)
    assert ask(ctl, M1, nwid, T0).config is not None
    stored = ctl.store.get_member(nwid, M1.address)
    impostor = Identity(M1.address, M2.public_key)  # same address, another key
    answer = ctl.handle_request(impostor, nwid, META, T0 + 5000)
    assert answer is not None and answer.error == ErrorCode.NETWORK_ACCESS_DENIED
    assert ctl.store.get_member(nwid, M1.address) == stored


def test_corrupt_stored_identity_denied(ctl: Controller) -> None:
    nwid = make_net(ctl, private=False)
    ctl.update_member(nwid, M1.address, {"authorized": True}, T0)
    m = ctl.store.get_member(nwid, M1.address)
    assert m is not None
    m["identity"] = "garbage"
    ctl.store.put_member(m)
    assert ask(ctl, M1, nwid, T0 + 1).error == ErrorCode.NETWORK_ACCESS_DENIED


def test_public_network_auto_authorizes_persistently(ctl: Controller) -> None:
    nwid = make_net(ctl, private=False)
    assert ask(ctl, M1, nwid, T0 + 7).config is not None
    m = ctl.store.get_member(nwid, M1.address)
    assert m is not None
    assert m["authorized"] is True
    assert m["lastAuthorizedTime"] == T0 + 7
    assert m["lastAuthorizedCredentialType"] == "public"
    assert m["lastAuthorizedCredential"] is None
    # Making the network private keeps the member: its authorisation was stored.
    ctl.update_network(nwid, {"private": True}, T0 + 8)
    assert ask(ctl, M1, nwid, T0 + 5000).config is not None


def token_meta(text: str) -> bytes:
    return NetworkConfigRequestMetadata(auth=text).encode()


def test_token_authorization(ctl: Controller) -> None:
    nwid = make_net(ctl, authTokens={"forever": 0, "later": T0 + 60_000, "gone": T0 - 1})
    now = T0
    for who, token, ok in (
        (M1, "token:forever", True),
        (M2, "token:later", True),
        (M3, "token:gone", False),
        (IDS[4], "token:nope", False),
        (IDS[5], "forever", False),  # without the "token:" prefix
        (IDS[6], "token:", False),
    ):
        answer = ask(ctl, who, nwid, now, token_meta(token))
        m = ctl.store.get_member(nwid, who.address)
        assert m is not None
        if ok:
            assert answer.config is not None, token
            assert m["authorized"] is True
            assert m["lastAuthorizedCredentialType"] == "token"
            assert m["lastAuthorizedCredential"] == token[6:]
        else:
            assert answer.error == ErrorCode.NETWORK_ACCESS_DENIED, token
            assert m["authorized"] is False
    # The expiring token stops working once its time has passed, for new members.
    late = ask(ctl, IDS[7], nwid, T0 + 60_000, token_meta("token:later"))
    assert late.error == ErrorCode.NETWORK_ACCESS_DENIED


def test_garbage_metadata_is_tolerated(ctl: Controller) -> None:
    nwid = make_net(ctl, private=False)
    assert ask(ctl, M1, nwid, T0, b"\xff\x00=garbage\n" * 200).config is not None


def test_builder_failure_is_an_error_answer(ctl: Controller, builder: StubBuilder) -> None:
    nwid = make_net(ctl, private=False)
    builder.fail = True
    assert ask(ctl, M1, nwid, T0).error == ErrorCode.OBJ_NOT_FOUND
    m = ctl.store.get_member(nwid, M1.address)
    assert m is not None and m["authorized"] is True  # the auto-authorisation is kept
    builder.fail = False
    assert ask(ctl, M1, nwid, T0 + 2000).config is not None


def test_sso_requires_authentication(ctl: Controller) -> None:
    nwid = make_net(ctl)
    net = ctl.store.get_network(nwid)
    assert net is not None
    net["ssoEnabled"] = True  # not settable through the API; only a hand-made record has it
    ctl.store.put_network(net)
    ctl.update_member(nwid, M1.address, {"authorized": True}, T0)
    answer = ask(ctl, M1, nwid, T0 + 1)
    assert answer.error == ErrorCode.NETWORK_AUTHENTICATION_REQUIRED
    assert answer.error_dictionary is not None
    d = Dictionary.parse(answer.error_dictionary)
    assert d.get_int(AuthInfoKey.VERSION, 99) == 0
    ctl.update_member(nwid, M1.address, {"authenticationExpiryTime": T0 + 10**6}, T0 + 2)
    assert ask(ctl, M1, nwid, T0 + 5000).config is not None


# --- pushes ----------------------------------------------------------------------------------


def online_members(ctl: Controller, nwid: int, now: int, *who: Identity) -> None:
    for i in who:
        ctl.update_member(nwid, i.address, {"authorized": True}, now)
        assert ask(ctl, i, nwid, now).config is not None
    assert ctl.pending_pushes(now) == []  # member updates before their first request: none


def test_network_change_pushes_to_recent_members_only(ctl: Controller) -> None:
    nwid = make_net(ctl)
    online_members(ctl, nwid, T0, M1)
    online_members(ctl, nwid, T0 + ONLINE_WINDOW - 1000, M2)
    now = T0 + ONLINE_WINDOW
    ctl.update_network(nwid, {"name": "renamed"}, now)
    pushes = ctl.pending_pushes(now)
    assert [p.member for p in pushes] == [M2.address]  # M1 asked 120 s ago: not online
    assert pushes[0].config.name == "renamed"
    assert pushes[0].config.timestamp == now
    assert ctl.pending_pushes(now) == []  # drained


def test_no_push_without_a_change(ctl: Controller) -> None:
    nwid = make_net(ctl, name="same")
    online_members(ctl, nwid, T0, M1)
    ctl.update_network(nwid, {"name": "same"}, T0 + 1)
    ctl.update_member(nwid, M1.address, {"authorized": True}, T0 + 1)
    assert ctl.pending_pushes(T0 + 1) == []


def test_member_change_pushes_to_that_member(ctl: Controller) -> None:
    nwid = make_net(ctl)
    online_members(ctl, nwid, T0, M1, M2)
    ctl.update_member(nwid, M1.address, {"ipAssignments": ["10.7.7.7"]}, T0 + 10)
    pushes = ctl.pending_pushes(T0 + 10)
    assert [p.member for p in pushes] == [M1.address]


def test_pushes_coalesce_and_use_latest_data(ctl: Controller) -> None:
    nwid = make_net(ctl)
    online_members(ctl, nwid, T0, M1)
    for name in ("a", "b", "c"):
        ctl.update_network(nwid, {"name": name}, T0 + 5)
    ctl.update_member(nwid, M1.address, {"name": "x"}, T0 + 5)
    pushes = ctl.pending_pushes(T0 + 6)
    assert len(pushes) == 1 and pushes[0].config.name == "c"


def test_no_push_to_unauthorized_or_deleted(ctl: Controller) -> None:
    nwid = make_net(ctl)
    online_members(ctl, nwid, T0, M1, M2)
    ctl.update_member(nwid, M1.address, {"authorized": False}, T0 + 10)
    ctl.update_network(nwid, {"name": "n2"}, T0 + 11)
    ctl.delete_member(nwid, M2.address, T0 + 12)
    assert ctl.pending_pushes(T0 + 13) == []
    assert ctl.store.get_member(nwid, M2.address) is None  # the push did not recreate it


def test_authorizing_a_waiting_member_reaches_it_at_once(ctl: Controller) -> None:
    nwid = make_net(ctl)
    assert ask(ctl, M1, nwid, T0).error == ErrorCode.NETWORK_ACCESS_DENIED
    ctl.update_network(nwid, {"name": "x"}, T0 + 1)
    assert ctl.pending_pushes(T0 + 1) == []  # still denied: nothing to push
    ctl.update_member(nwid, M1.address, {"authorized": True}, T0 + 2)
    pushes = ctl.pending_pushes(T0 + 2)
    assert [p.member for p in pushes] == [M1.address]
    assert pushes[0].config.name == "x"
    # Not for a member that asked too long ago.
    assert ask(ctl, M2, nwid, T0).error == ErrorCode.NETWORK_ACCESS_DENIED
    ctl.update_member(nwid, M2.address, {"authorized": True}, T0 + ONLINE_WINDOW)
    assert ctl.pending_pushes(T0 + ONLINE_WINDOW) == []


def test_impostor_request_is_never_replayed(ctl: Controller) -> None:
    nwid = make_net(ctl)
    ctl.update_member(nwid, M1.address, {"authorized": True}, T0)
    assert ask(ctl, M1, nwid, T0).config is not None
    impostor = Identity(M1.address, M2.public_key)
    answer = ctl.handle_request(impostor, nwid, token_meta("token:x"), T0 + 5000)
    assert answer is not None and answer.error == ErrorCode.NETWORK_ACCESS_DENIED
    ctl.update_network(nwid, {"name": "y"}, T0 + 5001)
    pushes = ctl.pending_pushes(T0 + 5001)
    assert [p.member for p in pushes] == [M1.address]
    assert ctl._status[(nwid, M1.address)].identity == M1.public()


# --- revocations -----------------------------------------------------------------------------


def test_deauthorize_revokes_at_online_members(ctl: Controller) -> None:
    nwid = make_net(ctl)
    online_members(ctl, nwid, T0, M1, M2)
    online_members(ctl, nwid, T0 - ONLINE_WINDOW, M3)  # long quiet: not a recipient
    now = T0 + 1000
    ctl.update_member(nwid, M1.address, {"authorized": False}, now)
    revs = ctl.pending_revocations(now)
    assert len(revs) == 1
    rp = revs[0]
    assert rp.network_id == nwid
    assert set(rp.recipients) == {M1.address, M2.address}
    r = rp.revocation
    assert r.target == M1.address
    assert r.threshold == now
    assert r.credential_id == 0
    assert r.credential_type == CredentialType.COM
    assert r.fast_propagate
    assert r.network_id == nwid
    assert r.signed_by == CTL.address
    assert r.verify(CTL.public())
    assert ctl.pending_revocations(now) == []
    # Deauthorising again changes nothing and revokes nothing.
    ctl.update_member(nwid, M1.address, {"authorized": False}, now + 1)
    assert ctl.pending_revocations(now + 1) == []


def test_other_member_edits_do_not_revoke(ctl: Controller) -> None:
    nwid = make_net(ctl)
    online_members(ctl, nwid, T0, M1)
    ctl.update_member(nwid, M1.address, {"name": "n"}, T0 + 1)
    ctl.update_network(nwid, {"name": "n"}, T0 + 1)
    assert ctl.pending_revocations(T0 + 1) == []


def test_delete_member_revokes_if_authorized(ctl: Controller) -> None:
    nwid = make_net(ctl)
    online_members(ctl, nwid, T0, M1, M2)
    ctl.update_member(nwid, M3.address, {"name": "never authorised"}, T0)
    ctl.delete_member(nwid, M3.address, T0 + 1)
    assert ctl.pending_revocations(T0 + 1) == []
    ctl.delete_member(nwid, M1.address, T0 + 2)
    revs = ctl.pending_revocations(T0 + 2)
    assert [r.revocation.target for r in revs] == [M1.address]
    assert set(revs[0].recipients) == {M1.address, M2.address}


def test_delete_network_revokes_every_member(ctl: Controller) -> None:
    nwid = make_net(ctl)
    online_members(ctl, nwid, T0, M1, M2)
    ctl.update_member(nwid, M3.address, {"name": "offline one"}, T0)
    old = ctl.delete_network(nwid, T0 + 5)
    assert old["id"] == f"{nwid:016x}"
    revs = ctl.pending_revocations(T0 + 5)
    assert sorted(r.revocation.target for r in revs) == sorted([M1.address, M2.address, M3.address])
    assert all(set(r.recipients) == {M1.address, M2.address} for r in revs)
    assert ctl.store.network_ids() == []
    assert ctl.pending_pushes(T0 + 5) == []
    assert ask(ctl, M1, nwid, T0 + 5000).error == ErrorCode.OBJ_NOT_FOUND


def test_no_revocation_when_nobody_online(ctl: Controller) -> None:
    nwid = make_net(ctl)
    ctl.update_member(nwid, M1.address, {"authorized": True}, T0)
    ctl.update_member(nwid, M1.address, {"authorized": False}, T0 + 1)
    assert ctl.pending_revocations(T0 + 1) == []


# --- recent members --------------------------------------------------------------------------


def test_has_recent_member(ctl: Controller) -> None:
    nwid = make_net(ctl)
    online_members(ctl, nwid, T0, M1)
    ask(ctl, M2, nwid, T0)  # denied: never configured
    assert ctl.has_recent_member(nwid, M1.address, T0 + RECENT_CONFIG_WINDOW - 1)
    assert not ctl.has_recent_member(nwid, M1.address, T0 + RECENT_CONFIG_WINDOW)
    assert not ctl.has_recent_member(nwid, M2.address, T0)
    assert not ctl.has_recent_member(nwid, M3.address, T0)


def test_quiet_members_are_pruned(ctl: Controller) -> None:
    nwid = make_net(ctl, private=False)
    ask(ctl, M1, nwid, T0)
    assert (nwid, M1.address) in ctl._status
    ask(ctl, M2, nwid, T0 + RECENT_CONFIG_WINDOW + 60_000)
    assert (nwid, M1.address) not in ctl._status
    assert (nwid, M2.address) in ctl._status


# --- network ids and API verbs ---------------------------------------------------------------


def test_new_network_ids(ctl: Controller) -> None:
    seen = set()
    for _ in range(20):
        nwid = make_net(ctl)
        assert nwid >> 24 == CTL.address
        assert nwid & 0xFFFFFF != 0
        seen.add(nwid)
    assert len(seen) == 20


def test_zero_random_bits_become_one(builder: StubBuilder) -> None:
    zeros = Controller(
        CTL,
        ControllerStore(":memory:"),
        random_bytes=bytes,
        config_builder=builder,
    )
    assert make_net(zeros) == (CTL.address << 24) | 1
    with pytest.raises(ApiError) as e:  # every trial collides
        make_net(zeros)
    assert e.value.status == 503


def test_create_with_explicit_id(ctl: Controller) -> None:
    nwid = (CTL.address << 24) | 0xABCDEF
    assert ctl.create_network({"name": "x"}, T0, nwid=nwid)["id"] == f"{nwid:016x}"
    with pytest.raises(ApiError) as e:
        ctl.create_network({}, T0, nwid=nwid)
    assert e.value.status == 409
    with pytest.raises(ApiError) as e:
        ctl.create_network({}, T0, nwid=(M1.address << 24) | 1)
    assert e.value.status == 400


def test_update_network_creates_or_updates_ours_only(ctl: Controller) -> None:
    nwid = (CTL.address << 24) | 0x42
    n = ctl.update_network(nwid, {"name": "made"}, T0)
    assert n["revision"] == 1 and n["creationTime"] == T0
    n2 = ctl.update_network(nwid, {"mtu": 1400}, T0 + 1)
    assert n2["revision"] == 2 and n2["name"] == "made" and n2["creationTime"] == T0
    with pytest.raises(ApiError) as e:
        ctl.update_network((M1.address << 24) | 0x42, {}, T0)
    assert e.value.status == 400
    assert ctl.network_ids() == [nwid]


def test_bad_body_changes_nothing(ctl: Controller) -> None:
    nwid = make_net(ctl, name="orig")
    ctl.update_member(nwid, M1.address, {"authorized": True}, T0)
    before = (ctl.store.get_network(nwid), ctl.store.members(nwid))
    calls: list[Callable[[], object]] = [
        lambda: ctl.update_network(nwid, {"name": "x", "mtu": "1"}, T0 + 1),
        lambda: ctl.update_network(nwid, [1], T0 + 1),
        lambda: ctl.update_member(nwid, M1.address, {"authorized": "no"}, T0 + 1),
        lambda: ctl.update_member(nwid, M2.address, {"tags": 5}, T0 + 1),
        lambda: ctl.create_network({"routes": "x"}, T0 + 1),
    ]
    for call in calls:
        with pytest.raises(ApiError):
            call()
    assert (ctl.store.get_network(nwid), ctl.store.members(nwid)) == before
    assert ctl.network_ids() == [nwid]
    assert ctl.pending_revocations(T0 + 1) == [] and ctl.pending_pushes(T0 + 1) == []


def test_member_verbs_errors(ctl: Controller) -> None:
    nwid = make_net(ctl)
    missing = (CTL.address << 24) | 0x999
    calls: list[Callable[[], object]] = [
        lambda: ctl.update_member(missing, M1.address, {}, T0),
        lambda: ctl.get_member(missing, M1.address),
        lambda: ctl.get_member(nwid, M1.address),
        lambda: ctl.delete_member(nwid, M1.address, T0),
        lambda: ctl.member_revisions(missing),
        lambda: ctl.get_network(missing),
        lambda: ctl.delete_network(missing, T0),
    ]
    for call in calls:
        with pytest.raises(ApiError) as e:
            call()
        assert e.value.status == 404
    with pytest.raises(ApiError) as e:
        ctl.update_member(nwid, 0xFF00000001, {}, T0)
    assert e.value.status == 400
    with pytest.raises(ApiError) as e:
        ctl.update_member(nwid, 0, {}, T0)
    assert e.value.status == 400


def test_member_revisions(ctl: Controller) -> None:
    nwid = make_net(ctl)
    ctl.update_member(nwid, M1.address, {}, T0)
    ctl.update_member(nwid, M1.address, {"name": "x"}, T0)
    ctl.update_member(nwid, M2.address, {}, T0)
    assert ctl.member_revisions(nwid) == {f"{M1.address:010x}": 2, f"{M2.address:010x}": 1}


# --- restart ---------------------------------------------------------------------------------


def test_restart_loses_nothing(tmp_path: Path, builder: StubBuilder) -> None:
    def start() -> Controller:
        return Controller(
            CTL,
            ControllerStore(tmp_path / "controller.db"),
            random_bytes=seeded_random_bytes(7),
            config_builder=builder,
        )

    c1 = start()
    nwid = int(c1.create_network({"name": "kept", "private": True}, T0)["id"], 16)
    c1.update_member(nwid, M1.address, {"authorized": True, "name": "one"}, T0 + 1)
    assert ask(c1, M1, nwid, T0 + 2).config is not None
    ask(c1, M2, nwid, T0 + 3)  # denied, but recorded
    before = (c1.store.get_network(nwid), c1.store.members(nwid))
    c1.close()

    c2 = start()
    try:
        assert (c2.store.get_network(nwid), c2.store.members(nwid)) == before
        m1 = c2.store.get_member(nwid, M1.address)
        assert m1 is not None and m1["ipAssignments"] == ["10.9.0.1"]
        answer = ask(c2, M1, nwid, T0 + 10_000)
        assert answer.config is not None and answer.config.name == "kept"
        impostor = Identity(M1.address, M3.public_key)
        denied = c2.handle_request(impostor, nwid, META, T0 + 20_000)
        assert denied is not None and denied.error == ErrorCode.NETWORK_ACCESS_DENIED
        assert ask(c2, M2, nwid, T0 + 10_000).error == ErrorCode.NETWORK_ACCESS_DENIED
    finally:
        c2.close()


# --- with the real config builder ------------------------------------------------------------


def test_open_controller_uses_home_db(tmp_path: Path) -> None:
    c = open_controller(CTL, tmp_path, seeded_random_bytes(3))
    try:
        assert c.config_builder is build_config
        c.create_network({}, T0)
        assert (tmp_path / "controller.db").exists()
    finally:
        c.close()
    c2 = open_controller(CTL, tmp_path, seeded_random_bytes(3))
    assert len(c2.network_ids()) == 1
    c2.close()


def test_real_builder_pool_exhaustion_and_push(tmp_path: Path) -> None:
    """A pool with room for two: the third member still gets a config, without an IP; a network
    change reaches every online member at once; a restart keeps every assignment."""
    c = open_controller(CTL, tmp_path, seeded_random_bytes(5))
    nwid = int(
        c.create_network(
            {
                "name": "tiny",
                "v4AssignMode": {"zt": True},
                "routes": [{"target": "10.44.0.0/24"}],
                # ipRangeEnd is never handed out (the reference's modulo): two usable addresses.
                "ipAssignmentPools": [{"ipRangeStart": "10.44.0.1", "ipRangeEnd": "10.44.0.3"}],
            },
            T0,
        )["id"],
        16,
    )
    ips: dict[int, list[str]] = {}
    for i, who in enumerate((M1, M2, M3)):
        c.update_member(nwid, who.address, {"authorized": True}, T0 + i)
        answer = ask(c, who, nwid, T0 + 10 + i)
        assert answer.config is not None
        ips[who.address] = [str(a.ip) for a in answer.config.static_ips]
        assert answer.config.com is not None and answer.config.com.verify(CTL.public())
    assigned = [ip for v in ips.values() for ip in v]
    assert sorted(assigned) == ["10.44.0.1", "10.44.0.2"]
    assert sum(1 for v in ips.values() if not v) == 1  # the pool ran out for one member

    c.update_network(nwid, {"name": "tiny2"}, T0 + 100)
    pushes = c.pending_pushes(T0 + 100)
    assert {p.member for p in pushes} == {M1.address, M2.address, M3.address}
    assert all(p.config.name == "tiny2" and p.config.revision == 2 for p in pushes)
    assert {str(a.ip) for p in pushes for a in p.config.static_ips} == set(assigned)
    stored = {m["id"]: m["ipAssignments"] for m in c.store.members(nwid)}
    c.close()

    c2 = open_controller(CTL, tmp_path, seeded_random_bytes(6))
    try:
        assert {m["id"]: m["ipAssignments"] for m in c2.store.members(nwid)} == stored
        # Freeing an address lets the member without one get it on its next request.
        c2.delete_member(nwid, M1.address, T0 + 200)
        lacking = next(a for a, v in ips.items() if not v)
        who = next(i for i in (M2, M3) if i.address == lacking)
        answer = ask(c2, who, nwid, T0 + 300)
        assert answer.config is not None
        assert [str(a.ip) for a in answer.config.static_ips] == ips[M1.address]
    finally:
        c2.close()


def test_pool_added_later_gives_distinct_ips_in_one_drain(tmp_path: Path) -> None:
    """Members already online when a pool appears get their addresses from the pushes of one
    drain; each push must see the addresses the previous ones handed out."""
    c = open_controller(CTL, tmp_path, seeded_random_bytes(8))
    try:
        nwid = int(c.create_network({}, T0)["id"], 16)
        who = IDS[1:7]
        for i, m in enumerate(who):
            c.update_member(nwid, m.address, {"authorized": True}, T0)
            answer = ask(c, m, nwid, T0 + i)
            assert answer.config is not None and answer.config.static_ips == ()
        c.update_network(
            nwid,
            {
                "v4AssignMode": "zt",
                "routes": [{"target": "10.60.0.0/29"}],
                "ipAssignmentPools": [{"ipRangeStart": "10.60.0.1", "ipRangeEnd": "10.60.0.6"}],
            },
            T0 + 100,
        )
        pushes = c.pending_pushes(T0 + 100)
        assert len(pushes) == len(who)
        got = [str(a.ip) for p in pushes for a in p.config.static_ips]
        assert len(got) == len(set(got)) == 5  # 10.60.0.1..5: the range end is never used
        stored = [ip for m in c.store.members(nwid) for ip in m["ipAssignments"]]
        assert sorted(stored) == sorted(got)
    finally:
        c.close()
