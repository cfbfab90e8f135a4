"""The apps the HTTP tests serve: a plain ASGI callable (no framework, so a failure is ours or
uvicorn's), one that speaks the lifespan protocol, and a WSGI one. Every answer says who asked
(the client's address and port), so tests can see which TCP connection carried a request."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

STREAM_CHUNKS = 20
STREAM_CHUNK = 4000


def chunk(i: int) -> bytes:
    """The ``i``-th chunk /stream sends: distinct, so order and loss show."""
    return (b"%05d" % i) * (STREAM_CHUNK // 5)


def pattern(start: int, end: int) -> bytes:
    """Bytes ``start:end`` of what /bytes sends: a counter, so a lost or repeated piece
    shows."""
    first, last = start // 4, (end + 3) // 4
    data = b"".join(i.to_bytes(4, "big") for i in range(first, last))
    return data[start - first * 4 : end - first * 4]


async def _reply(send: Send, status: int, body: bytes, kind: bytes = b"application/json") -> None:
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _body(receive: Receive) -> bytes:
    out = bytearray()
    while True:
        message = await receive()
        out += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(out)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """GET / (who asked, and the lifespan state if any), POST /echo (length and digest of
    the body), GET /stream (chunks sent one by one with no length), GET /bytes?n=N (N bytes of
    :func:`pattern`), GET /hang (no answer until the client goes). Lifespan scopes are
    refused, as an app without lifespan does."""
    if scope["type"] != "http":
        raise RuntimeError(f"this app serves http, not {scope['type']}")
    path = scope["path"]
    if path == "/echo":
        body = await _body(receive)
        digest = hashlib.sha256(body).hexdigest()
        await _reply(send, 200, json.dumps({"length": len(body), "sha256": digest}).encode())
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(STREAM_CHUNKS):
            await send({"type": "http.response.body", "body": chunk(i), "more_body": True})
            await asyncio.sleep(0.005)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/bytes":
        size = int(scope["query_string"].decode().partition("=")[2] or 0)
        headers = [(b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for start in range(0, size, 65536):
            piece = pattern(start, min(size, start + 65536))
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/hang":
        async with asyncio.timeout(30):
            while (await receive())["type"] != "http.disconnect":
                pass
    else:
        client = scope.get("client")
        answer = {
            "path": path,
            "client": list(client) if client else None,
            "scheme": scope["scheme"],
            "host": dict(scope["headers"]).get(b"host", b"").decode(),
            "state": dict(scope.get("state", {})),
        }
        await _reply(send, 200, json.dumps(answer).encode())


class LifespanApp:
    """:func:`app` with the lifespan protocol: ``events`` records startup and shutdown, and
    the state it sets at startup reaches every request (``GET /``'s ``state``)."""

    def __init__(self, *, fail_startup: bool = False) -> None:
        self.events: list[str] = []
        self.fail_startup = fail_startup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.fail_startup:
                    await send({"type": "lifespan.startup.failed", "message": "no database"})
                    return
                scope["state"]["greeting"] = "set at startup"
                self.events.append("startup")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.events.append("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """GET anything: who asked; POST /echo: length and digest of the body."""
    if environ["REQUEST_METHOD"] == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        answer = {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    else:
        answer = {
            "path": environ["PATH_INFO"],
            "client": [environ["REMOTE_ADDR"]],
            "scheme": environ["wsgi.url_scheme"],
            "server": "wsgi",
        }
    data = json.dumps(answer).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]
