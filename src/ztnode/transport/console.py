"""The web console's files, served by the local API at ``/console``.

Why static files and no server-side pages: the console is a client of the same API the CLI
uses (ZeroTierOne's controller routes and ztnode's few extensions), so anything the page does
has a route and a command, and there is nothing to build at install time. The files hold no
secret and are served without the token; the page asks for the token (``authtoken.secret``),
keeps it in the tab's ``sessionStorage`` and sends it with each call. The local API listens on
127.0.0.1 only, so the console is reachable from this machine only.

A strict Content-Security-Policy (scripts and styles from the console's own files only, no
inline script, no framing) keeps a hostile network or member name from running as script in it.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from ztnode.transport.httpapi import HttpError, JsonApi, RawResponse, Request

#: The files, by name, with their types; nothing else under /console is served.
FILES: Final = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
HEADERS: Final = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
)


def _file(name: str) -> RawResponse:
    ctype = FILES.get(name)
    if ctype is None:
        raise HttpError(404, f"no console file {name!r}")
    data = resources.files("ztnode.console").joinpath(name).read_bytes()
    return RawResponse(data, ctype, HEADERS)


def register_console_routes(api: JsonApi) -> None:
    async def index(req: Request) -> RawResponse:
        return _file("index.html")

    async def asset(req: Request) -> RawResponse:
        return _file(req.params["name"])

    api.route("GET", "/console", index, public=True)
    api.route("GET", "/console/{name}", asset, public=True)


__all__ = ["FILES", "register_console_routes"]
