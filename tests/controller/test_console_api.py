"""What the web console needs of the API: its files served without the token under a strict
Content-Security-Policy and nothing else under /console; a rules script compiled by the node
with the compiler's line and column on error; members with what the controller saw of them."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.controller.test_api import CTL_HEX, TOKEN, Harness
from tests.controller.test_controller import M1, META
from ztnode.transport.console import FILES, register_console_routes
from ztnode.transport.httpapi import RawResponse, Request


def _get(h: Harness, path: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"x-zt1-auth": token} if token else {}
    return asyncio.run(h.api.dispatch(Request("GET", path, {}, headers, b"")))


def test_console_files_need_no_token_and_carry_a_strict_policy(h: Harness) -> None:
    register_console_routes(h.api)
    for path, name in (("/console", "index.html"), *((f"/console/{n}", n) for n in FILES)):
        status, body = _get(h, path)
        assert status == 200 and isinstance(body, RawResponse), path
        assert body.content_type == FILES[name]
        headers = dict(body.headers)
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "'unsafe-inline'" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
    index = _get(h, "/console")[1].body.decode()
    assert '<script src="/console/console.js" defer>' in index and "<script>" not in index
    # Nothing else is public: other files, traversal, and the API itself without the token.
    for path in ("/console/secret.txt", "/console/..%2Fauthtoken.secret"):
        assert _get(h, path)[0] == 404, path
    assert _get(h, "/console/a/b")[0] == 401  # no public route: the token rules
    assert _get(h, "/controller")[0] == 401
    assert _get(h, "/controller", TOKEN)[0] == 200


def test_the_console_script_never_writes_markup() -> None:
    """Names come from members; the script puts them in as text only."""
    from importlib import resources

    js = resources.files("ztnode.console").joinpath("console.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js, sink


def test_rules_are_compiled_checked_and_applied(h: Harness) -> None:
    nwid = h.create({"name": "rules"})
    path = f"/unstable/controller/network/{nwid}/rules"
    script = "drop\n  not ethertype ipv4\n  and not ethertype arp\n;\naccept;\n"
    out = h.ok("POST", path, {"source": script, "check": True})
    assert out["applied"] is False and out["rules"] >= 3
    assert h.ok("GET", f"/controller/network/{nwid}")["rulesSource"] == ""
    out = h.ok("POST", path, {"source": script})
    assert out["applied"] is True and out["network"]["rulesSource"] == script
    net = h.ok("GET", f"/controller/network/{nwid}")
    assert net["rules"] == out["network"]["rules"] and net["rulesSource"] == script
    status, err = h.call("POST", path, {"source": "accept;\nbogus thing;\n"})
    assert status == 400 and err["line"] == 2 and err["column"] >= 1 and err["message"]
    status, err = h.call("POST", path, {"script": "accept;"})
    assert status == 400 and "source" in err["error"]


def test_unstable_members_carry_what_the_controller_saw(h: Harness) -> None:
    nwid = h.create({"name": "seen"})
    assert nwid.startswith(CTL_HEX)
    asked = h.now
    h.ctl.handle_request(M1.public(), int(nwid, 16), META, asked, ("192.0.2.9", 9993))
    listing = h.ok("GET", f"/unstable/controller/network/{nwid}/member")
    (m,) = listing["data"]
    assert m["id"] == f"{M1.address:010x}" and m["online"] is True
    assert m["physicalAddress"] == "192.0.2.9/9993" and m["lastSeen"] == asked
