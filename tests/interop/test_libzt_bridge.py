"""Issue 13's interop acceptance: libzt 1.8.4 reaches a host behind a ztnode bridge.

One namespace (layout "bridge"): our root+controller on ``192.168.217.1``, our bridge member (an
in-process :class:`ztnode.sockets.aio.Node`, ``activeBridge`` at the controller) on
``192.168.218.1``, libzt on ``192.168.219.1``. Our member bridges a TAP device; the TAP sits on a
Linux bridge ``lanbr`` on which the namespace's kernel owns ``10.147.26.250``, a host of the
"LAN" that runs a UDP and a TCP echo. libzt sends a UDP request, then 200 KB over TCP, to
that host: its core must put the ARP
request on the network's active bridges (as ZeroTierOne's Multicaster does), our bridge must
carry it to the LAN, and the kernel's answers (ARP reply, echo) come back through our bridge as
frames from a foreign MAC that libzt accepts because the controller marks our member a bridge.
Then the LAN host pings libzt (ICMP through the bridge; libzt 1.8.4 has no raw sockets to
ping from: zts_bsd_socket refuses SOCK_RAW).
IPv4 only (LIBZT_PEER.md).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path
from typing import Any

from tests.helpers.data import test_identities
from tests.interop.conftest import need_root
from tests.interop.netns import NetNamespace
from tests.interop.peer import LibztPeer
from tests.interop.world import controller_world, join_beside_libzt, our_member
from ztnode.sockets.aio import Network, Node
from ztnode.sockets.bridgeports import TapPort

IDS = test_identities()
ROOT_ID, OUR_ID, LIBZT_ID = IDS[0], IDS[1], IDS[2]
SLOT_ROOT, SLOT_OURS, SLOT_LIBZT = 0, 1, 2
P_OURS, P_LIBZT = 29970, 29971
SUBNET = "10.147.26"
LAN_IP = f"{SUBNET}.250"
ECHO_PORT = 7007
TCP_PORT = 7008
TCP_BYTES = 200_000
NETWORK: dict[str, Any] = {
    "name": "libzt-bridge-interop",
    "private": True,
    "v4AssignMode": {"zt": True},
    "v6AssignMode": {"rfc4193": False, "6plane": False, "zt": False},
    "ipAssignmentPools": [{"ipRangeStart": f"{SUBNET}.1", "ipRangeEnd": f"{SUBNET}.100"}],
    "routes": [{"target": f"{SUBNET}.0/24", "via": None}],
}


async def kernel_tcp_echo(listener: socket.socket) -> None:
    """The LAN host's TCP echo (the namespace's kernel): one connection at a time."""
    loop = asyncio.get_running_loop()
    while True:
        conn, _ = await loop.sock_accept(listener)
        conn.setblocking(False)
        try:
            while data := await loop.sock_recv(conn, 65536):
                await loop.sock_sendall(conn, data)
        finally:
            conn.close()


def kernel_ping(ns: NetNamespace, dst: str, tries: int = 5) -> float | None:
    """One ICMP echo from the namespace's kernel (a raw socket bound to the LAN host's
    address): the round trip in seconds, or None after ``tries`` unanswered requests."""
    raw = ns.in_namespace(
        lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    )
    try:
        raw.bind((LAN_IP, 0))
        raw.settimeout(1.0)
        for seq in range(tries):
            body = struct.pack("!BBHHH", 8, 0, 0, 0x7A7A, seq) + b"lan ping"
            total = sum(struct.unpack(f"!{len(body) // 2}H", body))
            while total >> 16:
                total = (total & 0xFFFF) + (total >> 16)
            body = body[:2] + struct.pack("!H", ~total & 0xFFFF) + body[4:]
            t0 = time.monotonic()
            raw.sendto(body, (dst, 0))
            deadline = t0 + 1.0
            while time.monotonic() < deadline:
                try:
                    packet, addr = raw.recvfrom(2048)
                except TimeoutError:
                    break
                ihl = (packet[0] & 0x0F) * 4
                icmp = packet[ihl:]
                if addr[0] == dst and icmp[0] == 0 and icmp[4:8] == body[4:8]:
                    return time.monotonic() - t0
        return None
    finally:
        raw.close()


async def kernel_echo(sock: socket.socket, got: list[bytes]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        data, addr = await loop.sock_recvfrom(sock, 2048)
        got.append(data)
        await loop.sock_sendto(sock, data, addr)


def test_libzt_reaches_a_host_behind_our_bridge(libzt_installed: None, tmp_path: Path) -> None:
    need_root()
    with (
        NetNamespace(layout="bridge", count=3) as ns,
        controller_world(ns, tmp_path, ROOT_ID, ns.addresses[SLOT_ROOT]) as world,
    ):
        fd, tap = ns.in_namespace(lambda: TapPort.create("ztlan%d"))
        ns.ip("link", "add", "lanbr", "type", "bridge")
        # Globally administered MACs: random ones read as a member's one time in 64.
        ns.ip("link", "set", "dev", tap, "address", "00:16:3e:00:01:01")
        ns.ip("link", "set", "dev", "lanbr", "address", "00:16:3e:00:01:02")
        ns.ip("link", "set", tap, "master", "lanbr")
        ns.ip("link", "set", tap, "up")
        ns.ip("link", "set", "lanbr", "up")
        ns.ip("addr", "add", f"{LAN_IP}/24", "dev", "lanbr")
        echo_sock = ns.socket(socket.AF_INET, socket.SOCK_DGRAM, bind=(LAN_IP, ECHO_PORT))
        echo_sock.setblocking(False)
        listener = ns.socket(socket.AF_INET, socket.SOCK_STREAM, bind=(LAN_IP, TCP_PORT))
        listener.listen(4)
        listener.setblocking(False)
        nwid: str = world.api.call("POST", "/controller/network", NETWORK)["id"]
        for ident, body in ((OUR_ID, {"activeBridge": True}), (LIBZT_ID, {})):
            member = f"/controller/network/{nwid}/member/{ident.address:010x}"
            world.api.call("POST", member, {"authorized": True, **body})
        try:
            with LibztPeer(netns=ns.name) as lz:
                asyncio.run(scenario(ns, world, nwid, tmp_path, lz, fd, tap, echo_sock, listener))
        finally:
            echo_sock.close()
            listener.close()


async def scenario(
    ns: NetNamespace,
    world: Any,
    nwid: str,
    tmp_path: Path,
    lz: LibztPeer,
    fd: int,
    tap: str,
    echo_sock: socket.socket,
    listener: socket.socket,
) -> None:
    got: list[bytes] = []
    echo = asyncio.ensure_future(kernel_echo(echo_sock, got))
    tcp_echo = asyncio.ensure_future(kernel_tcp_echo(listener))
    try:
        async with our_member(
            ns, world.planet, tmp_path / "ours", OUR_ID, SLOT_OURS, P_OURS
        ) as node:
            net, lz_ip = await join_beside_libzt(
                ns, node, world.planet, nwid, lz, tmp_path / "libzt", LIBZT_ID, SLOT_LIBZT, P_LIBZT
            )
            await bridged_checks(ns, node, net, lz, lz_ip, fd, tap, got)
    finally:
        echo.cancel()
        tcp_echo.cancel()


async def bridged_checks(
    ns: NetNamespace,
    node: Node,
    net: Network,
    lz: LibztPeer,
    lz_ip: str,
    fd: int,
    tap: str,
    got: list[bytes],
) -> None:
    """libzt's UDP and then TCP reach the LAN host behind our bridge, and come back."""
    bridge = await net.bridge(TapPort(tap, fd=fd))
    req = await asyncio.to_thread(
        lz.call,
        "udp_request",
        30,
        addr=LAN_IP,
        port=ECHO_PORT,
        payload=b"libzt to the lan".hex(),
        tries=15,
        interval=1.0,
    )
    try:
        await asyncio.to_thread(lz.wait_job, req["job"], 30)
    except Exception as e:
        raise AssertionError(
            f"libzt got no echo from the LAN host: {e}; the host got {got}; "
            f"bridge {bridge.counters}; our drops {dict(node.service.node.counters.drops)}"  # type: ignore[union-attr]
        ) from None
    assert b"libzt to the lan" in got
    # TCP too: 200 KB echoed by the LAN host through the bridge, byte for byte.
    job = await asyncio.to_thread(
        lz.call,
        "tcp_client",
        30,
        addr=LAN_IP,
        port=TCP_PORT,
        mode="echo_check",
        bytes=TCP_BYTES,
        seed=5,
    )
    result = await asyncio.to_thread(lz.wait_job, job["job"], 60)
    assert result["bytes"] == TCP_BYTES and result["match"], result
    # ICMP: the LAN host pings libzt, echo request and reply crossing the bridge.
    # (libzt 1.8.4 cannot ping: zts_bsd_socket refuses SOCK_RAW with ENOBUFS.)
    rtt = await asyncio.to_thread(kernel_ping, ns, lz_ip)
    assert rtt is not None, f"the LAN host got no echo reply from libzt at {lz_ip}"
    assert bridge.counters["refused"] == 0
    await bridge.close()
