"""The TCP fallback tunnel: settings, the reference's decisions under a virtual clock, and the
client against our relay server over loopback TCP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.errors import DecodeError
from ztnode.transport import tcprelay
from ztnode.transport.tcprelay import (
    DEFAULT_RELAY,
    FALLBACK_AFTER,
    FallbackDecider,
    TcpRelayClient,
    TcpRelaySettings,
)
from ztnode.transport.tcprelayserver import RelayLimits, TcpRelayServer, listen_from_local_conf
from ztnode.wire.inetaddr import IpScope
from ztnode.wire.tcptunnel import encode_datagram, encode_hello

ROOT = ("1.2.3.4", 9993)  # GLOBAL scope: only the decider sees it, nothing is sent to it
PKT = 100
T0 = 1_000_000


# settings ------------------------------------------------------------------------------------


def test_settings_defaults_and_keys() -> None:
    s = TcpRelaySettings.from_local_conf({})
    assert s == TcpRelaySettings(allow=True, force=False, relay=DEFAULT_RELAY)
    assert s.relay == ("204.80.128.1", 443)
    s = TcpRelaySettings.from_local_conf(
        {"allowTcpFallbackRelay": True, "forceTcpRelay": True, "tcpFallbackRelay": "10.0.0.1/8443"}
    )
    assert (s.allow, s.force, s.relay) == (True, True, ("10.0.0.1", 8443))
    assert not TcpRelaySettings.from_local_conf({"allowTcpFallbackRelay": False}).allow
    assert TcpRelaySettings.from_local_conf({"tcpFallbackRelay": "2001:db8::1/443"}).relay == (
        "2001:db8::1",
        443,
    )


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        # ("yes" and 1 are true, as ZeroTierOne's jsonBool reads them)
        ({"allowTcpFallbackRelay": "sometimes"}, "allowTcpFallbackRelay"),
        ({"forceTcpRelay": 2}, "forceTcpRelay"),
        ({"tcpFallbackRelay": 443}, "tcpFallbackRelay"),
        ({"tcpFallbackRelay": "1.2.3.4"}, "tcpFallbackRelay"),
        ({"tcpFallbackRelay": "1.2.3.4:443"}, "tcpFallbackRelay"),
        ({"tcpFallbackRelay": "host/443"}, "tcpFallbackRelay"),
        ({"tcpFallbackRelay": "1.2.3.4/0"}, "tcpFallbackRelay"),
        ({"tcpFallbackRelay": "1.2.3.4/70000"}, "tcpFallbackRelay"),
        ({"forceTcpRelay": True, "allowTcpFallbackRelay": False}, "forceTcpRelay"),
    ],
)
def test_bad_settings_name_the_key(settings: dict[str, Any], key: str) -> None:
    with pytest.raises(DecodeError, match=key):
        TcpRelaySettings.from_local_conf(settings)


def test_listen_key() -> None:
    assert listen_from_local_conf({}) is None
    assert listen_from_local_conf({"tcpRelayListen": "0.0.0.0/443"}) == ("0.0.0.0", 443)
    with pytest.raises(DecodeError, match="tcpRelayListen"):
        listen_from_local_conf({"tcpRelayListen": ["0.0.0.0", 443]})


# decisions under a virtual clock -------------------------------------------------------------


def _ping_until(d: FallbackDecider, start: int, end: int, step: int = 5_000) -> list[int]:
    """Send to the root every ``step`` ms (as the node pings); the times a connect is asked."""
    asks = []
    for t in range(start, end, step):
        if d.on_send(ROOT, PKT, t, open_=False, busy=False).connect:
            asks.append(t)
    return asks


def test_opens_only_after_60s_without_udp_from_a_global_address() -> None:
    d = FallbackDecider(TcpRelaySettings(), T0)
    # Up for under 60 s (and nothing heard yet): no tunnel, UDP as usual.
    first = d.on_send(ROOT, PKT, T0 + 1_000, open_=False, busy=False)
    assert (first.tunnel, first.connect, first.udp) == (False, False, True)
    assert _ping_until(d, T0 + 5_000, T0 + FALLBACK_AFTER + 1) == []
    # Past 60 s of silence the next ping (5 s after the previous one) asks for a connection.
    asks = _ping_until(d, T0 + FALLBACK_AFTER + 5_000, T0 + FALLBACK_AFTER + 6_000)
    assert asks == [T0 + FALLBACK_AFTER + 5_000]
    # Open: datagrams go through it, and by UDP too (fail forward).
    on = d.on_send(ROOT, PKT, T0 + 70_000, open_=True, busy=False)
    assert (on.tunnel, on.connect, on.udp) == (True, False, True)


def test_udp_heard_keeps_it_closed_and_closes_an_open_tunnel() -> None:
    d = FallbackDecider(TcpRelaySettings(), T0)
    for t in range(T0, T0 + 200_000, 5_000):
        d.on_udp_received(ROOT, PKT, t)
        assert not d.on_send(ROOT, PKT, t + 1, open_=False, busy=False).connect
    # Silence for 61 s: engaged; then one UDP datagram from a global address closes it.
    t = T0 + 200_000 + FALLBACK_AFTER + 1_000
    assert d.engaged(t)
    assert d.on_udp_received(ROOT, PKT, t) is True
    assert not d.engaged(t + 1)
    assert d.should_close(t + 29_999) and not d.should_close(t + 30_000)


def test_what_does_not_count() -> None:
    d = FallbackDecider(TcpRelaySettings(), T0)
    t = T0 + 2 * FALLBACK_AFTER
    # Short, private-scope and loopback datagrams do not count as heard...
    assert not d.on_udp_received(ROOT, 15, t)
    assert not d.on_udp_received(("10.1.2.3", 9993), PKT, t)
    assert not d.on_udp_received(("127.0.0.1", 9993), PKT, t)
    assert d.engaged(t)
    # ...and never use the tunnel, nor do IPv6 destinations or short datagrams.
    for remote, n in [
        (("10.1.2.3", 9993), PKT),
        (("2001:db8::1", 9993), PKT),
        (ROOT, 15),
    ]:
        dec = d.on_send(remote, n, t, open_=True, busy=False)
        assert (dec.tunnel, dec.connect, dec.udp) == (False, False, True)


def test_connect_pacing_and_one_attempt_in_flight() -> None:
    d = FallbackDecider(TcpRelaySettings(), T0)
    t = T0 + 2 * FALLBACK_AFTER
    d.on_send(ROOT, PKT, t, open_=False, busy=False)
    # A send loop faster than 2.5 s never starts connections (the reference's pacing).
    assert not any(
        d.on_send(ROOT, PKT, t + i * 1_000, open_=False, busy=False).connect for i in range(1, 30)
    )
    t += 35_000  # 6 s after the last send
    assert d.on_send(ROOT, PKT, t, open_=False, busy=False).connect
    assert not d.on_send(ROOT, PKT, t + 3_000, open_=False, busy=True).connect
    # After more than 60 s without any global send, the first one does not connect either.
    assert not d.on_send(ROOT, PKT, t + 3_000 + 61_000, open_=False, busy=False).connect
    assert d.on_send(ROOT, PKT, t + 3_000 + 61_000 + 5_000, open_=False, busy=False).connect


def test_force_and_disallowed_and_bonding() -> None:
    force = FallbackDecider(TcpRelaySettings(force=True), T0)
    first = force.on_send(ROOT, PKT, T0, open_=False, busy=False)
    assert (first.tunnel, first.connect, first.udp) == (False, True, False)
    assert force.on_send(ROOT, PKT, T0 + 1, open_=True, busy=False).tunnel
    assert force.on_udp_received(ROOT, PKT, T0 + 2) is False  # never closed by UDP
    assert force.engaged(T0 + 3)
    # Even a private destination sends no UDP under force (the reference binds none).
    assert not force.on_send(("10.0.0.1", 9993), PKT, T0, open_=False, busy=False).udp

    off = FallbackDecider(TcpRelaySettings(allow=False), T0)
    late = T0 + 10 * FALLBACK_AFTER
    assert _ping_until(off, T0, late) == [] and not off.engaged(late)
    assert not off.on_send(ROOT, PKT, late, open_=True, busy=False).tunnel

    bonded = FallbackDecider(TcpRelaySettings(force=True), T0, bonding=True)
    assert not bonded.force and not bonded.enabled
    dec = bonded.on_send(ROOT, PKT, late, open_=False, busy=False)
    assert (dec.tunnel, dec.connect, dec.udp) == (False, False, True)


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("allow", [True, False])
def test_the_clockless_answers_are_what_the_full_decision_says(force: bool, allow: bool) -> None:
    """``udp_only`` and ``ignores_received`` (asked first, so most datagrams skip the clock)
    answer only where ``on_send`` and ``on_udp_received`` would neither read nor change the
    decider's state, and then answer as they do."""

    def state(d: FallbackDecider) -> tuple[object, ...]:
        return (d.enabled, d.force, d.last_heard_global, d.started, d.last_send_global_v4)

    remotes = [ROOT, ("10.1.2.3", 9993), ("127.0.0.1", 9993), ("2001:db8::1", 9993), ("fe80::1", 9)]
    for remote in remotes:
        for n in (15, PKT):
            for t in (T0 + 1_000, T0 + 2 * FALLBACK_AFTER):
                d = FallbackDecider(TcpRelaySettings(force=force, allow=allow), T0)
                quick = d.udp_only(remote, n)
                before = state(d)
                full = d.on_send(remote, n, t, open_=True, busy=False)
                if quick is not None:
                    assert quick == full.udp and not full.tunnel and not full.connect
                    assert state(d) == before  # nothing the full path changed
                else:  # only an IPv4 global destination of a counted length is asked fully
                    assert allow and n == PKT and remote == ROOT
                d = FallbackDecider(TcpRelaySettings(force=force, allow=allow), T0)
                before = state(d)
                if d.ignores_received(remote, n):
                    assert d.on_udp_received(remote, n, t) is False
                    assert state(d) == before
                else:
                    assert n == PKT and remote in (ROOT, ("2001:db8::1", 9993))


# the client against our relay server, loopback TCP -------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> int:
        return self.t


def test_client_and_server_over_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Client (forceTcpRelay) -> server: the server's node sees the datagram from the client's
    TCP address; its answer comes back framed with the address the client sent to."""
    monkeypatch.setattr(tcprelay, "TUNNEL_SCOPES", frozenset({IpScope.GLOBAL, IpScope.LOOPBACK}))

    async def run() -> None:
        clock = _Clock()
        at_server: list[tuple[bytes, tuple[str, int]]] = []
        at_client: list[tuple[bytes, tuple[str, int]]] = []
        server = TcpRelayServer(
            ("127.0.0.1", 0), clock, lambda p, r: at_server.append((p, r)), 0x1122334455
        )
        listen = await server.start()
        loop = asyncio.get_running_loop()
        client = TcpRelayClient(
            TcpRelaySettings(force=True, relay=listen),
            loop,
            clock,
            lambda p, r: at_client.append((p, r)),
        )
        root_udp = ("127.0.0.1", 29993)  # where the client believes the root listens
        try:
            assert client.send(b"A" * 40, root_udp) is False  # no UDP; starts the connection
            for _ in range(100):
                if client.active:
                    break
                await asyncio.sleep(0.02)
            assert client.active
            to_us = b"B" * 8 + bytes.fromhex("1122334455") + b"B" * 27
            assert client.send(to_us, root_udp) is False
            # A packet for another node, to another address: the server's node relays it by
            # its ZeroTier address; the address the member uses for the server is kept.
            assert client.send(b"D" * 40, ("127.0.0.2", 40000)) is False
            for _ in range(100):
                if len(at_server) == 2:
                    break
                await asyncio.sleep(0.02)
            # The first datagram found no tunnel and was lost, as in the reference.
            assert [p for p, _ in at_server] == [to_us, b"D" * 40]
            member_tcp = at_server[0][1]
            assert member_tcp[0] == "127.0.0.1" and member_tcp in server.clients
            assert server.send(b"C" * 40, member_tcp) is True
            assert server.send(b"C" * 40, ("127.0.0.1", 1)) is False  # not a tunnel client
            for _ in range(100):
                if at_client:
                    break
                await asyncio.sleep(0.02)
            assert at_client == [(b"C" * 40, root_udp)]
            assert client.heard_udp(root_udp, 40) is False  # force: UDP is not for the node
        finally:
            client.close()
            await server.close()
        assert not client.active

    asyncio.run(asyncio.wait_for(run(), 20))


async def _raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(100), 5) == b""
    except ConnectionResetError:
        return True


def test_server_bounds_are_enforced_and_counted() -> None:
    async def run() -> None:
        clock = _Clock()
        got: list[Any] = []
        limits = RelayLimits(max_connections=2, max_body=200, sweep_ms=20)
        server = TcpRelayServer(("127.0.0.1", 0), clock, lambda p, r: got.append(p), 1, limits)
        _, port = await server.start()
        try:
            # Bad header: closed, counted.
            r1, w1 = await _raw(port)
            w1.write(b"GET / HTTP/1.1\r\n\r\n")
            assert await _closed(r1)
            # Over the record bound.
            r2, w2 = await _raw(port)
            w2.write(encode_hello(1, 14, 1) + b"\x17\x03\x03\x01\x00")
            assert await _closed(r2)
            # A datagram before the hello.
            r3, w3 = await _raw(port)
            w3.write(encode_datagram(("127.0.0.1", 9993), b"x" * 20))
            assert await _closed(r3)
            assert server.counters["protocol_errors"] == 3
            # Connection bound: the third concurrent one is refused.
            ra, wa = await _raw(port)
            rb, wb = await _raw(port)
            wa.write(encode_hello(1, 14, 1))
            await asyncio.sleep(0.1)
            rc, wc = await _raw(port)
            assert await _closed(rc)
            assert server.counters["refused_full"] == 1
            # Hello deadline: b never says hello; idle: a goes quiet.
            clock.t += limits.hello_timeout_ms
            assert await _closed(rb)
            assert server.counters["hello_timeouts"] == 1
            wa.write(encode_datagram(("127.0.0.1", 9993), b"short"))  # under 16: dropped
            wa.write(encode_datagram(("127.0.0.1", 9993), b"y" * 20))
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.02)
            assert got == [b"y" * 20] and server.counters["dropped_short"] == 1
            clock.t += limits.idle_timeout_ms
            assert await _closed(ra)
            assert server.counters["idle_timeouts"] == 1
            for w in (w1, w2, w3, wa, wb, wc):
                w.close()
        finally:
            await server.close()
        assert server.clients == {}

    asyncio.run(asyncio.wait_for(run(), 30))


# whole nodes on loopback ---------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.slow
def test_member_without_udp_joins_and_pings_through_the_roots_relay(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member with forceTcpRelay (it sends and accepts no UDP at all) gets online, gets its
    network config from the root's controller and pings another member: everything goes
    through the root's tunnel relay. Loopback only counts as a tunnel scope in this test."""
    from tests.helpers.data import test_identities
    from ztnode.testing.local import LocalZtWorld
    from ztnode.transport.httpapi import fetch_json
    from ztnode.transport.localapi import peer_json, serve_local_api

    monkeypatch.setattr(tcprelay, "TUNNEL_SCOPES", frozenset({IpScope.GLOBAL, IpScope.LOOPBACK}))
    ids = test_identities()

    async def run() -> None:
        async with LocalZtWorld(tmp_path, members=1, identities=ids[:2]) as world:
            assert world.root is not None
            rs = world.root.service
            assert rs.node is not None
            relay = TcpRelayServer(
                ("127.0.0.1", 0), rs.clock.now, rs._receive_as_udp, rs.node.address
            )
            _, port = await relay.start()
            rs.tcp_relay_server = relay
            conf = {"settings": {"forceTcpRelay": True, "tcpFallbackRelay": f"127.0.0.1/{port}"}}
            node, net = await world.add_member(ids[2], local_conf=conf, timeout=30)
            assert net is not None
            tunnel = node.service.tcp_relay
            assert tunnel is not None and tunnel.active and tunnel.force
            assert tunnel.counters.get("datagrams_in", 0) > 0
            assert relay.counters.get("datagrams_in", 0) > 0
            await net.ping(world.networks[0].address(), timeout=10)
            core = node.service.node
            assert core is not None
            root_peer = core.peers[world.root.service.node.address]  # type: ignore[union-attr]
            assert peer_json(core, root_peer, node.service.clock.now(), tunnel.active)["tunneled"]
            api, api_port = await serve_local_api(node.service)
            try:
                token = (node.service.home.path / "authtoken.secret").read_text().strip()
                status, body = await fetch_json("127.0.0.1", api_port, "GET", "/status", token)
                assert status == 200 and body["tcpFallbackActive"] is True
                assert body["config"]["settings"]["forceTcpRelay"] is True
                status, peers = await fetch_json("127.0.0.1", api_port, "GET", "/peer", token)
                assert status == 200 and peers and all(p["tunneled"] for p in peers)
            finally:
                await api.close()

    asyncio.run(asyncio.wait_for(run(), 90))


def test_client_opens_after_the_delay_and_closes_when_udp_is_heard() -> None:
    """Not forced: the client connects only once the decider engages (virtual clock), frames
    global IPv4 datagrams while still asking for UDP, and drops the tunnel on UDP heard."""

    async def run() -> None:
        clock = _Clock()
        at_server: list[bytes] = []
        server = TcpRelayServer(("127.0.0.1", 0), clock, lambda p, r: at_server.append(p), 7)
        listen = await server.start()
        client = TcpRelayClient(
            TcpRelaySettings(relay=listen), asyncio.get_running_loop(), clock, lambda p, r: None
        )
        try:
            assert client.send(b"a" * 40, ROOT) is True  # too early: UDP only, no connection
            clock.t += FALLBACK_AFTER + 1_000
            assert client.send(b"b" * 40, ROOT) is True and client.counters == {}
            clock.t += 5_000
            assert client.send(b"c" * 40, ROOT) is True  # paced send: connects
            for _ in range(100):
                if client.active:
                    break
                await asyncio.sleep(0.02)
            assert client.active and client.counters["connect_attempts"] == 1
            assert client.send(b"d" * 40, ROOT) is True  # through the tunnel and by UDP
            for _ in range(100):
                if at_server:
                    break
                await asyncio.sleep(0.02)
            assert at_server == [b"d" * 40]
            assert client.heard_udp(("10.0.0.1", 9993), 40) and client.active  # private
            assert client.heard_udp(ROOT, 40) is True  # for the node, and it closes the tunnel
            assert not client.active and client.counters["closed_udp_heard"] == 1
            assert client.send(b"e" * 40, ROOT) is True  # UDP only again
            assert client.counters["datagrams_out"] == 1
            # local.conf changed while running: forced now (no UDP at all), the same relay.
            client.reconfigure(TcpRelaySettings(force=True, relay=listen), bonding=False)
            assert client.send(b"f" * 40, ROOT) is False
            for _ in range(100):
                if client.active:
                    break
                await asyncio.sleep(0.02)
            assert client.active
            # Another relay: the tunnel to the old one closes at once; disallowed: no more.
            client.reconfigure(TcpRelaySettings(relay=("127.0.0.1", 9)), bonding=False)
            assert not client.active and client.counters["closed_reconfigured"] == 1
            client.reconfigure(TcpRelaySettings(allow=False), bonding=False)
            clock.t += 10 * FALLBACK_AFTER
            assert client.send(b"g" * 40, ROOT) is True and not client.active
            assert client.counters["connect_attempts"] == 2
        finally:
            client.close()
            await server.close()

    asyncio.run(asyncio.wait_for(run(), 20))


class _FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.aborted = False
        self.written: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.9", 5555) if name == "peername" else None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        self.aborted = True


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=6), st.booleans())
def test_server_receive_path_never_raises(chunks: list[bytes], hello: bool) -> None:
    from ztnode.transport.tcprelayserver import _Client

    got: list[bytes] = []
    server = TcpRelayServer(("127.0.0.1", 0), _Clock(), lambda p, r: got.append(p), 1)
    client = _Client(server)
    transport = _FakeTransport()
    client.connection_made(transport)
    if hello:
        client.data_received(encode_hello(1, 14, 1))
    for chunk in chunks:
        client.data_received(chunk)
        if transport.aborted:
            break
    assert all(len(p) >= 16 for p in got)
    assert client.decoder.buffered <= 5 + server.limits.max_body
