"""A version-1 SSO login end to end, against a fake OpenID Connect provider and a fake Central
on 127.0.0.1: the member's core gets NETWORK_AUTHENTICATION_REQUIRED with version-1 auth info,
the node makes the login URL (shown in ``/network``), the browser (here httpx) follows it to the
provider, which sends it back to the node's public ``GET /sso`` with a code; the node exchanges
it, checks the ID token and posts it to Central. Wrong, missing and replayed states are
refused and counted; a token signed by another key or carrying another nonce is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jwk import RSAKey

from tests.helpers.data import test_identities
from tests.helpers.oidcprovider import FakeProvider
from ztnode.core.node import Node as CoreNode
from ztnode.testing.local import LocalZtWorld
from ztnode.transport import ssoflow
from ztnode.transport.httpapi import JsonApi, fetch_json
from ztnode.transport.localapi import serve_local_api
from ztnode.transport.service import NodeService
from ztnode.transport.ssoflow import SsoLogins
from ztnode.wire.constants import ErrorCode, Verb
from ztnode.wire.dictionary import Dictionary
from ztnode.wire.netconf import AuthInfoKey
from ztnode.wire.verbs import Error

IDS = test_identities()
CONTROLLER_STATE = "cstate1"


def auth_info(issuer: str, central: str, nwid: int, nonce: str = "nonce-1") -> bytes:
    d = Dictionary()
    d.add_int(AuthInfoKey.VERSION, 1)
    d.add_str(AuthInfoKey.ISSUER_URL, issuer)
    d.add_str(AuthInfoKey.CENTRAL_ENDPOINT_URL, central)
    d.add_str(AuthInfoKey.NONCE, nonce)
    d.add_str(AuthInfoKey.STATE, f"{CONTROLLER_STATE}_{nwid:016x}")
    d.add_str(AuthInfoKey.CLIENT_ID, "ztnode-test")
    d.add_str(AuthInfoKey.SSO_PROVIDER, "default")
    return d.to_bytes()


def authentication_required(nwid: int, controller: int, blob: bytes) -> Callable[..., object]:
    """What the controller's ERROR does to the member's core."""

    def call(node: CoreNode, now: int) -> object:
        net = node.network(nwid)
        assert net is not None
        err = Error(Verb.NETWORK_CONFIG_REQUEST, 1, ErrorCode.NETWORK_AUTHENTICATION_REQUIRED,
                    network_id=nwid, dictionary=blob)  # fmt: skip
        node.vl2.network_error(node.peers[controller], net, err, now)
        return None

    return call


async def until(check: Callable[[], Awaitable[Any]], seconds: float = 10.0) -> Any:
    """``check()``'s first true answer within ``seconds`` (polled every 50 ms)."""
    for _ in range(int(seconds / 0.05)):
        got = await check()
        if got:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


def sso_of(api: JsonApi) -> SsoLogins:
    """The login module behind the API's /sso route (its counters, for the test)."""
    route = next(r for r in api.routes if r.pattern.match("/sso"))
    logins = getattr(route.handler, "__self__", None)
    assert isinstance(logins, SsoLogins)
    return logins


async def run_world(tmp_path: Path, body: Callable[..., Awaitable[None]]) -> None:
    provider = FakeProvider().start()
    try:
        async with LocalZtWorld(tmp_path, members=1, identities=IDS[:2]) as world:
            assert world.root is not None
            member = world.members[0]
            service: NodeService = member.service
            api, port = await serve_local_api(service)
            token = (service.home.path / "authtoken.secret").read_text().strip()
            try:
                await body(provider, world, service, api, port, token)
            finally:
                await api.close()
                await sso_of(api).close()
    finally:
        provider.stop()


def test_login_completes_and_states_are_single_use(tmp_path: Path) -> None:
    async def body(
        provider: FakeProvider,
        world: LocalZtWorld,
        service: NodeService,
        api: JsonApi,
        port: int,
        token: str,
    ) -> None:
        assert world.root is not None
        nwid, ctl = world.network_id, int(world.root.address, 16)
        service.call(
            authentication_required(
                nwid, ctl, auth_info(provider.issuer, provider.central_url, nwid)
            )
        )

        async def shown() -> Any:
            _, net = await fetch_json("127.0.0.1", port, "GET", f"/network/{nwid:016x}", token)
            return net if net["authenticationURL"] else None

        net = await until(shown)
        assert net["status"] == "AUTHENTICATION_REQUIRED" and net["ssoEnabled"] is True
        url = net["authenticationURL"]
        assert url.startswith(f"{provider.issuer}/authorize?")
        logins = sso_of(api)
        async with httpx.AsyncClient(follow_redirects=False) as browser:
            # The "browser" logs in at the provider, which sends it back to the node.
            to_node = await browser.get(url)
            assert to_node.status_code == 302
            back = to_node.headers["location"]
            assert back.startswith(f"http://localhost:{port}/sso?")
            back = back.replace("localhost", "127.0.0.1", 1)  # the API listens on IPv4
            asked = provider.authorize_queries[-1]
            assert asked["redirect_uri"] == f"http://localhost:{port}/sso"
            assert asked["nonce"] == "nonce-1" and asked["code_challenge_method"] == "S256"
            assert asked["state"].endswith(f"_{nwid:016x}")
            sso = f"http://127.0.0.1:{port}/sso"

            # Refused without touching the login: a state this node never gave, none at all.
            wrong = await browser.get(sso, params={"code": "x", "state": "0" * 64 + "_1"})
            assert wrong.status_code == 403 and "not started here" in wrong.text
            missing = await browser.get(sso, params={"code": "x"})
            assert missing.status_code == 400 and "no state" in missing.text
            refused = await browser.get(sso, params={"error": "access_denied",
                                                     "error_description": "<b>no</b>"})  # fmt: skip
            assert refused.status_code == 500 and "&lt;b&gt;no&lt;/b&gt;" in refused.text
            assert provider.central_posts == []

            done = await browser.get(back)
            assert done.status_code == 200, done.text
            assert "Login succeeded" in done.text and done.headers["content-type"].startswith(
                "text/html"
            )
            # Central got the verified ID token and the controller's state before its "_".
            assert len(provider.central_posts) == 1
            post = provider.central_posts[0]
            assert post["state"] == CONTROLLER_STATE and post["id_token"].count(".") == 2

            # The same redirect again: the state was used.
            again = await browser.get(back)
            assert again.status_code == 403 and len(provider.central_posts) == 1
        assert logins.counters == {
            "refused_state": 2, "refused_query": 1, "provider_error": 1, "succeeded": 1,
        }  # fmt: skip
        assert logins.pending.counters["unknown_state"] == 2
        # The network shows the token's expiry and a fresh URL (a new state) for the next login.
        _, net = await fetch_json("127.0.0.1", port, "GET", f"/network/{nwid:016x}", token)
        assert net["authenticationExpiryTime"] > 0 and net["authenticationURL"] not in ("", url)

    asyncio.run(run_world(tmp_path, body))


def test_bad_tokens_are_refused_with_a_page(tmp_path: Path) -> None:
    async def body(
        provider: FakeProvider,
        world: LocalZtWorld,
        service: NodeService,
        api: JsonApi,
        port: int,
        token: str,
    ) -> None:
        assert world.root is not None
        nwid, ctl = world.network_id, int(world.root.address, 16)
        logins = sso_of(api)

        async def login() -> httpx.Response:
            url = await until(lambda: asyncio.sleep(0, logins.login_url(nwid)))
            async with httpx.AsyncClient(follow_redirects=False) as browser:
                back = (await browser.get(url)).headers["location"]
                return await browser.get(back.replace("localhost", "127.0.0.1", 1))

        service.call(
            authentication_required(
                nwid, ctl, auth_info(provider.issuer, provider.central_url, nwid)
            )
        )
        provider.signing_key = RSAKey.generate_key(2048, {"kid": "k1"})
        forged = await login()
        assert forged.status_code == 502 and "signature" in forged.text
        provider.signing_key = None
        provider.token_nonce = "someone-elses"
        replayed = await login()
        assert replayed.status_code == 502 and "nonce" in replayed.text
        provider.token_nonce = None
        provider.central_status, provider.central_body = 200, {"errorMessage": "not a member"}
        central_says = await login()
        assert central_says.status_code == 502 and "not a member" in central_says.text
        provider.central_status, provider.central_body = 402, {}
        seats = await login()
        assert seats.status_code == 402 and "seats" in seats.text
        assert logins.counters == {"failed": 4}
        assert len(provider.central_posts) == 2  # the signature and nonce failures never post

    asyncio.run(run_world(tmp_path, body))


def test_a_login_is_refreshed_before_it_expires(tmp_path: Path) -> None:
    async def body(
        provider: FakeProvider,
        world: LocalZtWorld,
        service: NodeService,
        api: JsonApi,
        port: int,
        token: str,
    ) -> None:
        assert world.root is not None
        nwid, ctl = world.network_id, int(world.root.address, 16)
        logins = sso_of(api)
        provider.lifetimes = [30]  # due for refresh at once; the refreshed one lasts an hour
        blob = auth_info(provider.issuer, provider.central_url, nwid)
        service.call(authentication_required(nwid, ctl, blob))
        url = await until(lambda: asyncio.sleep(0, logins.login_url(nwid)))
        async with httpx.AsyncClient(follow_redirects=False) as browser:
            back = (await browser.get(url)).headers["location"]
            done = await browser.get(back.replace("localhost", "127.0.0.1", 1))
        assert done.status_code == 200
        first = logins.expiry_ms[nwid]
        await until(lambda: asyncio.sleep(0, logins.counters.get("refreshed") == 1))
        assert provider.refreshes == 1 and logins.expiry_ms[nwid] >= first + 3000_000
        refresh_post = provider.central_posts[1]
        assert refresh_post["state"] == "refresh" and refresh_post["extra_nonce"] == "nonce-1"
        assert refresh_post["id_token"] != provider.central_posts[0]["id_token"]
        _, net = await fetch_json("127.0.0.1", port, "GET", f"/network/{nwid:016x}", token)
        assert net["authenticationExpiryTime"] == logins.expiry_ms[nwid]
        await asyncio.sleep(0.2)
        assert provider.refreshes == 1  # the next one is due in an hour, not now

    asyncio.run(run_world(tmp_path, body))


def test_without_the_extra_the_login_says_what_to_install(monkeypatch: Any) -> None:
    monkeypatch.setattr(ssoflow, "extra_missing", lambda: True)
    from ztnode.wire.netconf import decode_auth_info

    logins = SsoLogins(lambda: None, redirect_port=9993)
    info = decode_auth_info(auth_info("https://idp.invalid", "https://central.invalid/sso", 5))
    asyncio.run(logins.begin(5, info))
    assert logins.errors[5] == ssoflow.MISSING_EXTRA and "ztnode[sso]" in ssoflow.MISSING_EXTRA
    assert logins.login_url(5) is None and logins.counters == {"start_failed": 1}


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["code", "state", "error", "error_description", "auth"]),
                       st.lists(st.text(max_size=300), max_size=3)))  # fmt: skip
def test_any_query_gets_a_page_and_completes_nothing(query: dict[str, list[str]]) -> None:
    """Whatever ``/sso`` is given without a login of this node's: a 4xx/500 HTML page with the
    value escaped, nothing posted anywhere, nothing pending created."""
    logins = SsoLogins(lambda: None, redirect_port=9993)
    answer = asyncio.run(logins.callback(query))
    assert answer.status in (400, 403, 500) and answer.content_type.startswith("text/html")
    assert b"<script" not in answer.body.lower() and len(logins.pending) == 0
    assert sum(logins.counters.values()) == 1
