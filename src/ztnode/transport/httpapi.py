"""A small HTTP/1.1 JSON server for the node's local API, on asyncio streams.

ZeroTierOne serves its control API (``/status``, ``/peer``, ``/network``, ``/controller``...) on
127.0.0.1 with a token from ``authtoken.secret``, given in the ``X-ZT1-Auth`` header (or as
``Authorization: Bearer``, or ``?auth=``). Tools written for it speak plain HTTP/1.1 with JSON,
so this server implements exactly that: routing by method and path pattern, bounded request
sizes, keep-alive, and errors as JSON bodies with the right 4xx status. A handler that raises
:class:`HttpError` chooses its status; any other exception is a 500 and is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ztnode.budget import SecondBudget

log = logging.getLogger("ztnode.api")

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024
IDLE_TIMEOUT = 30.0
#: Connections served at once; more are answered 503 and closed (a local process opening
#: thousands must not starve the node's event loop).
MAX_CONNECTIONS = 64
#: Requests answered per second in all (beyond: 429 until the next second), and requests with
#: a wrong token per second (beyond: those get 429; requests with the right token still pass,
#: so a guesser cannot lock out the node's own tools).
MAX_REQUESTS_PER_SECOND = 2000
MAX_AUTH_FAILURES_PER_SECOND = 20

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class HttpError(Exception):
    def __init__(self, status: int, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        #: Further fields of the JSON error body (a compiler error's line and column).
        self.details = details or {}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    #: The client's IP address ("" when unknown, as for requests made in process).
    remote: str = ""

    def json(self) -> Any:
        """The body as JSON; an empty body is an empty object (as ZeroTierOne treats it)."""
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise HttpError(400, f"malformed JSON body: {e}") from None
        except (RecursionError, ValueError) as e:  # absurd nesting, 4300+ digit integers
            raise HttpError(400, f"malformed JSON body (too deep or too large): {e}") from None


@dataclass(frozen=True)
class RawResponse:
    """A handler's answer sent as is instead of as JSON (``/metrics``' Prometheus text)."""

    body: bytes
    content_type: str = "text/plain; version=0.0.4; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    #: The HTTP status (an HTML error page is still a page, not a JSON error).
    status: int = 200


Handler = Callable[[Request], Awaitable[Any]]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    public: bool = False


class JsonApi:
    """Routes like ``"/peer/{address}"``; each handler returns a JSON-serialisable value."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        #: Further tokens accepted on one exact path only (``/metrics``' metrics token).
        self.path_tokens: dict[str, str] = {}
        self.routes: list[_Route] = []
        self._servers: list[asyncio.Server] = []
        self._port = 0
        self.hosts: tuple[str, ...] = ()
        #: Who may use the API beyond loopback (``allowManagementFrom``): a client address
        #: it refuses gets 401 and ``{}``, token or not, as from ZeroTierOne. None: anyone
        #: who can connect (the server then listens on loopback only).
        self.allow_remote: Callable[[str], bool] | None = None
        self._connections = 0
        self._requests = SecondBudget()
        self._auth_failures = SecondBudget()
        #: Requests refused by the limits above, by reason (for tests and logs).
        self.refused: dict[str, int] = {}

    def route(self, method: str, template: str, handler: Handler, *, public: bool = False) -> None:
        """``public``: served without the token (the web console's static files, which hold
        nothing secret; the page asks for the token and sends it with every API call)."""
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "/?$"
        self.routes.append(_Route(method.upper(), re.compile(regex), handler, public))

    def _public(self, req: Request) -> bool:
        return any(
            r.public and r.method == req.method and r.pattern.match(req.path) for r in self.routes
        )

    async def start(self, host: str | tuple[str, ...], port: int) -> int:
        """Listen on ``host`` (one address or several, all on one port: with port 0 the
        first address picks it); returns the port."""
        hosts = (host,) if isinstance(host, str) else host
        servers: list[asyncio.Server] = []
        try:
            for h in hosts:
                servers.append(await asyncio.start_server(self._serve, h, port))
                port = int(servers[0].sockets[0].getsockname()[1])
        except BaseException:
            for server in servers:
                server.close()
            raise
        self._servers, self._port, self.hosts = servers, port, hosts
        return port

    async def rebind(self, hosts: tuple[str, ...]) -> None:
        """Listen on other addresses, on the same port (``allowManagementFrom`` changed);
        connections already open are served to their end."""
        if hosts == self.hosts or not self._servers:
            return
        for server in self._servers:
            server.close()
        try:
            await self.start(hosts, self._port)
        except OSError as e:
            log.error("local API: cannot listen on %s port %d: %s", hosts, self._port, e)
            await self.start(self.hosts, self._port)

    async def close(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()

    def _authorized(self, req: Request) -> bool:
        if self.token is None:
            return True
        given = req.headers.get("x-zt1-auth")
        if given is None:
            auth = req.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
        if given is None:
            values = req.query.get("auth")
            given = values[0] if values else None
        if given is None:
            return False
        if hmac.compare_digest(given.encode(), self.token.encode()):
            return True
        extra = self.path_tokens.get(req.path.rstrip("/"))
        return extra is not None and hmac.compare_digest(given.encode(), extra.encode())

    def _refuse(self, why: str) -> None:
        self.refused[why] = self.refused.get(why, 0) + 1

    async def dispatch(self, req: Request) -> tuple[int, Any]:
        now = int(time.monotonic() * 1000)
        if self.allow_remote is not None and req.remote and not self.allow_remote(req.remote):
            self._refuse("address")
            return 401, {}
        if not self._requests.take(now, MAX_REQUESTS_PER_SECOND):
            self._refuse("rate")
            return 429, {"error": "too many requests; try again in a second"}
        if not self._public(req) and not self._authorized(req):
            # A guesser is slowed down; a client with the right token is never locked out.
            if not self._auth_failures.take(now, MAX_AUTH_FAILURES_PER_SECOND):
                self._refuse("auth")
                return 429, {"error": "too many wrong tokens; try again in a second"}
            return 401, {"error": "missing or wrong auth token (X-ZT1-Auth)"}
        allowed: list[str] = []
        for r in self.routes:
            m = r.pattern.match(req.path)
            if m is None:
                continue
            if r.method != req.method:
                allowed.append(r.method)
                continue
            req.params = {k: unquote(v) for k, v in m.groupdict().items()}
            try:
                answer = await r.handler(req)
                return (answer.status if isinstance(answer, RawResponse) else 200), answer
            except HttpError as e:
                return e.status, {"error": e.message, **e.details}
            except Exception:
                log.exception("API handler failed: %s %s", req.method, req.path)
                return 500, {"error": "internal error"}
        if allowed:
            return 405, {"error": f"method {req.method} not allowed; use {', '.join(allowed)}"}
        return 404, {"error": f"no such resource: {req.path}"}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections >= MAX_CONNECTIONS:
            self._refuse("connections")
            with contextlib.suppress(ConnectionError, OSError):
                await self._respond(writer, 503, {"error": "too many connections"}, close=True)
            writer.close()
            return
        self._connections += 1
        peer = writer.get_extra_info("peername")
        remote = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        try:
            while True:
                try:
                    req = await asyncio.wait_for(self._read_request(reader), IDLE_TIMEOUT)
                except HttpError as e:
                    await self._respond(writer, e.status, {"error": e.message}, close=True)
                    return
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                if req is None:
                    return
                req.remote = remote
                status, body = await self.dispatch(req)
                close = req.headers.get("connection", "").lower() == "close"
                await self._respond(writer, status, body, close=close)
                if close:
                    return
        finally:
            self._connections -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HttpError(431, "request headers too large") from None
        except asyncio.IncompleteReadError as e:
            if not e.partial:
                return None
            raise
        if len(head) > MAX_HEADER_BYTES:
            raise HttpError(431, "request headers too large")
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            raise HttpError(400, "malformed request line") from None
        if not version.startswith("HTTP/1."):
            raise HttpError(400, "only HTTP/1.x is supported")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpError(400, f"malformed header line {line[:40]!r}")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise HttpError(400, "chunked request bodies are not supported; send Content-Length")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise HttpError(400, "bad Content-Length") from None
        if length < 0:
            raise HttpError(400, "bad Content-Length")
        if length > MAX_BODY_BYTES:
            raise HttpError(413, f"body larger than {MAX_BODY_BYTES} bytes")
        body = await reader.readexactly(length) if length else b""
        url = urlsplit(target)
        return Request(method.upper(), url.path or "/", parse_qs(url.query), headers, body)

    async def _respond(
        self, writer: asyncio.StreamWriter, status: int, body: Any, *, close: bool
    ) -> None:
        extra = ""
        if isinstance(body, RawResponse):
            data, ctype = body.body, body.content_type
            extra = "".join(f"{k}: {v}\r\n" for k, v in body.headers)
        else:
            data = json.dumps(body, indent=2, sort_keys=False).encode() + b"\n"
            ctype = "application/json"
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {ctype}\r\n"
            f"Content-Length: {len(data)}\r\n{extra}"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + data)
        await writer.drain()


async def fetch_json(
    host: str,
    port: int,
    method: str,
    path: str,
    token: str | None,
    body: Any = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """A minimal client for the CLI: one request, one JSON answer."""
    status, _ctype, payload = await fetch_raw(host, port, method, path, token, body, timeout)
    return status, json.loads(payload) if payload.strip() else None


async def fetch_raw(
    host: str,
    port: int,
    method: str,
    path: str,
    token: str | None,
    body: Any = None,
    timeout: float = 10.0,
) -> tuple[int, str, bytes]:
    """One request; the status, the Content-Type and the body bytes."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        if token is not None:
            head += f"X-ZT1-Auth: {token}\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        writer.write(head.encode("latin-1") + data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    header, _, payload = raw.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    ctype = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type":
            ctype = value.strip()
    return status, ctype, payload
