"""Version-1 SSO logins on the member side: the HTTP half of :mod:`ztnode.core.oidc`.

When a network's controller answers AUTHENTICATION_REQUIRED with version-1 auth info (issuer,
client id, provider, central endpoint, nonce, state), this module discovers the issuer's
endpoints and makes the login URL the local API shows as the network's
``authenticationURL``. The provider sends the user back to ``GET /sso`` on the local API
(served without the token, as ZeroTierOne serves it); that request completes the login: the
code is exchanged with the PKCE verifier, the ID token is checked (signature against the
provider's JWKS, issuer, audience, expiry, nonce, ``at_hash``) and posted to the central
endpoint, which records the login; the controller then hands out the config at the member's
next request (see :mod:`ztnode.core.sso`).

The route is public, so it completes only logins this node started (their state matched in
constant time and used once) and follows only URLs from that login's auth info and discovery;
redirects are never followed and every answer read is bounded. Every failure is an HTML page
with a status and a sentence, never a traceback.

Needs the ``sso`` extra (httpx and joserfc); without it a version-1 network logs, and shows on
``/sso``, that ``pip install 'ztnode[sso]'`` is needed.

With a refresh token, the login is kept alive: 30 s before the ID token expires (or at once
when the controller asks for a login again) a refreshed ID token is checked and posted to the
central endpoint with ``state=refresh`` and the login's nonce as ``extra_nonce``, as
ZeroTierOne's refresh thread does; the first failure ends it (the user then logs in again).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import importlib.util
import json
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ztnode.core import events as ev
from ztnode.core.node import Node
from ztnode.core.oidc import (
    ID_TOKEN_ALGORITHMS,
    CallbackCode,
    CallbackError,
    OidcError,
    PendingLogin,
    PendingLogins,
    ProviderMetadata,
    central_state,
    check_claims,
    discovery_url,
    new_state,
    new_verifier,
    parse_callback,
    parse_discovery,
    refresh_delay_s,
)
from ztnode.transport.httpapi import JsonApi, RawResponse, Request
from ztnode.wire.netconf import SsoConfig

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("ztnode.api")  # served by the local API

#: Longest answer read from the provider or the central endpoint.
MAX_ANSWER_BYTES: Final = 256 * 1024
#: Seconds an HTTP exchange with the provider or the central endpoint may take.
HTTP_TIMEOUT_S: Final = 10.0
MISSING_EXTRA: Final = "version-1 SSO needs httpx and joserfc: pip install 'ztnode[sso]'"

_PAGE: Final = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ztnode: {title}</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>{title}</h1>
<p>{message}</p>
</body></html>
"""
_PAGE_HEADERS: Final = (
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
)


def page(status: int, title: str, message: str) -> RawResponse:
    """A small HTML page for the user's browser (everything in it escaped)."""
    body = _PAGE.format(title=html.escape(title), message=html.escape(message))
    return RawResponse(body.encode(), "text/html; charset=utf-8", _PAGE_HEADERS, status)


def extra_missing() -> bool:
    """Whether the ``sso`` extra's libraries are absent."""
    return any(importlib.util.find_spec(m) is None for m in ("httpx", "joserfc"))


def _default_client() -> httpx.AsyncClient:
    import httpx

    return httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, follow_redirects=False)


class SsoLogins:
    """The node's version-1 SSO logins: started from the core's events, completed by
    ``GET /sso``. ``redirect_port`` is the local API's port (the redirect URI names it)."""

    def __init__(
        self,
        node: Callable[[], Node | None],
        *,
        redirect_port: int = 0,
        random_bytes: Callable[[int], bytes] = os.urandom,
        wall_clock_s: Callable[[], float] = time.time,
        client: Callable[[], httpx.AsyncClient] = _default_client,
    ) -> None:
        self._node = node
        self.redirect_port = redirect_port
        self._random = random_bytes
        self._clock = wall_clock_s
        self._client = client
        self.pending = PendingLogins()
        #: Per network: the auth info and metadata of its latest login (for a new URL after
        #: one was used), the login's expiry (ms) once it succeeded, the last failure.
        self._known: dict[int, tuple[SsoConfig, ProviderMetadata]] = {}
        self.expiry_ms: dict[int, int] = {}
        self.errors: dict[int, str] = {}
        #: ``/sso`` outcomes (``refused_query``, ``refused_state``, ``provider_error``,
        #: ``failed``, ``succeeded``), login starts that failed (``start_failed``), refreshes
        #: (``refreshed``, ``refresh_failed``).
        self.counters: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Per network with a refresh token: the refresher and what wakes it early.
        self._refreshers: dict[int, tuple[asyncio.Task[None], asyncio.Event]] = {}

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1

    # --- what the local API shows -------------------------------------------------------------

    def login_url(self, network_id: int) -> str | None:
        """The URL where the user logs in to ``network_id``; None if this module has none."""
        login = self.pending.get(network_id)
        return login.authorize_url() if login is not None else None

    # --- starting ----------------------------------------------------------------------------

    def on_event(self, event: ev.Event) -> None:
        """The service's event subscriber: a version-1 AUTHENTICATION_REQUIRED starts a login,
        leaving a network forgets its login."""
        if isinstance(event, ev.NetworkLeft):
            self.pending.discard(event.network_id)
            self._known.pop(event.network_id, None)
            self.expiry_ms.pop(event.network_id, None)
            self.errors.pop(event.network_id, None)
            refresher = self._refreshers.pop(event.network_id, None)
            if refresher is not None:
                refresher[0].cancel()
            return
        if not isinstance(event, ev.NetworkAuthenticationRequired):
            return
        refresher = self._refreshers.get(event.network_id)
        if refresher is not None:
            refresher[1].set()  # refresh now, as the reference kicks its refresh thread
        node = self._node()
        net = node.network(event.network_id) if node is not None else None
        info = net.auth_info if net is not None else None
        if info is None or info.version != 1:
            return
        task = asyncio.get_running_loop().create_task(self.begin(event.network_id, info))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def begin(self, network_id: int, info: SsoConfig) -> None:
        """Discover the issuer and make the network's login URL; a failure is logged and
        kept in :attr:`errors` (the URL then stays empty)."""
        try:
            if extra_missing():
                raise OidcError(MISSING_EXTRA)
            if not self.redirect_port:
                raise OidcError("the local API is not listening, so there is no redirect URI")
            central_state(info.state)
            for key, value in (("client id", info.client_id), ("nonce", info.nonce)):
                if not value:
                    raise OidcError(f"the controller's auth info has no {key}")
            known = self._known.get(network_id)
            if known is not None and known[1].issuer == info.issuer_url:
                meta = known[1]
            else:
                doc = await self._get_json(discovery_url(info.issuer_url))
                meta = parse_discovery(doc, info.issuer_url)
        except OidcError as e:
            self._count("start_failed")
            self.errors[network_id] = str(e)
            log.error("SSO login for network %016x cannot start: %s", network_id, e)
            return
        self._known[network_id] = (info, meta)
        self.errors.pop(network_id, None)
        self._new_login(network_id, info, meta)

    def _new_login(self, network_id: int, info: SsoConfig, meta: ProviderMetadata) -> None:
        self.pending.add(
            PendingLogin(
                network_id=network_id,
                state=new_state(self._random, network_id),
                verifier=new_verifier(self._random),
                nonce=info.nonce,
                controller_state=info.state,
                client_id=info.client_id,
                provider=info.provider,
                redirect_uri=f"http://localhost:{self.redirect_port}/sso",
                central_url=info.central_auth_url,
                metadata=meta,
            )
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- HTTP --------------------------------------------------------------------------------

    async def _exchange(
        self, method: str, url: str, form: dict[str, str] | None
    ) -> tuple[int, bytes]:
        """One request to a URL of the login's own; the status and the (bounded) body."""
        import httpx

        try:
            async with self._client() as client, client.stream(method, url, data=form) as answer:
                body = bytearray()
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise OidcError(f"{url[:200]} answered more than {MAX_ANSWER_BYTES} bytes")
                return answer.status_code, bytes(body)
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, ValueError) as e:
            raise OidcError(f"{url[:200]} could not be reached: {e}") from None

    async def _get_json(self, url: str, form: dict[str, str] | None = None) -> Any:
        status, body = await self._exchange("POST" if form is not None else "GET", url, form)
        if status != 200:
            raise OidcError(f"{url[:200]} answered HTTP {status}: {body[:200]!r}")
        try:
            return json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise OidcError(f"{url[:200]} did not answer JSON") from None

    # --- completing --------------------------------------------------------------------------

    async def handle(self, req: Request) -> RawResponse:
        """The ``GET /sso`` route's handler."""
        return await self.callback(req.query)

    async def callback(self, query: dict[str, list[str]]) -> RawResponse:
        """``GET /sso``: the provider sent the user back."""
        try:
            answer = parse_callback(query)
        except OidcError as e:
            self._count("refused_query")
            return page(400, "Login refused", str(e))
        if isinstance(answer, CallbackError):
            self._count("provider_error")
            text = answer.error + (f": {answer.description}" if answer.description else "")
            return page(500, "Login failed", f"The identity provider says: {text}")
        assert isinstance(answer, CallbackCode)
        login = self.pending.take(answer.state)
        if login is None:
            self._count("refused_state")
            return page(
                403, "Login refused", "This login was not started here or was used already."
            )
        try:
            expiry_s = await self._complete(login, answer.code)
        except OidcError as e:
            self._count("failed")
            self.errors[login.network_id] = str(e)
            log.error("SSO login for network %016x failed: %s", login.network_id, e)
            status = 402 if "license seats" in str(e) else 502
            return page(status, "Login failed", str(e))
        finally:
            # A login is used once; the network gets a fresh URL as the reference makes one.
            known = self._known.get(login.network_id)
            if known is not None and self.pending.get(login.network_id) is None:
                self._new_login(login.network_id, *known)
        self._count("succeeded")
        self.expiry_ms[login.network_id] = expiry_s * 1000
        self.errors.pop(login.network_id, None)
        return page(
            200,
            "Login succeeded",
            f"You are logged in to network {login.network_id:016x}; you may close this page.",
        )

    async def _complete(self, login: PendingLogin, code: str) -> int:
        """Exchange, check, post; the ID token's expiry (seconds) when Central took it."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": login.redirect_uri,
            "client_id": login.client_id,
            "code_verifier": login.verifier,
        }
        id_token, expiry, refresh_token = await self._tokens(login, form, refreshed=False)
        central = {"id_token": id_token, "state": central_state(login.controller_state)}
        await self._post_central(login.central_url, central)
        if refresh_token is not None:
            self._start_refresh(login, refresh_token, expiry)
        return expiry

    async def _tokens(
        self, login: PendingLogin, form: dict[str, str], *, refreshed: bool
    ) -> tuple[str, int, str | None]:
        """Ask the token endpoint; the checked ID token, its expiry and any refresh token."""
        meta = login.metadata
        tokens = await self._get_json(meta.token_endpoint, form)
        if not isinstance(tokens, dict) or not isinstance(tokens.get("id_token"), str):
            raise OidcError("the provider's token answer has no id_token")
        id_token: str = tokens["id_token"]
        access = tokens.get("access_token")
        jwks = await self._get_json(meta.jwks_uri)
        claims, alg = verify_signature(id_token, jwks)
        expiry = check_claims(
            claims,
            issuer=meta.issuer,
            client_id=login.client_id,
            nonce=login.nonce,
            now_s=int(self._clock()),
            alg=alg,
            access_token=access if isinstance(access, str) else None,
            refreshed=refreshed,
        )
        refresh = tokens.get("refresh_token")
        return id_token, expiry, refresh if isinstance(refresh, str) and refresh else None

    async def _post_central(self, url: str, form: dict[str, str]) -> None:
        """Give the central endpoint the ID token; an error it states is raised."""
        status, body = await self._exchange("POST", url, form)
        if status == 402:
            raise OidcError(
                "additional license seats required; please contact your network administrator"
            )
        if status != 200:
            raise OidcError(f"the central endpoint answered HTTP {status}")
        try:
            said = json.loads(body) if body.strip() else {}
        except (UnicodeDecodeError, ValueError, RecursionError):
            said = None
        if not isinstance(said, dict):
            raise OidcError("the central endpoint's answer is not a JSON object")
        if "errorMessage" in said:
            raise OidcError(f"the central endpoint says: {str(said['errorMessage'])[:500]}")

    # --- refreshing --------------------------------------------------------------------------

    def _start_refresh(self, login: PendingLogin, refresh_token: str, expiry_s: int) -> None:
        """Keep the login alive: one refresher per network (a new login replaces it)."""
        old = self._refreshers.pop(login.network_id, None)
        if old is not None:
            old[0].cancel()
        kick = asyncio.Event()
        task = asyncio.get_running_loop().create_task(
            self._refresh_loop(login, refresh_token, expiry_s, kick)
        )
        self._refreshers[login.network_id] = (task, kick)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh_loop(
        self, login: PendingLogin, refresh_token: str, expiry_s: int, kick: asyncio.Event
    ) -> None:
        """Refresh :data:`~ztnode.core.oidc.REFRESH_MARGIN_S` before expiry, or at once when
        kicked (the controller asked for a login again), as the reference's refresh thread:
        the new ID token goes to Central with ``state=refresh`` and the login's nonce as
        ``extra_nonce``. The first failure ends the refreshing (the user logs in again)."""
        nwid = login.network_id
        try:
            while True:
                delay = refresh_delay_s(expiry_s, self._clock())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(kick.wait(), delay)
                kick.clear()
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token,
                    "client_id": login.client_id,
                }
                id_token, expiry_s, new_refresh = await self._tokens(login, form, refreshed=True)
                central = {"id_token": id_token, "state": "refresh", "extra_nonce": login.nonce}
                await self._post_central(login.central_url, central)
                refresh_token = new_refresh or refresh_token
                self.expiry_ms[nwid] = expiry_s * 1000
                self._count("refreshed")
        except OidcError as e:
            self._count("refresh_failed")
            self.errors[nwid] = f"refreshing the login failed: {e}"
            self.expiry_ms[nwid] = 0
            log.error("SSO login for network %016x: refreshing failed: %s", nwid, e)
        finally:
            if self._refreshers.get(nwid, (None,))[0] is asyncio.current_task():
                del self._refreshers[nwid]


def verify_signature(id_token: str, jwks: object) -> tuple[dict[str, Any], str]:
    """The ID token's claims and algorithm once its signature checks against ``jwks``."""
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    if not isinstance(jwks, dict):
        raise OidcError("the provider's JWKS is not a JSON object")
    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        token = jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGORITHMS))
    except (JoseError, ValueError, TypeError, KeyError) as e:
        raise OidcError(f"the ID token's signature does not check: {e}") from None
    return dict(token.claims), str(token.header.get("alg", ""))


def register_sso_routes(api: JsonApi, logins: SsoLogins) -> None:
    """``GET /sso`` on the local API, without the token (the browser has none)."""

    api.route("GET", "/sso", logins.handle, public=True)


__all__ = ["MAX_ANSWER_BYTES", "MISSING_EXTRA", "SsoLogins", "page", "register_sso_routes"]
