"""A fake OpenID Connect provider and a fake ZeroTier Central SSO endpoint, on 127.0.0.1 only,
for the version-1 SSO login tests: discovery, an authorize endpoint that sends the browser
straight back with a code, a token endpoint that checks the PKCE verifier and signs ID tokens
with a key made here, the JWKS, and a central endpoint that records what it was posted."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str


@dataclass
class FakeProvider:
    """Serves on an ephemeral loopback port; ``issuer`` is its base URL."""

    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": "k1"}))
    #: What a test may change: the key the ID tokens are signed with (another one makes the
    #: signature fail), the nonce put in them (None: the one asked for), the central answer.
    signing_key: RSAKey | None = None
    token_nonce: str | None = None
    central_status: int = 200
    #: Lifetimes (s) of the next ID tokens issued, in order; then an hour each.
    lifetimes: list[int] = field(default_factory=list)
    #: Refresh grants answered.
    refreshes: int = 0
    refresh_tokens: dict[str, _Grant] = field(default_factory=dict)
    central_body: dict[str, Any] = field(default_factory=dict)
    #: What came in: the authorize queries and the central endpoint's forms.
    authorize_queries: list[dict[str, str]] = field(default_factory=list)
    central_posts: list[dict[str, str]] = field(default_factory=list)
    grants: dict[str, _Grant] = field(default_factory=dict)
    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def issuer(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def central_url(self) -> str:
        return f"{self.issuer}/central/sso"

    def start(self) -> FakeProvider:
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/.well-known/openid-configuration":
                    self._send(200, {
                        "issuer": provider.issuer,
                        "authorization_endpoint": f"{provider.issuer}/authorize",
                        "token_endpoint": f"{provider.issuer}/token",
                        "jwks_uri": f"{provider.issuer}/jwks",
                    })  # fmt: skip
                elif url.path == "/jwks":
                    self._send(200, {"keys": [provider.key.as_dict(private=False)]})
                elif url.path == "/authorize":
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    provider.authorize_queries.append(q)
                    code = secrets.token_urlsafe(16)
                    provider.grants[code] = _Grant(
                        q["client_id"], q["redirect_uri"], q["code_challenge"], q["nonce"]
                    )
                    back = f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}"
                    self._send(302, {}, {"Location": back})
                else:
                    self._send(404, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if self.path == "/token":
                    self._send(*provider.token(form))
                elif self.path == "/central/sso":
                    provider.central_posts.append(form)
                    self._send(provider.central_status, provider.central_body)
                else:
                    self._send(404, {})

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") == "refresh_token":
            grant = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if grant is None or form.get("client_id") != grant.client_id:
                return 400, {"error": "invalid_grant"}
            self.refreshes += 1
            return self._issue(grant, refreshed=True)
        grant = self.grants.pop(form.get("code", ""), None)
        if grant is None or form.get("grant_type") != "authorization_code":
            return 400, {"error": "invalid_grant"}
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        ).rstrip(b"=")
        if challenge.decode() != grant.challenge:
            return 400, {"error": "invalid_grant", "error_description": "PKCE"}
        if form.get("redirect_uri") != grant.redirect_uri or form.get("client_id") != (
            grant.client_id
        ):
            return 400, {"error": "invalid_grant"}
        return self._issue(grant, refreshed=False)

    def _issue(self, grant: _Grant, *, refreshed: bool) -> tuple[int, dict[str, Any]]:
        """Tokens for ``grant``; a refreshed ID token carries no nonce (OIDC Core 12.2)."""
        access = secrets.token_urlsafe(24)
        digest = hashlib.sha256(access.encode()).digest()[:16]
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "user-1",
            "aud": grant.client_id,
            "iat": now,
            "exp": now + (self.lifetimes.pop(0) if self.lifetimes else 3600),
            "at_hash": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
        }
        if not refreshed:
            claims["nonce"] = self.token_nonce or grant.nonce
        key = self.signing_key or self.key
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
        refresh = secrets.token_urlsafe(24)
        self.refresh_tokens[refresh] = grant
        return 200, {"access_token": access, "token_type": "Bearer", "id_token": id_token,
                     "refresh_token": refresh, "expires_in": 3600}  # fmt: skip
