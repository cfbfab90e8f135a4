"""The decisions of a version-1 SSO login (OpenID Connect, authorization code with PKCE),
without any I/O: what the login URL says, which callback may complete which login, and whether
an ID token's claims are acceptable. The HTTP exchanges live in
:mod:`ztnode.transport.ssoflow`; randomness and time come in as arguments.

What ZeroTierOne 1.14.1 does (rustybits/zeroidc/src/lib.rs, service/OneService.cpp): it
discovers the issuer's endpoints, sends the user to the authorization endpoint with a PKCE
challenge (S256), the controller's nonce, scopes chosen by provider and
``redirect_uri=http://localhost:<local API port>/sso``; ``GET /sso`` exchanges the code, checks
the ID token and posts it, with the part of the controller's state before ``_``, to the central
endpoint from the auth info.

One difference, for safety: the ``state`` the provider echoes is this node's own (32 random
bytes in hex, then ``_`` and the network id, the reference's form), kept in a bounded table
and usable once, so the public ``/sso`` route can only complete a login this node started;
the controller's state is kept beside it and is what the central endpoint receives.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlencode, urlsplit

#: Logins waiting for their callback, in all; beyond it the oldest is dropped (and counted).
#: One per network is kept (a new login replaces the network's old one), so this bounds how
#: many networks can be logging in at once.
MAX_PENDING_LOGINS: Final = 32
#: Longest query values ``/sso`` accepts (real codes and states are far shorter).
MAX_STATE_CHARS: Final = 256
MAX_CODE_CHARS: Final = 4096
MAX_ERROR_CHARS: Final = 1024
#: Clock skew allowed when checking ``exp`` and ``iat`` (seconds).
CLOCK_LEEWAY_S: Final = 60
#: A login is refreshed this long before its ID token expires (seconds), as the reference.
REFRESH_MARGIN_S: Final = 30
#: Signature algorithms an ID token may use (never ``none``, never a shared-secret MAC: this
#: client has no secret).
ID_TOKEN_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                              "ES256", "ES384", "ES512", "EdDSA")  # fmt: skip

# Scopes by provider, as the reference asks (``openid`` always first).
_SCOPES: Final[dict[str, tuple[str, ...]]] = {
    "okta": ("profile", "email", "groups", "offline_access"),
    "keycloak": ("profile", "email"),
    "onelogin": ("profile", "email", "groups"),
}
_DEFAULT_SCOPES: Final = ("profile", "email", "offline_access")


class OidcError(Exception):
    """A login step that cannot go on; the message says which and why, for the user's page."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_verifier(random_bytes: Callable[[int], bytes]) -> str:
    """A PKCE code verifier: 32 random bytes, base64url (43 characters, RFC 7636 4.1)."""
    return _b64url(random_bytes(32))


def s256_challenge(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier`` (RFC 7636 4.2)."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def new_state(random_bytes: Callable[[int], bytes], network_id: int) -> str:
    """An unguessable state naming the network after ``_``, as the reference's does (hex,
    since base64url's alphabet has ``_``)."""
    return f"{random_bytes(32).hex()}_{network_id:016x}"


def scopes(provider: str) -> tuple[str, ...]:
    """The scopes asked of ``provider`` (unknown providers get the default set)."""
    return ("openid", *_SCOPES.get(provider, _DEFAULT_SCOPES))


def central_state(controller_state: str) -> str:
    """What the central endpoint gets as ``state``: the controller's state before its ``_``;
    the reference refuses a state that does not split in exactly two."""
    parts = controller_state.split("_")
    if len(parts) != 2 or not parts[0]:
        raise OidcError("the controller's SSO state is not of the form <id>_<network>")
    return parts[0]


def _http_url(value: object, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise OidcError(f"{key} is missing")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise OidcError(f"{key} is not an http(s) URL: {value[:200]!r}")
    return value


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What discovery says about the issuer: the only URLs a login ever follows."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


def discovery_url(issuer: str) -> str:
    """Where an issuer publishes its metadata (OpenID Connect Discovery 1.0, 4)."""
    return _http_url(issuer, "issuer URL").rstrip("/") + "/.well-known/openid-configuration"


def parse_discovery(doc: object, issuer: str) -> ProviderMetadata:
    """The issuer's metadata, refused unless it names the issuer we asked (Discovery 4.3)."""
    if not isinstance(doc, dict):
        raise OidcError("the provider's discovery document is not a JSON object")
    if doc.get("issuer") != issuer:
        raise OidcError(
            f"the discovery document's issuer {str(doc.get('issuer'))[:200]!r} is not {issuer!r}"
        )
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=_http_url(
            doc.get("authorization_endpoint"), "authorization_endpoint"
        ),
        token_endpoint=_http_url(doc.get("token_endpoint"), "token_endpoint"),
        jwks_uri=_http_url(doc.get("jwks_uri"), "jwks_uri"),
    )


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """One login this node started, waiting for the provider to send the user back."""

    network_id: int
    state: str
    verifier: str
    nonce: str
    controller_state: str
    client_id: str
    provider: str
    redirect_uri: str
    central_url: str
    metadata: ProviderMetadata

    def authorize_url(self) -> str:
        """Where the user logs in (the network's ``authenticationURL``)."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": " ".join(scopes(self.provider)),
                "state": self.state,
                "nonce": self.nonce,
                "code_challenge": s256_challenge(self.verifier),
                "code_challenge_method": "S256",
            }
        )
        endpoint = self.metadata.authorization_endpoint
        return f"{endpoint}{'&' if urlsplit(endpoint).query else '?'}{query}"


@dataclass
class PendingLogins:
    """Logins waiting for their callback: bounded (:data:`MAX_PENDING_LOGINS`, the oldest
    dropped), one per network, each state usable once and compared in constant time."""

    limit: int = MAX_PENDING_LOGINS
    _by_network: OrderedDict[int, PendingLogin] = field(default_factory=OrderedDict)
    #: ``dropped_oldest``, ``replaced``, ``unknown_state``, ``completed``.
    counters: dict[str, int] = field(default_factory=dict)

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1

    def __len__(self) -> int:
        return len(self._by_network)

    def get(self, network_id: int) -> PendingLogin | None:
        return self._by_network.get(network_id)

    def add(self, login: PendingLogin) -> None:
        if self._by_network.pop(login.network_id, None) is not None:
            self._count("replaced")
        self._by_network[login.network_id] = login
        while len(self._by_network) > self.limit:
            self._by_network.popitem(last=False)
            self._count("dropped_oldest")

    def discard(self, network_id: int) -> None:
        self._by_network.pop(network_id, None)

    def take(self, state: str) -> PendingLogin | None:
        """The login ``state`` belongs to, removed (a state works once); None, counted, for
        a state this node did not hand out or that was used already. Every entry is compared
        (in constant time), so the answer's timing does not tell how much of a guess was
        right."""
        given = state.encode("utf-8", "replace")
        found: PendingLogin | None = None
        for login in self._by_network.values():
            if hmac.compare_digest(given, login.state.encode("ascii")):
                found = login
        if found is None:
            self._count("unknown_state")
            return None
        del self._by_network[found.network_id]
        self._count("completed")
        return found


@dataclass(frozen=True, slots=True)
class CallbackError:
    """The provider sent the user back with an error (RFC 6749 4.1.2.1)."""

    error: str
    description: str


@dataclass(frozen=True, slots=True)
class CallbackCode:
    """The provider sent the user back with a code for ``state``."""

    code: str
    state: str


def _one(query: Mapping[str, list[str]], key: str, limit: int) -> str | None:
    values = query.get(key)
    if not values:
        return None
    if len(values) != 1:
        raise OidcError(f"the query has {key} more than once")
    if len(values[0]) > limit:
        raise OidcError(f"the query's {key} is longer than {limit} characters")
    return values[0]


def parse_callback(query: Mapping[str, list[str]]) -> CallbackError | CallbackCode:
    """What the provider's redirect to ``/sso`` says; :class:`OidcError` for anything else."""
    error = _one(query, "error", MAX_ERROR_CHARS)
    if error is not None:
        description = _one(query, "error_description", MAX_ERROR_CHARS) or ""
        return CallbackError(error, description)
    state = _one(query, "state", MAX_STATE_CHARS)
    code = _one(query, "code", MAX_CODE_CHARS)
    if not state:
        raise OidcError("the query has no state")
    if not code:
        raise OidcError("the query has no code")
    return CallbackCode(code, state)


_HASHES: Final = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


def access_token_hash(access_token: str, alg: str) -> str:
    """``at_hash``: the left half of the token's hash by the signature's hash (OIDC Core
    3.1.3.6); EdDSA takes SHA-512, as Ed25519 does."""
    digest = _HASHES["512" if alg == "EdDSA" else alg[-3:]](access_token.encode()).digest()
    return _b64url(digest[: len(digest) // 2])


def check_claims(
    claims: Mapping[str, object],
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    now_s: int,
    alg: str,
    access_token: str | None,
    refreshed: bool = False,
) -> int:
    """Whether a signature-checked ID token is for this login (OIDC Core 3.1.3.7); returns
    its expiry (seconds since the epoch), else :class:`OidcError` naming the claim. A
    ``refreshed`` token need not carry the nonce (OIDC Core 12.2), but one it carries must be
    the login's."""
    if claims.get("iss") != issuer:
        raise OidcError("the ID token's issuer (iss) is not the network's issuer")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if client_id not in audiences:
        raise OidcError("the ID token is not for this client (aud)")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise OidcError("the ID token has several audiences and azp is not this client")
    exp = claims.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise OidcError("the ID token has no expiry (exp)")
    if exp + CLOCK_LEEWAY_S <= now_s:
        raise OidcError("the ID token has expired (exp)")
    iat = claims.get("iat")
    if isinstance(iat, int) and iat - CLOCK_LEEWAY_S > now_s:
        raise OidcError("the ID token was issued in the future (iat)")
    given = claims.get("nonce")
    if given is None and refreshed:
        pass
    elif not isinstance(given, str) or not hmac.compare_digest(given.encode(), nonce.encode()):
        raise OidcError("the ID token's nonce is not this login's")
    at_hash = claims.get("at_hash")
    if at_hash is not None:
        if alg not in ID_TOKEN_ALGORITHMS:
            raise OidcError(f"the ID token's algorithm {alg!r} is not accepted")
        if access_token is None or not isinstance(at_hash, str):
            raise OidcError("the ID token has at_hash but no access token came with it")
        if not hmac.compare_digest(at_hash.encode(), access_token_hash(access_token, alg).encode()):
            raise OidcError("the access token does not match the ID token's at_hash")
    return exp


def refresh_delay_s(expiry_s: int, now_s: float) -> float:
    """How long until a login expiring at ``expiry_s`` is refreshed (0: now)."""
    return max(0.0, expiry_s - REFRESH_MARGIN_S - now_s)


__all__ = [
    "ID_TOKEN_ALGORITHMS",
    "MAX_PENDING_LOGINS",
    "REFRESH_MARGIN_S",
    "CallbackCode",
    "CallbackError",
    "OidcError",
    "PendingLogin",
    "PendingLogins",
    "ProviderMetadata",
    "access_token_hash",
    "central_state",
    "check_claims",
    "discovery_url",
    "new_state",
    "new_verifier",
    "parse_callback",
    "parse_discovery",
    "refresh_delay_s",
    "s256_challenge",
    "scopes",
]
