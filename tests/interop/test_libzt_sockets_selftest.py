"""The libzt worker's socket jobs, proven between two libzt nodes before they face our stack.

Tests that move TCP and UDP between libzt and our own node read their verdicts off the worker's
``tcp_server``/``tcp_client``/``udp_*`` jobs, so those jobs must be right on their own first:
here both ends are libzt 1.8.4, a known-good ZeroTier stack, on our controller's private network.

One namespace, layout "bridge": our root+controller on ``192.168.217.1``, libzt A on
``192.168.218.1``, libzt B on ``192.168.219.1``, each libzt node told to ignore the others'
interfaces. Separate /24s keep the root's one-new-identity-per-2-s-per-/24 gate out of the way,
so both libzt nodes start at once. Their identities are fixed test identities, written into their
storage and authorised ahead of time, so their first config request already succeeds.

Only IPv4 is assigned and used: libzt 1.8.4 crashes on its own IPv6 receive path.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from tests.interop.conftest import need_root
from tests.interop.libzt_worker import pattern
from tests.interop.netns import NetNamespace
from tests.interop.peer import LibztError, LibztPeer
from tests.interop.world import (
    authorize,
    controller_world,
    start_libzt_member,
    wait_libzt_addresses,
)

IDS = test_identities()
P_LIBZT = 29990  # libzt node i listens on P_LIBZT + i (underlay)
TCP_SINK, TCP_ECHO, UDP_ECHO, TCP_IDLE = 7001, 7002, 7003, 7004  # ports on the ZeroTier network
SINK_BYTES = 2 * 1024 * 1024
ECHO_BYTES = 256 * 1024
SEED = 0x5EED
NETWORK: dict[str, Any] = {
    "name": "libzt-sockets",
    "private": True,
    "v4AssignMode": {"zt": True},
    "v6AssignMode": {"rfc4193": False, "6plane": False, "zt": False},
    "ipAssignmentPools": [{"ipRangeStart": "10.147.21.1", "ipRangeEnd": "10.147.21.254"}],
    "routes": [{"target": "10.147.21.0/24", "via": None}],
}


def wait_member_ipv4(lz: LibztPeer, nwid: str, timeout: float) -> tuple[str, float]:
    """libzt's IPv4 on the network once ready, and how long that took."""
    t0 = time.monotonic()
    return wait_libzt_addresses(lz, nwid, timeout)[4], time.monotonic() - t0


def test_libzt_socket_jobs_between_two_libzt_nodes(libzt_installed: None, tmp_path: Path) -> None:
    need_root()
    t0 = time.monotonic()
    with (
        NetNamespace(layout="bridge", count=3) as ns,
        controller_world(ns, tmp_path, IDS[0], ns.addresses[0]) as world,
        LibztPeer(netns=ns.name) as a,
        LibztPeer(netns=ns.name) as b,
    ):
        nwid: str = world.api.call("POST", "/controller/network", NETWORK)["id"]
        nodes = ((a, IDS[2], 1), (b, IDS[3], 2))
        for _, ident, _ in nodes:
            authorize(world.api, nwid, ident)
        for lz, ident, i in nodes:
            start_libzt_member(
                lz,
                tmp_path / f"libzt{i}",
                ident,
                world.planet,
                P_LIBZT + i,
                nwid,
                [name for j, name in enumerate(ns.interfaces) if j != i],
            )
        t_join = time.monotonic()
        a_ip, dt_a = wait_member_ipv4(a, nwid, 30)
        b_ip, dt_b = wait_member_ipv4(b, nwid, 30)
        assert a_ip != b_ip
        t_ready = time.monotonic()

        # TCP, A -> B: 2 MB into a sink; both ends digest the stream independently.
        srv = b.call("tcp_server", family=4, port=TCP_SINK, mode="sink", lifetime=40)
        assert srv["port"] == TCP_SINK
        cli = a.call(
            "tcp_client",
            addr=b_ip,
            port=TCP_SINK,
            mode="source",
            bytes=SINK_BYTES,
            seed=SEED,
            lifetime=40,
        )
        sent = a.wait_job(cli["job"], 40)
        got = b.wait_job(srv["job"], 10)
        want = hashlib.sha256(pattern(SEED, SINK_BYTES)).hexdigest()
        assert sent["bytes"] == got["bytes"] == SINK_BYTES, (sent, got)
        assert sent["sha256"] == got["sha256"] == want, (sent, got)
        assert sent["peer_closed"] and sent["unexpected_bytes"] == 0, sent
        assert got["peer"] == [a_ip, sent["local"][1]] and sent["local"][0] == a_ip, (sent, got)
        assert sent["rt"] == got["rt"] == 0

        # TCP echo, B's echoing thread at real-time priority.
        srv = b.call("tcp_server", family=4, port=TCP_ECHO, mode="echo", rt=True, lifetime=30)
        cli = a.call(
            "tcp_client",
            addr=b_ip,
            port=TCP_ECHO,
            mode="echo_check",
            bytes=ECHO_BYTES,
            seed=SEED + 1,
            lifetime=30,
        )
        checked = a.wait_job(cli["job"], 30)
        echoed = b.wait_job(srv["job"], 10)
        assert checked["match"] and checked["bytes"] == ECHO_BYTES, checked
        assert checked["sha256"] == hashlib.sha256(pattern(SEED + 1, ECHO_BYTES)).hexdigest()
        assert checked["peer_closed"], checked
        assert echoed["bytes"] == ECHO_BYTES and echoed["rt"] == 10, echoed

        # UDP request/echo.
        payload = b"ztnode libzt selftest \x00\xff" + bytes(range(64))
        srv = b.call("udp_echo_server", family=4, port=UDP_ECHO, lifetime=30)
        req = a.call("udp_request", addr=b_ip, port=UDP_ECHO, payload=payload.hex(), tries=5)
        answer = a.wait_job(req["job"], 15)
        assert bytes.fromhex(answer["reply"]) == payload, answer
        assert answer["from"] == [b_ip, UDP_ECHO], answer
        served = b.stop_job(srv["job"])
        assert served["ended"] == "stopped" and served["echoed"] >= 1, served
        assert [a_ip, answer["local"][1]] in served["peers"], (served, answer)

        # Bounded and stoppable: an unanswered job times out in job_wait and stops on request;
        # the whole process can go to real-time priority and back.
        idle = b.call("tcp_server", family=4, port=TCP_IDLE, mode="sink", lifetime=30)
        with pytest.raises(LibztError, match="not done within"):
            b.wait_job(idle["job"], 0.2)
        with pytest.raises(LibztError, match="stopped"):
            b.stop_job(idle["job"])
        rt = a.call("rt", priority=5)
        assert rt["threads"] > 1 and rt["priority"] == 5
        assert a.call("rt", priority=0)["priority"] == 0

        # A job still running when the node stops ends with it, and stop answers promptly.
        b.call("tcp_server", family=4, port=TCP_IDLE, mode="sink", lifetime=30)
        t_stop = time.monotonic()
        b.call("stop", 15)
        a.call("stop", 15)
        dt_stop = time.monotonic() - t_stop

    print(
        f"libzt A {a_ip} ready {dt_a:.1f} s after join, B {b_ip} {dt_b:.1f} s; "
        f"join->ready {t_ready - t_join:.1f} s; "
        f"TCP {SINK_BYTES} B: connect {sent['connect_elapsed']:.2f} s "
        f"({sent['connect_tries']} tries), delivered in {sent['elapsed']:.2f} s "
        f"({SINK_BYTES / sent['elapsed'] / 1e6:.1f} MB/s), sink {got['elapsed']:.2f} s; "
        f"echo {ECHO_BYTES} B in {checked['elapsed']:.2f} s; "
        f"UDP reply after {answer['tries']} tries, rtt {answer['rtt'] * 1000:.1f} ms; "
        f"stop {dt_stop:.2f} s; total {time.monotonic() - t0:.1f} s"
    )
