"""requests through :class:`ZtAdapter` against the ASGI and WSGI apps member B serves: the same
ground as httpx's tests, plus the environment's proxies, which overlay hosts must skip."""

from __future__ import annotations

import hashlib
import os

import pytest
import requests

from tests.http.apps import STREAM_CHUNKS, chunk
from tests.http.conftest import WEB, Served
from ztnode.http.requests_adapter import ZtAdapter, session
from ztnode.testing.tls import TestCa

pytestmark = pytest.mark.e2e


def test_get_post_stream_on_one_connection(served: Served) -> None:
    with session(served.client) as s:
        first = s.get(served.http.url, timeout=20).json()
        second = s.get(served.http.url + "again", timeout=20).json()
        assert first["client"][0] == served.a.address(4)
        assert first["client"] == second["client"]  # pooled: one TCP connection

        body = os.urandom(300_000)
        echoed = s.post(served.http.url + "echo", data=body, timeout=20).json()
        assert echoed == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}

        with s.get(served.http.url + "stream", stream=True, timeout=20) as resp:
            assert resp.headers.get("transfer-encoding") == "chunked"
            got = b"".join(resp.iter_content(chunk_size=None))
        assert got == b"".join(chunk(i) for i in range(STREAM_CHUNKS))

        v6 = s.get(f"http://[{served.b.address(6)}]/six", timeout=20).json()
        assert v6["path"] == "/six"


def test_https_and_names(served: Served, tmp_ca: TestCa) -> None:
    with session(served.client) as s:
        ca = str(served.ca.ca_file)
        assert s.get(served.https.url, verify=ca, timeout=20).json()["scheme"] == "https"
        assert s.get(f"http://{WEB}/named", timeout=20).json()["host"] == WEB
        assert s.get(f"https://{WEB}/", verify=ca, timeout=20).json()["scheme"] == "https"
        with pytest.raises(requests.exceptions.SSLError):
            s.get(served.https.url, verify=str(tmp_ca.ca_file), timeout=20)
        with pytest.raises(requests.ConnectionError, match="nosuch"):
            s.get("http://nosuch.zt.example/", timeout=20)


def test_wsgi_app(served: Served) -> None:
    with session(served.client) as s:
        answer = s.get(served.wsgi.url + "hello", timeout=20).json()
        assert answer == {
            "path": "/hello",
            "client": [served.a.address(4)],
            "scheme": "http",
            "server": "wsgi",
        }
        body = os.urandom(200_000)
        echoed = s.post(served.wsgi.url + "echo", data=body, timeout=20).json()
        assert echoed == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        six = f"http://[{served.b.address(6)}]:{served.wsgi.port}/six"
        assert s.get(six, timeout=20).json()["client"] == [served.a.address(6)]


def test_kernel_hosts_past_the_overlay(served: Served, kernel_url: str) -> None:
    with session(served.client) as s:
        assert s.get(kernel_url, timeout=20).json()["server"] == "kernel"
    with (
        session(served.client, overlay_only=True) as s,
        pytest.raises(requests.ConnectionError, match="not on any ZeroTier network"),
    ):
        s.get(kernel_url, timeout=20)


def test_kernel_proxies_are_not_for_overlay_hosts(served: Served, kernel_url: str) -> None:
    # The kernel "proxy" answers every request itself: only kernel hosts may reach it.
    with requests.Session() as s:
        s.mount("http://", ZtAdapter(served.client))
        proxies = {"http": kernel_url}
        assert s.get(served.http.url, proxies=proxies, timeout=20).json()["path"] == "/"
        via_proxy = s.get("http://example.invalid/x", proxies=proxies, timeout=20).json()
        assert via_proxy == {"path": "http://example.invalid/x", "server": "kernel"}


def test_failures_are_requests_exceptions(served: Served) -> None:
    with session(served.client) as s:
        with pytest.raises(requests.ConnectionError, match="refused"):
            s.get(f"http://{served.b.address(4)}:9/", timeout=20)
        with pytest.raises(requests.ReadTimeout):
            s.get(served.http.url + "hang", timeout=(20, 0.5))
        with pytest.raises(requests.ConnectTimeout):
            s.get(f"http://{served.unassigned()}/", timeout=(0.5, 20))
        assert s.get(served.http.url, timeout=20).status_code == 200
