"""The namespace tooling itself: isolated, usable from this process and from subprocesses."""

from __future__ import annotations

import socket
import subprocess

import pytest

from tests.interop.conftest import need_root
from tests.interop.netns import NetNamespace


@pytest.mark.parametrize(("layout", "count"), [("single", 1), ("bridge", 3)])
def test_namespace_udp_between_addresses(layout: str, count: int) -> None:
    need_root()
    with NetNamespace(layout=layout, count=count) as ns:
        socks = [ns.socket(bind=(a, 0)) for a in ns.addresses]
        socks.append(ns.socket(bind=(ns.addresses[0], 0)))
        try:
            for s in socks:
                s.settimeout(5)
            for a in socks:
                for b in socks:
                    if a is not b:
                        a.sendto(b"ping", b.getsockname())
                        assert b.recvfrom(16) == (b"ping", a.getsockname())
        finally:
            for s in socks:
                s.close()
        # No route out: the namespace cannot reach anything but itself.
        r = subprocess.run(
            ["ip", "netns", "exec", ns.name, "ip", "route", "get", "192.0.2.1"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        assert r.returncode != 0
        name = ns.name
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert name not in listed.stdout


def test_socket_outside_namespace_is_unaffected() -> None:
    need_root()
    with NetNamespace() as ns:
        inner = ns.socket(bind=(ns.addresses[0], 0))
        outer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            with pytest.raises(OSError):
                outer.bind((ns.addresses[0], 0))  # the address exists only inside
        finally:
            inner.close()
            outer.close()
