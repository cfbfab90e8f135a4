"""The sans-I/O decisions of a version-1 SSO login: PKCE (RFC 7636's vector), state, the login
URL, discovery, the callback's query (Hypothesis), the pending table's bounds and ID-token
claims."""

from __future__ import annotations

import base64
import hashlib
from itertools import count
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ztnode.core.oidc import (
    MAX_PENDING_LOGINS,
    CallbackCode,
    CallbackError,
    OidcError,
    PendingLogin,
    PendingLogins,
    ProviderMetadata,
    access_token_hash,
    central_state,
    check_claims,
    discovery_url,
    new_state,
    new_verifier,
    parse_callback,
    parse_discovery,
    refresh_delay_s,
    s256_challenge,
    scopes,
)

META = ProviderMetadata(
    issuer="https://idp.example",
    authorization_endpoint="https://idp.example/authorize",
    token_endpoint="https://idp.example/token",
    jwks_uri="https://idp.example/jwks",
)


_COUNTER = count()


def counting_bytes(n: int) -> bytes:
    """Deterministic, never repeating 'random' bytes."""
    return hashlib.sha256(str(next(_COUNTER)).encode()).digest()[:n]


def login(nwid: int, state: str | None = None) -> PendingLogin:
    return PendingLogin(
        network_id=nwid,
        state=state or new_state(counting_bytes, nwid),
        verifier=new_verifier(counting_bytes),
        nonce="n-1",
        controller_state="cs_" + f"{nwid:016x}",
        client_id="client-1",
        provider="okta",
        redirect_uri="http://localhost:9993/sso",
        central_url="https://central.example/sso",
        metadata=META,
    )


def test_pkce_s256_is_rfc_7636_appendix_b() -> None:
    octets = bytes([116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187,
                    186, 22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141,
                    121])  # fmt: skip
    verifier = new_verifier(lambda n: octets[:n])
    assert verifier == "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_state_names_the_network_and_is_random() -> None:
    a, b = new_state(counting_bytes, 0x8056C2E21C000001), new_state(counting_bytes, 1)
    assert a.endswith("_8056c2e21c000001") and b.endswith("_0000000000000001")
    assert len(a.split("_")) == 2 and len(a.split("_")[0]) == 64
    assert a.split("_")[0] != b.split("_")[0]
    assert central_state("abc_8056c2e21c000001") == "abc"
    for bad in ("abc", "a_b_c", "_x"):
        with pytest.raises(OidcError, match="state"):
            central_state(bad)


def test_authorize_url_carries_pkce_state_nonce_and_scopes() -> None:
    lg = login(5)
    url = urlsplit(lg.authorize_url())
    assert f"{url.scheme}://{url.netloc}{url.path}" == META.authorization_endpoint
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert q == {
        "response_type": "code",
        "client_id": "client-1",
        "redirect_uri": "http://localhost:9993/sso",
        "scope": "openid profile email groups offline_access",
        "state": lg.state,
        "nonce": "n-1",
        "code_challenge": s256_challenge(lg.verifier),
        "code_challenge_method": "S256",
    }
    assert scopes("keycloak") == ("openid", "profile", "email")
    assert scopes("anything") == ("openid", "profile", "email", "offline_access")


def test_discovery_is_checked() -> None:
    assert discovery_url("https://idp.example/") == (
        "https://idp.example/.well-known/openid-configuration"
    )
    doc = {"issuer": META.issuer, "authorization_endpoint": META.authorization_endpoint,
           "token_endpoint": META.token_endpoint, "jwks_uri": META.jwks_uri}  # fmt: skip
    assert parse_discovery(doc, META.issuer) == META
    with pytest.raises(OidcError, match="issuer"):
        parse_discovery({**doc, "issuer": "https://evil.example"}, META.issuer)
    with pytest.raises(OidcError, match="token_endpoint"):
        parse_discovery({**doc, "token_endpoint": "file:///etc/passwd"}, META.issuer)
    with pytest.raises(OidcError, match="jwks_uri"):
        parse_discovery({k: v for k, v in doc.items() if k != "jwks_uri"}, META.issuer)
    with pytest.raises(OidcError, match="object"):
        parse_discovery([doc], META.issuer)
    with pytest.raises(OidcError, match="issuer URL"):
        discovery_url("ftp://x")


def test_pending_logins_bounded_single_use_and_counted() -> None:
    table = PendingLogins()
    logins = [login(n) for n in range(1, MAX_PENDING_LOGINS + 3)]
    for lg in logins:
        table.add(lg)
    assert len(table) == MAX_PENDING_LOGINS
    assert table.counters["dropped_oldest"] == 2
    assert table.take(logins[0].state) is None  # dropped
    assert table.take(logins[-1].state) == logins[-1]
    assert table.take(logins[-1].state) is None  # used once
    assert table.take("") is None and table.take("é" * 300) is None
    assert table.counters["unknown_state"] == 4 and table.counters["completed"] == 1
    again = login(logins[5].network_id)  # a new login replaces the network's old one
    table.add(again)
    assert table.counters["replaced"] == 1 and table.take(logins[5].state) is None
    assert table.get(again.network_id) == again


def test_callback_query() -> None:
    assert parse_callback({"code": ["c"], "state": ["s"]}) == CallbackCode("c", "s")
    assert parse_callback({"error": ["access_denied"], "state": ["s"]}) == CallbackError(
        "access_denied", ""
    )
    for bad, why in (
        ({}, "no state"),
        ({"state": ["s"]}, "no code"),
        ({"code": ["c"], "state": ["s", "t"]}, "more than once"),
        ({"code": ["c"], "state": ["s" * 257]}, "longer"),
    ):
        with pytest.raises(OidcError, match=why):
            parse_callback(bad)


_values = st.lists(st.text(max_size=300), max_size=3)


@given(st.dictionaries(st.sampled_from(["code", "state", "error", "error_description", "x"]),
                       _values))  # fmt: skip
def test_callback_query_never_fails_otherwise(query: dict[str, list[str]]) -> None:
    """Any query is an answer or an OidcError, and an answer holds exactly what was given."""
    try:
        got = parse_callback(query)
    except OidcError:
        return
    if isinstance(got, CallbackError):
        assert query["error"] == [got.error]
    else:
        assert query["code"] == [got.code] and query["state"] == [got.state]
        assert got.code and got.state and len(got.state) <= 256


def _claims(**over: object) -> dict[str, object]:
    base: dict[str, object] = {"iss": META.issuer, "aud": "client-1", "exp": 2000, "iat": 1000,
                               "nonce": "n-1"}  # fmt: skip
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def _check(
    claims: dict[str, object],
    access: str | None = None,
    alg: str = "RS256",
    refreshed: bool = False,
) -> int:
    return check_claims(claims, issuer=META.issuer, client_id="client-1", nonce="n-1",
                        now_s=1500, alg=alg, access_token=access, refreshed=refreshed)  # fmt: skip


def test_id_token_claims() -> None:
    assert _check(_claims()) == 2000
    assert _check(_claims(aud=["client-1", "other"], azp="client-1")) == 2000
    at = access_token_hash("access-1", "RS256")
    digest = hashlib.sha256(b"access-1").digest()[:16]
    assert at == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert _check(_claims(at_hash=at), "access-1") == 2000
    for claims, why in (
        (_claims(iss="https://evil.example"), "iss"),
        (_claims(aud="other"), "aud"),
        (_claims(aud=["client-1", "other"]), "azp"),
        (_claims(exp=None), "exp"),
        (_claims(exp=1400), "expired"),
        (_claims(iat=1600), "iat"),
        (_claims(nonce="n-2"), "nonce"),
        (_claims(nonce=None), "nonce"),
        (_claims(at_hash=at), "at_hash"),
    ):
        with pytest.raises(OidcError, match=why):
            _check(claims)
    with pytest.raises(OidcError, match="at_hash"):
        _check(_claims(at_hash=at), "access-2")
    with pytest.raises(OidcError, match="algorithm"):
        _check(_claims(at_hash=at), "access-1", alg="HS256")


def test_refreshed_tokens_and_when_to_refresh() -> None:
    assert _check(_claims(nonce=None), refreshed=True) == 2000
    with pytest.raises(OidcError, match="nonce"):
        _check(_claims(nonce="n-2"), refreshed=True)
    assert refresh_delay_s(2000, 1000.5) == 969.5
    assert refresh_delay_s(2000, 1980) == 0.0
