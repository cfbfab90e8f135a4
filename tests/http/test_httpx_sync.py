"""``httpx.Client(transport=ZtTransport(blocking_node))`` against the apps member B serves:
plain and TLS, IPv4 and IPv6, names, bodies both ways, one TCP connection for a client's
requests, the kernel past the overlay, and each failure as the httpx exception it must be."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

from tests.http.apps import STREAM_CHUNKS, chunk
from tests.http.conftest import WEB, Served
from ztnode.http.httpx_transport import ZtTransport, transport
from ztnode.testing.tls import TestCa

pytestmark = pytest.mark.e2e


def test_get_post_stream_on_one_connection(served: Served) -> None:
    with httpx.Client(transport=transport(served.client), timeout=20) as client:
        first = client.get(served.http.url).json()
        second = client.get(served.http.url + "again").json()
        assert first["client"][0] == served.a.address(4)
        assert second["path"] == "/again"
        assert first["client"] == second["client"]  # the same TCP connection, kept alive

        body = os.urandom(300_000)
        echoed = client.post(served.http.url + "echo", content=body).json()
        assert echoed == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}

        with client.stream("GET", served.http.url + "stream") as resp:
            assert "content-length" not in resp.headers  # chunked, as it was sent
            got = b"".join(resp.iter_bytes())
        assert got == b"".join(chunk(i) for i in range(STREAM_CHUNKS))

        v6 = client.get(f"http://[{served.b.address(6)}]/six").json()
        assert v6["path"] == "/six" and v6["host"] == f"[{served.b.address(6)}]"


def test_https_checks_the_certificate(served: Served, tmp_ca: TestCa) -> None:
    ctx = served.ca.client_context()
    with httpx.Client(transport=ZtTransport(served.client, verify=ctx), timeout=20) as client:
        answer = client.get(served.https.url).json()
        assert answer["scheme"] == "https"
        assert client.get(f"https://[{served.b.address(6)}]/").json()["scheme"] == "https"
    wrong = ZtTransport(served.client, verify=tmp_ca.client_context())
    with (
        httpx.Client(transport=wrong, timeout=20) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(served.https.url)


def test_names_of_the_overlay(served: Served) -> None:
    ctx = served.ca.client_context()
    with httpx.Client(transport=ZtTransport(served.client, verify=ctx), timeout=20) as client:
        assert client.get(f"http://{WEB}/named").json()["host"] == WEB
        assert client.get(f"https://{WEB}/").json()["scheme"] == "https"  # checked by name
        with pytest.raises(httpx.ConnectError, match="nosuch"):
            client.get("http://nosuch.zt.example/")


def test_kernel_hosts_past_the_overlay(served: Served, kernel_url: str) -> None:
    with httpx.Client(transport=ZtTransport(served.client), timeout=20) as client:
        assert client.get(kernel_url).json()["server"] == "kernel"
    only = ZtTransport(served.client, overlay_only=True)
    with httpx.Client(transport=only, timeout=20) as client:
        with pytest.raises(httpx.ConnectError, match="not on any ZeroTier network"):
            client.get(kernel_url)
        assert client.get(served.http.url).status_code == 200


def test_failures_are_httpx_exceptions(served: Served) -> None:
    with httpx.Client(transport=ZtTransport(served.client), timeout=20) as client:
        with pytest.raises(httpx.ConnectError, match="refused"):
            client.get(f"http://{served.b.address(4)}:9/")
        with pytest.raises(httpx.ReadTimeout):
            client.get(served.http.url + "hang", timeout=httpx.Timeout(20, read=0.5))
        with pytest.raises(httpx.ConnectTimeout):
            client.get(f"http://{served.unassigned()}/", timeout=httpx.Timeout(20, connect=0.5))
        assert client.get(served.http.url).status_code == 200  # the client is still fine
