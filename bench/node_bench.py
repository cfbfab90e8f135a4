"""Packets per second through the node's receive path, and the transport's cost per datagram.

Node: two in-memory nodes with a direct path and AES-GMAC-SIV (protocol 12) between them; one is
fed pre-armored ECHO packets from the other through ``receive_datagram`` (dearmor, dispatch,
the OK(ECHO) answer armored and queued) and its output is drained, exactly as the asyncio adapter
does per datagram.

Transport: a burst of UDP datagrams already waiting in the kernel is drained three ways on one
event loop: the raw ``recv_into`` loop (the floor), ztnode's ``UdpEndpoint`` (add_reader +
recvfrom_into into a reused buffer + handler call; and with C bursts, recvmmsg), and asyncio's
stock ``DatagramProtocol``.
"""

from __future__ import annotations

import asyncio
import random
import socket
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from tests.helpers.data import test_identities
from ztnode.core.trusted import PhysicalPathConfig
from ztnode.testing.world import LocalWorld
from ztnode.transport import burst
from ztnode.transport.udp import UdpEndpoint
from ztnode.wire import packet as pk
from ztnode.wire.constants import Cipher, Verb


def echo_rows(count: int) -> list[dict[str, Any]]:
    ids = test_identities()
    w = LocalWorld.build(ids, roots=1, leaves=2)
    if not w.run_until(w.all_online, 15_000):
        raise RuntimeError("bench world did not come online")
    a, b = w.leaves
    a.send_echo(b.address, b"warm", w.net.now)
    if not w.run_until(lambda: w.direct(a, b) and w.direct(b, a), 60_000):
        raise RuntimeError("no direct path in the bench world")
    peer = a.peer(b.address)
    assert peer is not None and peer.supports_aes()
    local, remote = w.addresses[b.address], w.addresses[a.address]
    rows = []
    now = w.net.now
    for payload_len in (0, 1372):
        packets = []
        for i in range(count):
            buf = pk.new_packet(
                i.to_bytes(8, "big"), b.address, a.address, Verb.ECHO, bytes(payload_len)
            )
            pk.armor(buf, peer.key, Cipher.AES_GMAC_SIV)
            packets.append(bytes(buf))
        receive, drain = b.receive_datagram, b.datagrams_to_send
        samples = []
        for _ in range(5):
            t0 = time.perf_counter_ns()
            for p in packets:
                now += 200  # past the per-path ECHO answer gate, so every packet is answered
                receive(p, local, remote, now)
                drain(now)
            samples.append((time.perf_counter_ns() - t0) / count)
        per = statistics.median(samples)
        if b.counters.drops.get("rate_limited"):
            raise RuntimeError("ECHO answers were rate limited: the bench would flatter us")
        rows.append(
            {
                "what": "ECHO from a known peer: dearmor + dispatch + OK(ECHO) armored",
                "packet_bytes": 28 + payload_len,
                "us_per_packet": round(per / 1000, 2),
                "packets_per_s": int(1e9 / per),
            }
        )
    return rows


_NO_PHYSICAL_PATHS = PhysicalPathConfig()


class _CountingSink:
    """A burst sink that only counts what comes back and what C refused (the bench's
    datagrams are not ZeroTier packets for this address: C drops them as not for us)."""

    def __init__(self, count: Callable[[int], None]) -> None:
        self._count = count

    def on_datagram(self, data: memoryview, remote: tuple[str, int]) -> None:
        self._count(1)

    def on_whole(self, packet: bytearray, remote: tuple[str, int], pieces: int, wire: int) -> None:
        self._count(pieces)

    def on_plain(self, *args: Any) -> bool:
        raise AssertionError("no key is cached")

    def key_for(self, address: int) -> None:
        return None

    def coalescing_networks(self) -> list[int]:
        return []

    def relaying(self) -> bool:
        return False

    def physical_paths(self) -> PhysicalPathConfig:
        return _NO_PHYSICAL_PATHS

    def now(self) -> int:
        return int(time.monotonic() * 1000)

    def on_dropped(self, reasons: Mapping[str, int], datagrams: int, wire_bytes: int) -> None:
        self._count(datagrams)


async def _drain_raw(sock: socket.socket, n: int) -> None:
    buf = bytearray(65536)
    got = 0
    while got < n:
        try:
            sock.recv_into(buf)
            got += 1
        except BlockingIOError:
            await asyncio.sleep(0)


async def _transport_once(kind: str, n: int, size: int) -> float:
    loop = asyncio.get_running_loop()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    addr = rx.getsockname()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = bytes(size)
    for _ in range(n):
        tx.sendto(payload, addr)
    tx.close()
    done = loop.create_future()
    got = 0
    t0 = time.perf_counter_ns()
    if kind == "raw recv_into":
        await asyncio.wait_for(_drain_raw(rx, n), 10)
        rx.close()
    elif kind.startswith("ztnode UdpEndpoint"):

        def handler(data: memoryview, remote: tuple[str, int]) -> None:
            nonlocal got
            got += 1
            if got == n:
                done.set_result(None)

        def count(k: int) -> None:
            nonlocal got
            got += k
            if got >= n and not done.done():
                done.set_result(None)

        ep = UdpEndpoint(rx, handler, loop)
        # With C bursts none of these datagrams (zeros: not a packet for this address) reaches
        # Python: the guard refuses them as not for us, and the sink only counts the refusals.
        bursts = kind == "ztnode UdpEndpoint, C bursts"
        if bursts and not ep.enable_bursts(_CountingSink(count), 0x0102030405):
            raise RuntimeError("C bursts unavailable")
        await asyncio.wait_for(done, 10)
        ep.close()
    else:

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, remote: tuple[str, int]) -> None:
                nonlocal got
                got += 1
                if got == n:
                    done.set_result(None)

        transport, _ = await loop.create_datagram_endpoint(Proto, sock=rx)
        await asyncio.wait_for(done, 10)
        transport.close()
    return (time.perf_counter_ns() - t0) / n / 1000


def transport_rows(count: int = 1000) -> list[dict[str, Any]]:
    """``count`` datagrams per burst must fit the socket buffer (8 MiB asked, 4 MiB rmem_max
    doubled by the kernel): 1000 x 1400 B is about 2.3 MB of kernel memory."""
    rows = []
    kinds: tuple[str, ...] = ("raw recv_into", "ztnode UdpEndpoint", "asyncio DatagramProtocol")
    if burst.AVAILABLE:
        kinds = (*kinds[:2], "ztnode UdpEndpoint, C bursts", kinds[2])
    for size in (64, 1400):
        results: dict[str, float] = {}
        for kind in kinds:
            results[kind] = statistics.median(
                asyncio.run(_transport_once(kind, count, size)) for _ in range(5)
            )
        base = results["raw recv_into"]
        for kind in kinds:
            rows.append(
                {
                    "what": f"receive a queued datagram: {kind}",
                    "bytes": size,
                    "us_per_datagram": round(results[kind], 3),
                    "ratio_to_raw": round(results[kind] / base, 2),
                }
            )
    return rows


SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux's value; Python may lack the name


def guard_rows(count: int = 20000) -> list[dict[str, Any]]:
    """What a hostile datagram costs the receiver: the flood test's mix (garbage, orphan
    fragments, HELLOs from made-up identities, forgeries in a known peer's name) queued in the
    kernel, then drained by the C guard (``BurstReader``), by the node's Python path
    (``receive_datagram``, what runs without the accelerator) and by a bare ``recv_into`` loop
    (the floor)."""
    from tests.interop.flooder import hostile  # the flood test's own generator

    ids = test_identities()
    me, peer = ids[1].address, ids[2].address
    mix = hostile(random.Random(5), me, peer)
    pool = [d for group in zip(*mix.values(), strict=True) for d in group]
    datagrams = [pool[i % len(pool)] for i in range(count)]

    def queued() -> tuple[socket.socket, socket.socket]:
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:  # past net.core.rmem_max when we may (root), so the whole mix fits
            rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 * 1024 * 1024)
        except OSError:
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024 * 1024)
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.connect(rx.getsockname())
        return rx, tx

    def c_guard(rx: socket.socket) -> int:
        got = 0

        def count(k: int) -> None:
            nonlocal got
            got += k

        reader = burst.BurstReader(rx, me)
        sink = _CountingSink(count)
        while reader.read(sink):
            pass
        reader.close()
        return got + int(reader.stats["reassembly_held"])

    w = LocalWorld.build(ids, roots=1, leaves=2)

    def python_path(rx: socket.socket) -> int:
        node = w.leaves[0]
        buf = bytearray(65536)
        got = 0
        local = ("127.0.0.1", 9993)
        while True:
            try:
                n, remote = rx.recvfrom_into(buf)
            except BlockingIOError:
                return got
            node.receive_datagram(memoryview(buf)[:n], local, remote, w.net.now)
            node.datagrams_to_send(w.net.now)
            got += 1

    def floor(rx: socket.socket) -> int:
        buf = bytearray(65536)
        got = 0
        while True:
            try:
                rx.recv_into(buf)
            except BlockingIOError:
                return got
            got += 1

    ways: list[tuple[str, Callable[[socket.socket], int]]] = [("raw recv_into", floor)]
    if burst.AVAILABLE:
        ways.append(("C guard (BurstReader)", c_guard))
    ways.append(("Python path (receive_datagram)", python_path))
    results: dict[str, float] = {}
    for name, way in ways:
        samples = []
        for _ in range(3):
            rx, tx = queued()
            for d in datagrams:
                tx.send(d)
            t0 = time.perf_counter_ns()
            got = way(rx)
            samples.append((time.perf_counter_ns() - t0) / max(1, got))
            rx.close()
            tx.close()
            if got < count * 0.99:
                raise RuntimeError(f"{name}: {got} of {count} datagrams (socket buffer too small)")
        results[name] = statistics.median(samples)
    return [
        {
            "what": f"a hostile datagram: {name}",
            "us_per_datagram": round(per / 1000, 3),
            "datagrams_per_s": int(1e9 / per),
            "ratio_to_raw": round(per / results["raw recv_into"], 2),
        }
        for name, per in results.items()
    ]
