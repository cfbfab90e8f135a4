"""``/metrics``: Prometheus text with ZeroTierOne's metric names, counters that move with traffic.

In memory (virtual time, a lossy overlay): the text parses line by line as ``name{labels} value``,
every family has its HELP and TYPE, ZeroTierOne's names are the ones of node/Metrics.cpp, and
TCP retransmissions are counted per network, connections gone included. Over loopback in this
process (``LocalZtWorld`` and the real local API): the endpoint's auth (the API token or
``metricstoken.secret``, the latter for ``/metrics`` only) and packet and byte counters that
move when members ping each other.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers.data import test_identities
from tests.helpers.ipworld import IpWorld, ip_connect, ip_transfer
from tests.helpers.metrics import ZT_PACKET_TYPES, Samples, check_zerotier_names, parse, value
from ztnode.netstack.tcp import TcpState
from ztnode.testing.fakenet import LinkProfile
from ztnode.testing.local import LocalZtWorld
from ztnode.transport.httpapi import fetch_raw
from ztnode.transport.localapi import render_metrics, serve_local_api

IDS = test_identities()


def test_metrics_text_and_tcp_retransmits_over_a_lossy_overlay(tmp_path: Path) -> None:
    world = IpWorld(tmp_path, profile=LinkProfile(loss=0.08, latency_ms=2), seed=7)
    a, b = world.a, world.b
    nwid = f"{world.nwid:016x}"

    def metrics() -> Samples:
        samples, types = parse(render_metrics(a.node, a, world.now))
        check_zerotier_names(samples, types)
        return samples

    before = metrics()
    assert value(before, "zt_num_networks") == 1
    assert value(before, "ztnode_tcp_retransmitted_bytes_total", network_id=nwid) == 0
    assert value(before, "ztnode_tcp_retransmitted_segments_total", network_id=nwid) == 0
    assert value(before, "ztnode_online") == 1
    assert value(before, "zt_network_multicast_groups_subscribed", network_id=nwid) >= 1
    # Every verb of ZeroTierOne's list has its rx sample, zero or not.
    rx_types = {dict(lb)["packet_type"] for (n, lb) in before if n == "zt_packet"}
    assert rx_types == ZT_PACKET_TYPES
    assert value(before, "zt_packet", packet_type="ok", direction="rx") >= 1
    root = f"{world.w.roots[0].address:010x}"
    assert value(before, "zt_peer_path_count", node_id=root, status="alive") >= 1
    assert value(before, "ztnode_peers", role="planet") == 1
    assert value(before, "ztnode_paths", status="alive") >= 2

    sock = ip_connect(world, a, b, world.v4(b), 7000)
    peer = next(s for s in world.stack(b)._tcp.values() if s.remote == sock.local)
    ip_transfer(world, sock, peer, 400_000, 3)
    live = metrics()
    rexmit_bytes = value(live, "ztnode_tcp_retransmitted_bytes_total", network_id=nwid)
    rexmit_segs = value(live, "ztnode_tcp_retransmitted_segments_total", network_id=nwid)
    assert rexmit_bytes == sock.conn.retransmitted_bytes > 0
    assert rexmit_segs == sock.conn.retransmitted_segments > 0
    assert rexmit_bytes >= rexmit_segs  # data segments carry at least a byte each
    assert world.stack(a).tcp_retransmits() == (rexmit_bytes, rexmit_segs)
    # Counters moved with the transfer: UDP bytes, datagrams, frames, and (8 % loss) nothing
    # else is lost in the accounting.
    assert value(live, "zt_data", protocol="udp", direction="tx") > (
        value(before, "zt_data", protocol="udp", direction="tx") + 400_000
    )
    for d in ("rx", "tx"):
        assert value(live, "ztnode_packets_total", direction=d) > value(
            before, "ztnode_packets_total", direction=d
        )
    b_id = f"{b.node.address:010x}"
    assert value(live, "zt_peer_path_count", node_id=b_id, status="alive") >= 1
    assert value(live, "zt_packet", packet_type="frame", direction="rx") > value(
        before, "zt_packet", packet_type="frame", direction="rx"
    )

    # Once both ends have closed and the connection is gone, its retransmissions stay counted.
    sock.shutdown(world.now)
    peer.shutdown(world.now)
    assert world.run_until(lambda: sock.state in (TcpState.CLOSED, TcpState.TIME_WAIT), 30_000)
    assert world.run_until(lambda: not world.stack(a)._tcp, 300_000)
    after = metrics()
    assert value(after, "ztnode_tcp_retransmitted_bytes_total", network_id=nwid) >= rexmit_bytes
    assert value(after, "ztnode_tcp_retransmitted_segments_total", network_id=nwid) >= rexmit_segs
    # A member that leaves has no series for that network any more.
    a.node.leave(world.nwid)
    world.run_until(lambda: False, 100)
    gone = metrics()
    assert value(gone, "zt_num_networks") == 0
    assert not [k for k in gone if dict(k[1]).get("network_id") == nwid]


async def _fetch(port: int, path: str, token: str | None) -> tuple[int, str, str]:
    status, ctype, body = await fetch_raw("127.0.0.1", port, "GET", path, token, timeout=10)
    return status, ctype, body.decode()


@pytest.mark.e2e
def test_metrics_endpoint_auth_and_counters_over_loopback(tmp_path: Path) -> None:
    async def run() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3]) as world:
            m0, m1 = world.members
            net0, net1 = world.networks
            api, port = await serve_local_api(m1.service)
            try:
                home = m1.service.home.path
                token = (home / "authtoken.secret").read_text().strip()
                metrics_token = (home / "metricstoken.secret").read_text().strip()
                assert metrics_token and metrics_token != token
                assert (home / "metricstoken.secret").stat().st_mode & 0o077 == 0

                # The API token or the metrics token; the metrics token nowhere else.
                status, ctype, text = await _fetch(port, "/metrics", token)
                assert status == 200 and ctype.startswith("text/plain"), (status, ctype)
                before, types = parse(text)
                check_zerotier_names(before, types)
                status, _, text2 = await _fetch(port, "/metrics", metrics_token)
                assert status == 200 and parse(text2)[1] == types
                assert (await _fetch(port, "/metrics?auth=" + metrics_token, None))[0] == 200
                assert (await _fetch(port, "/metrics", None))[0] == 401
                assert (await _fetch(port, "/metrics", "wrong"))[0] == 401
                assert (await _fetch(port, "/status", metrics_token))[0] == 401
                assert (await _fetch(port, "/peer", metrics_token))[0] == 401

                # Traffic: m0 pings m1 over the network; m1's counters move.
                for _ in range(5):
                    await net0.ping(net1.address(4), timeout=5)
                status, _, text = await _fetch(port, "/metrics", metrics_token)
                after, types = parse(text)
                check_zerotier_names(after, types)
                for d in ("rx", "tx"):
                    assert value(after, "zt_data", protocol="udp", direction=d) > value(
                        before, "zt_data", protocol="udp", direction=d
                    )
                    assert (
                        value(after, "ztnode_packets_total", direction=d)
                        >= value(before, "ztnode_packets_total", direction=d) + 5
                    )

                def frames(s: Samples) -> float:
                    return sum(
                        value(s, "zt_packet", packet_type=t, direction="rx")
                        for t in ("frame", "ext_frame")
                    )

                assert frames(after) >= frames(before) + 5
                # m0 is a peer now (its path may still be on the way: relayed at first).
                for st in ("alive", "dead"):
                    assert value(after, "zt_peer_path_count", node_id=m0.address, status=st) >= 0
                nwid = net1.id_hex
                assert value(after, "ztnode_tcp_retransmitted_bytes_total", network_id=nwid) == 0
                assert value(after, "zt_num_networks") == 1
            finally:
                await api.close()

    asyncio.run(run())
