"""The asyncio API end to end over real UDP on loopback: a root/controller and two members in
one process (:class:`~ztnode.testing.local.LocalZtWorld`), stock StreamReader/StreamWriter,
servers, datagram endpoints and ping, on IPv4 and IPv6 (rfc4193)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import random
import threading
from pathlib import Path

import pytest

from tests.helpers.data import test_identities
from ztnode import accel
from ztnode.crypto import idhash
from ztnode.sockets.aio import Network
from ztnode.testing.local import LocalZtWorld
from ztnode.transport import burst, service

pytestmark = pytest.mark.e2e  # starts processes or uses real sockets (loopback only)

IDS = test_identities()


def run(coro_fn, tmp_path: Path, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3]) as w:
            await asyncio.wait_for(coro_fn(w, *w.networks), timeout)

    asyncio.run(main())


def sockaddr(host: str, port: int) -> tuple[str, int] | tuple[str, int, int, int]:
    """What the stdlib's asyncio gives: IPv6 addresses as 4-tuples."""
    return (host, port, 0, 0) if ":" in host else (host, port)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize("family", [4, 6])
def test_ping_both_ways(tmp_path: Path, family: int) -> None:
    async def body(w: LocalZtWorld, a: Network, b: Network) -> None:
        rtt = await a.ping(b.address(family))
        assert 0 < rtt < 2
        assert await b.ping(a.address(family)) > 0
        assert await a.ping(a.address(family)) > 0  # our own address answers too

    run(body, tmp_path)


@pytest.mark.parametrize("fast", [True, False], ids=["c-paths", "python-paths"])
@pytest.mark.parametrize("family", [4, 6])
def test_stream_echo_and_bulk(
    tmp_path: Path, family: int, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both with the C receive bursts and segmentation offload (where built) and without them
    (the per-datagram Python paths, which are what runs where the accelerator is missing)."""
    if not fast:
        monkeypatch.setenv(accel.PYTHON_PATHS_ENV, "1")
    elif not burst.AVAILABLE:
        if os.environ.get("ZTNODE_REQUIRE_ACCEL", "") not in ("", "0"):
            pytest.fail(f"ZTNODE_REQUIRE_ACCEL=1 but the C paths are unavailable: {burst.REASON}")
        pytest.skip(f"no C paths here: {burst.REASON}")

    async def body(w: LocalZtWorld, a: Network, b: Network) -> None:
        server = await b.start_server(_echo, port=7000, family=family)
        reader, writer = await a.open_connection(b.address(family), 7000)
        assert writer.get_extra_info("peername") == sockaddr(b.address(family), 7000)
        writer.write(b"hello\n")
        assert await reader.readline() == b"hello\n"
        data = random.Random(family).randbytes(3_000_000)
        got = bytearray()

        async def pump() -> None:
            writer.write(data)
            await writer.drain()
            writer.write_eof()

        async def drain() -> None:
            while chunk := await reader.read(1 << 20):
                got.extend(chunk)

        await asyncio.gather(pump(), drain())
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        receiving = [ep.burst_stats for ep in b.node.service.endpoints.values()]
        offload = [st.segmentation_offload for st in a.node.service.host.stacks.values()]
        if fast:
            assert any(s and s["coalesced"] > 0 for s in receiving)
            assert all(offload)
        else:
            assert receiving == [None] * len(receiving) and not any(offload)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(body, tmp_path)


def test_connection_refused_and_own_address(tmp_path: Path) -> None:
    async def body(w: LocalZtWorld, a: Network, b: Network) -> None:
        with pytest.raises(ConnectionRefusedError):
            await a.open_connection(b.address(4), 4444)
        server = await a.start_server(_echo, port=7001)
        reader, writer = await a.open_connection(a.address(4), 7001)
        writer.write(b"me\n")
        assert await reader.readline() == b"me\n"
        writer.close()
        server.close()
        with pytest.raises(OSError):
            await a.open_connection("not-an-ip", 80)

    run(body, tmp_path)


def test_datagram_endpoints(tmp_path: Path) -> None:
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.DatagramTransport)
            self.t = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.t.sendto(data.upper(), addr)

    class Client(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.got: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
            self.errors: list[Exception] = []

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.got.put_nowait((data, addr))

        def error_received(self, exc: Exception) -> None:
            self.errors.append(exc)

    async def body(w: LocalZtWorld, a: Network, b: Network) -> None:
        for family in (4, 6):
            st, _ = await b.create_datagram_endpoint(Echo, local_addr=(b.address(family), 5300))
            ct, cp = await a.create_datagram_endpoint(Client, remote_addr=(b.address(family), 5300))
            assert isinstance(cp, Client)
            ct.sendto(b"ping")
            data, addr = await asyncio.wait_for(cp.got.get(), 5)
            assert data == b"PING" and addr == sockaddr(b.address(family), 5300)
            st.close()
            ct.close()

    run(body, tmp_path)


def test_multicast_group_datagrams_reach_joined_members(tmp_path: Path) -> None:
    """mDNS-style traffic: a datagram to 224.0.0.251 reaches the member that joined the group
    (ZeroTier's MULTICAST_LIKE/GATHER carry the membership) and is surfaced to its endpoint."""

    class Collect(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.got: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            # The nodes' own mDNS responders talk on 5353 too (probes, announcements): only
            # the test's datagram counts.
            if data == b"mdns?":
                self.got.put_nowait((data, addr))

    async def body(w: LocalZtWorld, a: Network, b: Network) -> None:
        b.join_group("224.0.0.251")
        # the node's own mDNS responder holds 5353 too: share it, as on any mDNS host
        _, proto = await b.create_datagram_endpoint(
            Collect, local_addr=("0.0.0.0", 5353), reuse_port=True
        )
        assert isinstance(proto, Collect)
        tx, _ = await a.create_datagram_endpoint(asyncio.DatagramProtocol)
        for _ in range(50):  # the group's membership spreads by LIKE; resend until it has
            tx.sendto(b"mdns?", ("224.0.0.251", 5353))
            try:
                data, addr = await asyncio.wait_for(proto.got.get(), 0.2)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("no multicast datagram arrived")
        assert data == b"mdns?" and addr[0] == a.address(4)

    run(body, tmp_path)


def test_event_stream_and_callbacks(tmp_path: Path) -> None:
    from ztnode.core import events as ev

    async def body(w: LocalZtWorld, a: Network, b: Network) -> None:
        node = w.members[0]
        seen: list[ev.Event] = []
        off = node.on(ev.AddressAdded, seen.append)
        async with a.events() as stream, node.events(ev.NetworkLeft) as left_only:
            assert await node.leave(w.network_id)
            got: list[ev.Event] = []
            async for e in stream:
                got.append(e)
                if isinstance(e, ev.NetworkLeft):
                    break
            assert sum(isinstance(e, ev.AddressRemoved) for e in got) == 2
            assert isinstance(await anext(left_only), ev.NetworkLeft)
            net = await node.join(w.network_id)
            assert {a.address for a in seen if isinstance(a, ev.AddressAdded)} == {
                str(x) for x in net.addresses
            }
            statuses = []
            async for e in stream:
                if isinstance(e, ev.NetworkStatusChanged):
                    statuses.append(e.status)
                if "OK" in statuses:
                    break
            assert statuses[-1] == "OK" and stream.dropped == 0
        off()
        n = len(seen)
        await node.leave(w.network_id)
        await node.join(w.network_id)
        assert len(seen) == n  # unregistered

    run(body, tmp_path)


def test_public_api_names() -> None:
    """What the README and docs/api.md tell users to import is importable from ``ztnode``."""
    import ztnode

    for name in ztnode.__all__:
        assert getattr(ztnode, name) is not None
    assert ztnode.Node is __import__("ztnode.sockets.aio", fromlist=["Node"]).Node
    assert {"Node", "Network", "BlockingNode", "LocalZtWorld", "Identity"} <= set(ztnode.__all__)
    assert ztnode.events.NetworkStatusChanged.__name__ == "NetworkStatusChanged"


def test_restarted_node_keeps_its_port_and_is_reachable_at_once(tmp_path: Path) -> None:
    """A node restarted on its home reuses its UDP port, so peers' existing path to it stays
    right and traffic flows again without waiting for that path to time out."""
    from ztnode.sockets.aio import Node

    async def body(w: LocalZtWorld, a: Network, b: Network) -> None:
        old = w.members[0]
        home, port = old.service.config.home, old.port
        await old.stop()
        again = Node(home, planet=w.planet, allow_loopback=True, bind=("127.0.0.1",))
        w.members[0] = again  # so the world stops it
        await again.start()
        assert again.port == port
        net = await again.join(w.network_id, timeout=20)
        assert await net.ping(b.address(4), timeout=3) > 0
        assert await b.ping(net.address(4), timeout=3) > 0

    run(body, tmp_path)


def test_dual_stack_server(tmp_path: Path) -> None:
    async def body(w: LocalZtWorld, a: Network, b: Network) -> None:
        server = await b.start_server(_echo, port=7100, family=0)
        assert sorted(server.addresses()) == [("0.0.0.0", 7100), ("::", 7100)]
        for family in (4, 6):
            reader, writer = await a.open_connection(b.address(family), 7100)
            writer.write(b"both\n")
            assert await reader.readline() == b"both\n"
            writer.close()
        server.close()
        await server.wait_closed()
        assert not server.is_serving()
        with pytest.raises(ConnectionRefusedError):
            await a.open_connection(b.address(6), 7100)

    run(body, tmp_path)


def test_world_grows_by_a_member(tmp_path: Path) -> None:
    async def body(w: LocalZtWorld, a: Network, b: Network) -> None:
        node, net = await w.add_member(IDS[3])
        assert net is not None and node.address == f"{IDS[3].address:010x}"
        assert await net.ping(a.address(4), timeout=3) > 0
        outsider, none = await w.add_member(IDS[4], authorize=False)
        assert none is None and outsider.address == f"{IDS[4].address:010x}"

    run(body, tmp_path)


def test_server_sockets_and_families_as_asyncio_gives_them(tmp_path: Path) -> None:
    import socket

    async def body(w: LocalZtWorld, a: Network, b: Network) -> None:
        both = await b.start_server(_echo, port=0, family=socket.AF_UNSPEC)
        assert [s.family for s in both.sockets] == [socket.AF_INET, socket.AF_INET6]
        port = both.sockets[0].getsockname()[1]
        assert both.sockets[1].getsockname() == ("::", port, 0, 0)
        v6 = await b.start_server(_echo, port=0, family=socket.AF_INET6)
        (only,) = v6.sockets
        assert only.family == socket.AF_INET6 and len(only.getsockname()) == 4
        r, wr = await a.open_connection(b.address(6), only.getsockname()[1])
        assert wr.get_extra_info("sockname") == sockaddr(
            a.address(6), wr.get_extra_info("sockname")[1]
        )
        wr.write(b"six")
        assert await r.readexactly(3) == b"six"
        wr.close()
        for server in (both, v6):
            server.close()
            await server.wait_closed()

    run(body, tmp_path)


@pytest.mark.skipif(not idhash.mixes_in_c(), reason="the identity hash runs in Python here")
def test_new_identities_are_validated_on_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the identity hash in C (no interpreter lock held) a node validates the identities it
    meets on a worker thread of its own process instead of a forked worker process."""
    ran_on: list[str] = []
    real = service._validate_in_worker

    def recording(identity_text: str) -> bool:
        ran_on.append(threading.current_thread().name)
        return real(identity_text)

    monkeypatch.setattr(service, "_validate_in_worker", recording)

    async def body(w: LocalZtWorld, a: Network, b: Network) -> None:
        assert await a.ping(b.address(4)) > 0  # the members meet: each validates the other
        assert all(
            isinstance(m.service._pool, concurrent.futures.ThreadPoolExecutor) for m in w.members
        )
        assert ran_on and all(name.startswith("ztnode-identity") for name in ran_on), ran_on

    run(body, tmp_path)
