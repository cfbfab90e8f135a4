"""SSO on the member side: AUTHENTICATION_REQUIRED's auth info parsed, kept, announced once
and shown in the local API's network JSON, as ZeroTierOne surfaces it."""

from __future__ import annotations

from tests.helpers.data import test_identities
from ztnode.core import events as ev
from ztnode.core.network import NetworkStatus
from ztnode.testing.world import LocalWorld
from ztnode.transport.localapi import network_json
from ztnode.wire.constants import ErrorCode, Verb
from ztnode.wire.dictionary import Dictionary
from ztnode.wire.netconf import AuthInfoKey, decode_auth_info
from ztnode.wire.verbs import Error

IDS = test_identities()


def _info(**fields: str | int) -> bytes:
    d = Dictionary()
    for key, value in fields.items():
        if isinstance(value, int):
            d.add_int(key, value)
        else:
            d.add_str(key, value)
    return d.to_bytes()


def test_auth_info_versions_and_limits() -> None:
    v0 = decode_auth_info(
        _info(**{AuthInfoKey.VERSION: 0, AuthInfoKey.AUTHENTICATION_URL: "https://sso.example/x"})
    )
    assert v0.login_url == "https://sso.example/x"
    v1 = decode_auth_info(_info(**{
        AuthInfoKey.VERSION: 1, AuthInfoKey.ISSUER_URL: "https://idp.example",
        AuthInfoKey.CENTRAL_ENDPOINT_URL: "https://central.example/sso",
        AuthInfoKey.NONCE: "n1", AuthInfoKey.STATE: "s1", AuthInfoKey.CLIENT_ID: "cid",
        AuthInfoKey.SSO_PROVIDER: "default",
    }))  # fmt: skip
    assert v1.login_url == "https://central.example/sso" and v1.client_id == "cid"
    # Read as the reference reads it: fields cut to their buffers, the blob to 8 KiB.
    long = decode_auth_info(_info(**{AuthInfoKey.AUTHENTICATION_URL: "u" * 5000}))
    assert long.authentication_url == "u" * 2047
    huge = decode_auth_info(b"aU=" + b"u" * 70_000)
    assert huge.authentication_url == "u" * 2047


def test_member_keeps_and_shows_where_to_log_in() -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=2)
    assert w.run_until(w.all_online, 15_000)
    member, controller = w.leaves
    nwid = (controller.address << 24) | 0x5
    net = member.join(nwid, w.net.now)
    member.whois.request(
        controller.address, w.net.now
    ) if controller.address not in member.peers else None
    assert w.run_until(lambda: controller.address in member.peers, 10_000)  # it asked for a config
    peer = member.peers[controller.address]
    url = "https://sso.example/login?net=5"

    def error(blob: bytes | None) -> Error:
        return Error(Verb.NETWORK_CONFIG_REQUEST, 1, ErrorCode.NETWORK_AUTHENTICATION_REQUIRED,
                     network_id=nwid, dictionary=blob)  # fmt: skip

    blob = _info(**{AuthInfoKey.VERSION: 0, AuthInfoKey.AUTHENTICATION_URL: url})
    member.events.clear()  # what came before
    member.vl2.network_error(peer, net, error(blob), w.net.now)
    member.vl2.network_error(peer, net, error(blob), w.net.now)  # the same URL: said once
    assert net.status == NetworkStatus.AUTHENTICATION_REQUIRED
    said = [e for e in member.events if isinstance(e, ev.NetworkAuthenticationRequired)]
    assert said == [ev.NetworkAuthenticationRequired(nwid, url)]
    shown = network_json(net)
    assert shown["authenticationURL"] == url and shown["ssoEnabled"] is True
    assert shown["status"] == "AUTHENTICATION_REQUIRED"
    # Info without a URL (garbage parses to nothing) keeps what was known, as the reference.
    member.vl2.network_error(peer, net, error(b"\xff" * 70_000), w.net.now)
    member.vl2.network_error(peer, net, error(_info(**{AuthInfoKey.VERSION: 1})), w.net.now)
    assert net.auth_info is not None and net.auth_info.login_url == url
    # A new URL is said again.
    member.vl2.network_error(peer, net, error(_info(aU="https://sso.example/2")), w.net.now)
    assert [e.url for e in member.events if isinstance(e, ev.NetworkAuthenticationRequired)][
        -1
    ] == "https://sso.example/2"
