"""The standard library's clients: ``ztnode.http.client``'s connections (over a node, routed by
its lookup, or over one network) and ``BlockingNetwork.url_opener()``, addresses and names."""

from __future__ import annotations

import http.client
import json
import urllib.error
from typing import Any

import pytest

from tests.http.conftest import WEB, Served
from ztnode.http.client import HTTPConnection, HTTPSConnection

pytestmark = pytest.mark.e2e


def fetch(conn: http.client.HTTPConnection, path: str) -> Any:
    conn.request("GET", path)
    resp = conn.getresponse()
    assert resp.status == 200
    return json.loads(resp.read())


def test_connection_over_the_node_keeps_alive(served: Served) -> None:
    conn = HTTPConnection(served.client, served.b.address(4), 80, timeout=20)
    try:
        first, second = fetch(conn, "/one"), fetch(conn, "/two")
        assert first["client"][0] == served.a.address(4)
        assert first["client"] == second["client"]  # HTTP/1.1: one TCP connection
        conn.request("POST", "/echo", body=b"x" * 300_000)
        assert json.loads(conn.getresponse().read())["length"] == 300_000
    finally:
        conn.close()
    conn = HTTPConnection(served.client, WEB, timeout=20)
    assert fetch(conn, "/named")["host"] == WEB
    conn.close()


def test_connection_over_a_network(served: Served) -> None:
    conn = HTTPConnection(served.a, served.b.address(6), 80, timeout=20)
    assert fetch(conn, "/six")["path"] == "/six"
    conn.close()
    conn = HTTPConnection(served.a, WEB, 80, timeout=20)  # the network's resolver
    assert fetch(conn, "/named")["host"] == WEB
    conn.close()


def test_https_connections(served: Served) -> None:
    ctx = served.ca.client_context()
    for via, host in ((served.client, served.b.address(4)), (served.a, WEB)):
        conn = HTTPSConnection(via, host, context=ctx, timeout=20)
        assert fetch(conn, "/tls")["scheme"] == "https"
        assert conn.sock is not None and conn.sock.version() in ("TLSv1.2", "TLSv1.3")
        conn.close()


def test_kernel_hosts_and_failures(served: Served, kernel_url: str) -> None:
    port = int(kernel_url.rsplit(":", 1)[1].strip("/"))
    conn = HTTPConnection(served.client, "127.0.0.1", port, timeout=20)
    assert fetch(conn, "/k")["server"] == "kernel"
    conn.close()
    only = HTTPConnection(served.client, "127.0.0.1", port, timeout=20, overlay_only=True)
    with pytest.raises(OSError, match="not on any ZeroTier network"):
        only.request("GET", "/")
    refused = HTTPConnection(served.client, served.b.address(4), 9, timeout=20)
    with pytest.raises(ConnectionRefusedError):
        refused.request("GET", "/")
    hang = HTTPConnection(served.client, served.b.address(4), 80, timeout=0.5)
    hang.request("GET", "/hang")
    with pytest.raises(TimeoutError):
        hang.getresponse()
    hang.close()
    with pytest.raises(TypeError, match="BlockingNode or a BlockingNetwork"):
        HTTPConnection(object(), "10.0.0.1")  # type: ignore[arg-type]


def test_url_opener_addresses_and_names(served: Served) -> None:
    opener = served.a.url_opener(context=served.ca.client_context())
    for url in (served.http.url, served.https.url, f"http://{WEB}/", f"https://{WEB}/"):
        with opener.open(url, timeout=20) as resp:
            answer = json.loads(resp.read())
        assert answer["scheme"] == url.split(":")[0]
    with opener.open(f"http://[{served.b.address(6)}]:{served.wsgi.port}/w", timeout=20) as r:
        assert json.loads(r.read())["server"] == "wsgi"
    with pytest.raises(urllib.error.URLError, match="refused"):
        opener.open(f"http://{served.b.address(4)}:9/", timeout=20)
