"""SSO end to end with our controller under virtual time: how a member learns that its
authentication completed, and how an expiry puts it back, as ZeroTierOne 1.14.1 does it.

The reference member has no SSO timer of its own. It keeps asking for its config: at every ping
check (5 s) while it has none, else once its config is 60 s old (Node.cpp:398,
ZT_NETWORK_AUTOCONF_DELAY), and a config applied clears the failure (Network.cpp:1130-1141).
The controller answers AUTHENTICATION_REQUIRED while the member's ``authenticationExpiryTime``
is not in the future (EmbeddedNetworkController.cpp:1531-1562), and pushes a fresh config when
a member that had one is updated (onNetworkMemberUpdate, :1343-1352)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.data import test_identities
from ztnode.controller import open_controller
from ztnode.controller.controller import Controller
from ztnode.core import events as ev
from ztnode.core.controller_iface import ConfigAnswer, ConfigPush, RevocationPush
from ztnode.core.network import Network, NetworkStatus
from ztnode.core.node import Node
from ztnode.core.sso import authentication_required
from ztnode.identity import Identity
from ztnode.testing.world import LocalWorld, seeded_random_bytes
from ztnode.transport.localapi import network_json
from ztnode.wire.constants import ErrorCode
from ztnode.wire.dictionary import Dictionary
from ztnode.wire.netconf import AuthInfoKey

IDS = test_identities()
PING_CHECK = 5_000
AUTOCONF_DELAY = 60_000
LOGIN = "https://sso.example/login?member=1"


class CentralLike:
    """Our controller answering as ZeroTier Central's database makes the reference's answer:
    the AUTHENTICATION_REQUIRED info says where to log in (PostgreSQL::getSSOAuthInfo,
    version 0). Everything else is our controller's."""

    def __init__(self, inner: Controller) -> None:
        self.inner = inner

    def serves(self, network_id: int) -> bool:
        return self.inner.serves(network_id)

    def handle_request(
        self,
        member: Identity,
        network_id: int,
        metadata: bytes,
        now: int,
        physical_address: tuple[str, int] | None = None,
    ) -> ConfigAnswer | None:
        a = self.inner.handle_request(member, network_id, metadata, now, physical_address)
        if a is None or a.error != ErrorCode.NETWORK_AUTHENTICATION_REQUIRED:
            return a
        info = Dictionary()
        info.add_int(AuthInfoKey.VERSION, 0)
        info.add_str(AuthInfoKey.AUTHENTICATION_URL, LOGIN)
        return ConfigAnswer(error=a.error, error_dictionary=info.to_bytes())

    def pending_pushes(self, now: int) -> list[ConfigPush]:
        return self.inner.pending_pushes(now)

    def pending_revocations(self, now: int) -> list[RevocationPush]:
        return self.inner.pending_revocations(now)

    def has_recent_member(self, network_id: int, member: int, now: int) -> bool:
        return self.inner.has_recent_member(network_id, member, now)


class SsoWorld:
    """Root, controller and one member of an SSO network (switched on in the database, as
    ZeroTier Central does: the controller's API has no ssoEnabled, like ZeroTierOne's)."""

    def __init__(self, home: Path, *, central: bool) -> None:
        self.w = LocalWorld.build(IDS, roots=1, leaves=2, seed=3)
        self.ctl_node, self.member = self.w.leaves
        self.ctl = open_controller(self.ctl_node.identity, home, seeded_random_bytes(9))
        self.ctl_node.controller = CentralLike(self.ctl) if central else self.ctl
        assert self.w.run_until(self.w.all_online, 15_000)
        pool = {"ipRangeStart": "10.7.0.1", "ipRangeEnd": "10.7.0.9"}
        body = {"private": True, "v4AssignMode": {"zt": True}, "ipAssignmentPools": [pool]}
        self.nwid = int(str(self.ctl.create_network(body, self.now)["id"]), 16)
        self.ctl.store.put_network({**self.ctl.get_network(self.nwid), "ssoEnabled": True})
        self.ctl.update_member(self.nwid, self.member.address, {"authorized": True}, self.now)
        self.net: Network = self.member.join(self.nwid, self.now)

    @property
    def now(self) -> int:
        return self.w.net.now

    def log_in(self, for_ms: int) -> int:
        """The user logs in: the member's expiry is written (as Central does); returns it."""
        expiry = self.now + for_ms
        body = {"authenticationExpiryTime": expiry}
        self.ctl.update_member(self.nwid, self.member.address, body, self.now)
        self.ctl_node.flush_controller(self.now)
        return expiry

    def status_within(self, status: NetworkStatus, ms: int) -> int:
        """Run until the network has ``status`` (at most ``ms``); how long it took."""
        start = self.now
        assert self.w.run_until(lambda: self.net.status == status, ms), self.net.status
        return self.now - start

    def said(self, node: Node) -> list[object]:
        """What ``node`` emitted since the last look."""
        return self.w.events(node)


def test_a_version_0_answer_without_url_is_ignored_until_the_config_comes(
    tmp_path: Path,
) -> None:
    """Our controller, like ZeroTierOne's own, knows no login URL: its answer is version 0
    with an empty one, which the reference member ignores (IncomingPacket.cpp:263-270). The
    member keeps asking every ping check and is let in at the first request after login."""
    sw = SsoWorld(tmp_path, central=False)
    sw.w.run_for(3 * PING_CHECK)
    assert sw.net.status == NetworkStatus.REQUESTING_CONFIGURATION and sw.net.config is None
    assert sw.net.unanswered_requests >= 3  # it kept asking
    expiry = sw.log_in(300_000)
    assert sw.status_within(NetworkStatus.OK, PING_CHECK + 1_000) <= PING_CHECK + 1_000
    assert network_json(sw.net)["authenticationExpiryTime"] == expiry


def test_member_is_let_in_when_authentication_completes_and_out_when_it_expires(
    tmp_path: Path,
) -> None:
    sw = SsoWorld(tmp_path, central=True)
    net = sw.net
    sw.status_within(NetworkStatus.AUTHENTICATION_REQUIRED, 10_000)
    assert net.config is None and network_json(net)["authenticationURL"] == LOGIN
    assert ev.NetworkAuthenticationRequired(sw.nwid, LOGIN) in sw.said(sw.member)

    # Login: the member had no config, so nothing is pushed; its next request, within a
    # ping check, gets the config, which clears the auth info.
    expiry = sw.log_in(300_000)
    assert sw.status_within(NetworkStatus.OK, PING_CHECK + 1_000) <= PING_CHECK + 1_000
    shown = network_json(net)
    assert shown["authenticationExpiryTime"] == expiry and shown["ssoEnabled"] is True
    assert shown["authenticationURL"] == "" and net.auth_info is None
    assert ev.NetworkStatusChanged(sw.nwid, "OK") in sw.said(sw.member)

    # Until the expiry the member keeps its config, refreshed every minute; at it, the
    # controller revokes its certificate at the members online (itself included); its next
    # refresh (at most a minute after the last config) is refused and the URL said again.
    assert not sw.w.run_until(lambda: net.status != NetworkStatus.OK, expiry - sw.now - 1)

    def revoked() -> bool:
        m = net.memberships.get(sw.member.address)
        return m is not None and m.com_revocation_threshold >= expiry

    assert not revoked()
    assert sw.w.run_until(revoked, PING_CHECK + 1_000)
    last = net.last_config_update
    sw.status_within(NetworkStatus.AUTHENTICATION_REQUIRED, AUTOCONF_DELAY + PING_CHECK + 1_000)
    assert sw.now <= last + AUTOCONF_DELAY + PING_CHECK + 1_000
    assert net.config is not None  # kept, as the reference keeps _config
    assert ev.NetworkAuthenticationRequired(sw.nwid, LOGIN) in sw.said(sw.member)

    # Logging in again: this member had a config, so the controller pushes one at once.
    expiry = sw.log_in(300_000)
    assert sw.status_within(NetworkStatus.OK, PING_CHECK + 1_000) < 1_000
    assert network_json(net)["authenticationExpiryTime"] == expiry


def test_which_answers_require_authentication() -> None:
    """IncomingPacket.cpp:250-303: no info at all, a version-1 info, or a version-0 info with
    a URL set AUTHENTICATION_REQUIRED; a version-0 info without a URL or another version
    change nothing."""

    def info(version: int, url: str = "") -> bytes:
        d = Dictionary()
        d.add_int(AuthInfoKey.VERSION, version)
        if url:
            d.add_str(AuthInfoKey.AUTHENTICATION_URL, url)
        return d.to_bytes()

    said: list[ev.Event] = []
    net = Network(0x8056C2E21C000001, IDS[0].address)
    assert not authentication_required(net, info(0), said.append)
    assert not authentication_required(net, info(2, LOGIN), said.append)
    assert net.auth_info is None and not said
    assert authentication_required(net, None, said.append)
    assert net.auth_info is not None and net.auth_info.enabled and not said
    assert authentication_required(net, info(0, LOGIN), said.append)
    assert said == [ev.NetworkAuthenticationRequired(net.id, LOGIN)]
    assert authentication_required(net, info(1), said.append)  # no login URL: the old one kept
    assert net.auth_info.login_url == LOGIN and len(said) == 1
