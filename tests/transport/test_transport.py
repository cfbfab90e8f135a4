"""The I/O edges: UDP endpoints, the home directory, and the local HTTP API server.

UDP tests use real sockets on loopback (IPv6 is skipped only if the host has no ``::1``). The
full-kernel-buffer case cannot be produced reliably with real UDP on loopback, so it wraps a real
socket whose ``sendto`` reports ``EAGAIN`` on demand; everything else (readiness callbacks, the
event loop) is real. The HTTP tests speak raw bytes to a real server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from ztnode.crypto import c25519_generate
from ztnode.errors import DecodeError
from ztnode.transport import httpapi
from ztnode.transport.httpapi import HttpError, JsonApi, Request, fetch_json
from ztnode.transport.state import HomeDir
from ztnode.transport.udp import MAX_SEND_QUEUE, UdpEndpoint
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import DEFAULT_PLANET, Root, World, WorldType

pytestmark = pytest.mark.e2e  # starts processes or uses real sockets (loopback only)

IDS = test_identities()
Addr = tuple[str, int]


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def run(coro_fn: Callable[[], Awaitable[None]], timeout: float = 15.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro_fn(), timeout)

    asyncio.run(bounded())


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.001)


# --------------------------------------------------------------------------- UDP


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_udp_receives_many_datagrams_intact_and_in_order(host: str) -> None:
    if host == "::1" and not has_ipv6_loopback():
        pytest.skip("this host has no IPv6 loopback")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    got: list[tuple[bytes, Addr]] = []

    async def main() -> None:
        ep = UdpEndpoint.bind(host, 0, lambda view, addr: got.append((bytes(view), addr)))
        try:
            assert ep.local_address[0] == host and ep.local_address[1] > 0
            with socket.socket(family, socket.SOCK_DGRAM) as tx:
                tx.bind((host, 0))
                src = tx.getsockname()[:2]
                sent: list[bytes] = []
                for batch in range(20):
                    for i in range(100):
                        n = batch * 100 + i
                        msg = n.to_bytes(4, "big") + bytes([n % 251]) * (n % 1400)
                        tx.sendto(msg, ep.local_address)
                        sent.append(msg)
                    await until(lambda: len(got) >= len(sent))
                # One datagram larger than any ZeroTier packet, and an empty one.
                big = os.urandom(60_000)
                for msg in (big, b""):
                    tx.sendto(msg, ep.local_address)
                    sent.append(msg)
                await until(lambda: len(got) >= len(sent))
            assert [d for d, _ in got] == sent
            assert {a for _, a in got} == {src}
            assert ep.stats.received == len(sent)
            # Replies go back the same way.
            with socket.socket(family, socket.SOCK_DGRAM) as rx:
                rx.bind((host, 0))
                rx.settimeout(5)
                ep.send(b"pong", rx.getsockname()[:2])
                data, frm = rx.recvfrom(100)
                assert (data, frm[:2]) == (b"pong", ep.local_address)
            assert ep.stats.sent == 1 and ep.stats.send_errors == 0
        finally:
            ep.close()
        ep.close()  # idempotent
        ep.send(b"after close", src)  # ignored, no exception
        assert ep.stats.sent == 1

    run(main)


class StallingSocket:
    """A real UDP socket whose ``sendto`` says EAGAIN while ``full`` is set (a full kernel
    buffer), recording what the kernel would have been given otherwise."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.full = False
        self.wire: list[tuple[bytes, Addr]] = []

    def sendto(self, data: bytes, addr: Addr) -> int:
        if self.full:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        self.wire.append((bytes(data), addr))
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_udp_send_queue_is_bounded_when_the_kernel_buffer_is_full() -> None:
    async def main() -> None:
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.bind(("127.0.0.1", 0))
        stall = StallingSocket(raw)
        ep = UdpEndpoint(stall, lambda view, addr: None)  # type: ignore[arg-type]
        dest = ("127.0.0.1", 9)
        try:
            ep.send(b"first", dest)
            assert stall.wire == [(b"first", dest)] and ep.stats.sent == 1
            stall.full = True
            total = MAX_SEND_QUEUE + 500
            for i in range(total):
                ep.send(i.to_bytes(4, "big"), dest)
            assert len(ep._pending) == MAX_SEND_QUEUE
            assert ep.stats.send_queued == total and ep.stats.send_dropped == 500
            await asyncio.sleep(0.02)  # the writer callback runs, still blocked: nothing lost
            assert len(ep._pending) == MAX_SEND_QUEUE and len(stall.wire) == 1
            stall.full = False
            await until(lambda: not ep._pending)
            # The oldest were dropped; the rest went out in order, then writing stopped.
            assert [d for d, _ in stall.wire[1:]] == [
                i.to_bytes(4, "big") for i in range(500, total)
            ]
            assert ep.stats.sent == 1 + MAX_SEND_QUEUE
            assert not ep._writing
            ep.send(b"direct again", dest)  # an empty queue sends straight away
            assert stall.wire[-1] == (b"direct again", dest)
        finally:
            ep.close()

    run(main)


def test_udp_send_errors_are_counted_not_raised() -> None:
    async def main() -> None:
        ep = UdpEndpoint.bind("127.0.0.1", 0, lambda view, addr: None)
        try:
            ep.send(b"x", ("::1", 9993))  # an IPv6 destination on an IPv4 socket
            ep.send(b"x" * 70_000, ("127.0.0.1", 9993))  # larger than UDP allows
            assert ep.stats.send_errors == 2 and ep.stats.sent == 0
            assert not ep._pending
        finally:
            ep.close()

    run(main)


@pytest.mark.parametrize("fast", [True, False])
def test_udp_sends_the_same_with_and_without_the_accelerators_sendto(fast: bool) -> None:
    """Where the accelerator's sendto serves (destinations packed once), what arrives, what is
    counted and what is left to socket.sendto (a name) is what socket.sendto alone gives."""
    v6 = has_ipv6_loopback()

    async def main() -> None:
        got: list[tuple[bytes, Addr]] = []
        rx4 = UdpEndpoint.bind("127.0.0.1", 0, lambda view, addr: got.append((bytes(view), addr)))
        ep4 = UdpEndpoint.bind("127.0.0.1", 0, lambda view, addr: None)
        eps = [rx4, ep4]
        try:
            if not fast:
                ep4._fast_send = False
            port4 = rx4.local_address[1]
            ep4.send(b"one", ("127.0.0.1", port4))
            ep4.send(bytearray(b"two"), ("127.0.0.1", port4))
            ep4.send(b"three", ("localhost", port4))  # a name: socket.sendto resolves it
            ep4.send(b"x", ("::1", port4))  # an IPv6 destination on an IPv4 socket
            ep4.send(b"x" * 70_000, ("127.0.0.1", port4))  # larger than UDP allows
            want = [(d, ep4.local_address) for d in (b"one", b"two", b"three")]
            await until(lambda: len(got) >= 3)
            if v6:
                rx6 = UdpEndpoint.bind("::1", 0, lambda view, a: got.append((bytes(view), a)))
                ep6 = UdpEndpoint.bind("::1", 0, lambda view, addr: None)
                eps += [rx6, ep6]
                if not fast:
                    ep6._fast_send = False
                ep6.send(b"six", ("::1", rx6.local_address[1]))
                ep6.send(b"x", ("127.0.0.1", rx6.local_address[1]))  # IPv4 on an IPv6 socket
                want.append((b"six", ep6.local_address))
                await until(lambda: len(got) >= 4)
                assert (ep6.stats.sent, ep6.stats.send_errors) == (1, 1)
            assert got == want
            assert (ep4.stats.sent, ep4.stats.send_errors) == (3, 2)
            if fast and ep4._fast_send:  # packed once, the name left to socket.sendto
                assert ep4._sockaddrs[("localhost", port4)] == b""
                assert len(ep4._sockaddrs[("127.0.0.1", port4)]) == 16
        finally:
            for ep in eps:
                ep.close()

    run(main)


def test_udp_bind_refuses_a_taken_port() -> None:
    async def main() -> None:
        ep = UdpEndpoint.bind("127.0.0.1", 0, lambda view, addr: None)
        try:
            with pytest.raises(OSError):
                UdpEndpoint.bind("127.0.0.1", ep.local_address[1], lambda view, addr: None)
        finally:
            ep.close()

    run(main)


# --------------------------------------------------------------------------- HomeDir


def _world(kind: WorldType, wid: int, ts: int) -> World:
    pub, priv = c25519_generate()
    root = Root(IDS[0].public(), (InetAddress.parse("10.0.0.1/9993"),))
    return World.make(kind, wid, ts, pub, (root,), priv)


def test_identity_is_created_once_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[int] = []

    def fake_generate() -> Any:
        made.append(1)
        return IDS[4]

    monkeypatch.setattr("ztnode.transport.state.Identity.generate", fake_generate)
    home = HomeDir(tmp_path / "home")
    home.ensure()
    first = home.load_or_create_identity()
    assert made == [1] and first == IDS[4] and first.has_private
    secret, public = home.path / "identity.secret", home.path / "identity.public"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert public.read_text().strip() == IDS[4].to_string()
    again = HomeDir(home.path).load_or_create_identity()
    assert made == [1] and again == first and again.private_key == first.private_key
    # A stale or tampered public file is rewritten from the secret.
    public.write_text("junk\n")
    HomeDir(home.path).load_or_create_identity()
    assert public.read_text().strip() == IDS[4].to_string()
    # A broken secret is an error, never silently replaced by a new identity.
    for bad in (b"garbage", IDS[4].to_string().encode()):
        secret.write_bytes(bad)
        with pytest.raises(DecodeError):
            HomeDir(home.path).load_or_create_identity()
        assert secret.read_bytes() == bad
    assert made == [1]


def test_secret_files_readable_by_others_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = HomeDir(tmp_path / "home")
    home.ensure()
    home.load_or_create_identity()
    token = home.auth_token()
    assert stat.S_IMODE((home.path / "authtoken.secret").stat().st_mode) == 0o600
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ztnode.state"):
        HomeDir(home.path).load_or_create_identity()
        assert HomeDir(home.path).auth_token() == token
    assert not caplog.records  # 0600: nothing to say
    for name in ("identity.secret", "authtoken.secret"):
        (home.path / name).chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="ztnode.state"):
        HomeDir(home.path).load_or_create_identity()  # still starts: warned, not refused
        assert HomeDir(home.path).auth_token() == token
    text = caplog.text
    assert "identity.secret is accessible to others (mode 644)" in text
    assert "authtoken.secret is accessible to others (mode 644)" in text


def test_planet_override_is_saved_and_bad_files_fall_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = HomeDir(tmp_path)
    home.ensure()
    assert home.load_planet() == World.from_bytes(DEFAULT_PLANET)
    mine = _world(WorldType.PLANET, 77, 1_000)
    assert home.load_planet(mine) == mine
    assert HomeDir(tmp_path).load_planet() == mine  # remembered without the override
    newer = _world(WorldType.PLANET, 77, 2_000)
    home.save_world(newer)
    assert HomeDir(tmp_path).load_planet() == newer
    (tmp_path / "planet").write_bytes(b"\x01not a world")
    with caplog.at_level(logging.WARNING, logger="ztnode.state"):
        assert home.load_planet() == World.from_bytes(DEFAULT_PLANET)
    assert "ignoring unreadable" in caplog.text
    (tmp_path / "planet").unlink()
    (tmp_path / "planet").mkdir()  # unreadable as a file
    assert home.load_planet() == World.from_bytes(DEFAULT_PLANET)


def test_moons_round_trip_and_unreadable_ones_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = HomeDir(tmp_path)
    home.ensure()
    assert home.load_moons() == []
    m1, m2 = _world(WorldType.MOON, 0x1111, 5), _world(WorldType.MOON, 0x2222, 6)
    home.save_world(m1)
    home.save_world(m2)
    assert (tmp_path / "moons.d" / "0000000000001111.moon").is_file()
    assert HomeDir(tmp_path).load_moons() == [m1, m2]
    (tmp_path / "moons.d" / "000000000000dead.moon").write_bytes(b"junk")
    (tmp_path / "moons.d" / "000000000000beef.moon").mkdir()
    (tmp_path / "moons.d" / "000000000000f00d.moon").symlink_to(tmp_path / "missing")
    (tmp_path / "moons.d" / "README").write_text("not a moon")
    with caplog.at_level(logging.WARNING, logger="ztnode.state"):
        assert HomeDir(tmp_path).load_moons() == [m1, m2]
    assert caplog.text.count("ignoring unreadable moon") == 3
    home.delete_moon(0x1111)
    home.delete_moon(0x9999)  # not there: fine
    assert [m.id for m in HomeDir(tmp_path).load_moons()] == [0x2222]


def test_peer_cache_round_trip_and_bad_entries_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = HomeDir(tmp_path)
    home.ensure()
    addrs = [InetAddress.parse("10.0.0.5/9993"), InetAddress.parse("2001:db8::5/41000")]
    home.save_peer(IDS[1], (12, 1, 14, 2), addrs)
    home.save_peer(IDS[2], (0, 0, 0, 0), [])
    got = HomeDir(tmp_path).load_peers()  # in file name (address) order
    assert sorted(got, key=lambda g: g[0].address) == sorted(
        [(IDS[1].public(), (12, 1, 14, 2), addrs), (IDS[2].public(), (0, 0, 0, 0), [])],
        key=lambda g: g[0].address,
    )
    assert not any(i.has_private for i, _, _ in got)
    peer_file = tmp_path / "peers.d" / f"{IDS[1].address:010x}.peer"
    data = peer_file.read_bytes()
    (tmp_path / "peers.d" / "0000000001.peer").write_bytes(data[:40])  # truncated
    (tmp_path / "peers.d" / "0000000002.peer").write_bytes(b"\x09" + data[1:])  # other version
    (tmp_path / "peers.d" / "0000000003.peer").mkdir()
    with caplog.at_level(logging.WARNING, logger="ztnode.state"):
        again = HomeDir(tmp_path).load_peers()
    assert again == got
    assert caplog.text.count("ignoring unreadable peer cache") == 2  # the other version: silent


def test_auth_token_is_created_0600_and_reused(tmp_path: Path) -> None:
    home = HomeDir(tmp_path)
    home.ensure()
    token = home.auth_token()
    f = tmp_path / "authtoken.secret"
    assert len(token) >= 16 and stat.S_IMODE(f.stat().st_mode) == 0o600
    assert HomeDir(tmp_path).auth_token() == token
    f.write_text("my-own-token\n")
    assert home.auth_token() == "my-own-token"
    f.write_text("  \n")
    assert home.auth_token() not in ("", "my-own-token")


# --------------------------------------------------------------------------- HTTP API


async def _start_api(token: str | None = "s3cret") -> tuple[JsonApi, int]:
    api = JsonApi(token)

    async def status(req: Request) -> Any:
        return {"ok": True, "query": req.query}

    async def echo(req: Request) -> Any:
        return {"got": req.json(), "id": req.params.get("id")}

    async def boom(req: Request) -> Any:
        raise RuntimeError("handler bug")

    async def conflict(req: Request) -> Any:
        raise HttpError(409, "already there")

    api.route("GET", "/status", status)
    api.route("POST", "/echo/{id}", echo)
    api.route("GET", "/boom", boom)
    api.route("GET", "/conflict", conflict)
    port = await api.start("127.0.0.1", 0)
    return api, port


async def _exchange(
    port: int, raw: bytes, responses: int = 1
) -> list[tuple[int, dict[str, str], Any]]:
    """Send raw bytes; read ``responses`` HTTP responses (by Content-Length)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        out = []
        for _ in range(responses):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
            }
            body = await reader.readexactly(int(headers["content-length"]))
            out.append((status, headers, json.loads(body)))
        return out
    finally:
        writer.close()


def _req(
    method: str, path: str, extra: str = "", body: bytes = b"", token: str = "s3cret"
) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nX-ZT1-Auth: {token}\r\n{extra}"
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def test_http_errors_and_limits() -> None:
    async def main() -> None:
        api, port = await _start_api()
        try:
            cases: list[tuple[bytes, int]] = [
                (b"GARBAGE\r\n\r\n", 400),
                (b"GET /status HTTP/2.0\r\n\r\n", 400),
                (b"GET /status HTTP/1.1\r\nno colon here\r\n\r\n", 400),
                (b"POST /echo/1 HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
                (b"POST /echo/1 HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
                (b"POST /echo/1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
                (
                    b"GET /status HTTP/1.1\r\nX-Big: " + b"a" * (httpapi.MAX_HEADER_BYTES + 10)
                    + b"\r\n\r\n",
                    431,
                ),
                (
                    b"POST /echo/1 HTTP/1.1\r\nContent-Length: "
                    + str(httpapi.MAX_BODY_BYTES + 1).encode()
                    + b"\r\n\r\n",
                    413,
                ),
            ]  # fmt: skip
            for raw, want in cases:
                [(status, headers, body)] = await _exchange(port, raw)
                assert status == want, (raw[:40], body)
                assert headers["connection"] == "close" and "error" in body
            # Auth: none, wrong, header, bearer, query.
            assert (await _exchange(port, b"GET /status HTTP/1.1\r\n\r\n"))[0][0] == 401
            assert (await _exchange(port, _req("GET", "/status", token="nope")))[0][0] == 401
            ok = b"GET /status HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n"
            assert (await _exchange(port, ok))[0][0] == 200
            [(status, _, body)] = await _exchange(
                port, b"GET /status?auth=s3cret&x=1 HTTP/1.1\r\n\r\n"
            )
            assert status == 200 and body["query"]["x"] == ["1"]
            # Routing.
            assert (await _exchange(port, _req("GET", "/nope")))[0][0] == 404
            [(status, _, body)] = await _exchange(port, _req("DELETE", "/status"))
            assert status == 405 and "GET" in body["error"]
            assert (await _exchange(port, _req("GET", "/boom")))[0][:1] == (500,)
            assert (await _exchange(port, _req("GET", "/conflict")))[0][0] == 409
            [(status, _, body)] = await _exchange(port, _req("POST", "/echo/7", body=b"{bad"))
            assert status == 400 and "JSON" in body["error"]
        finally:
            await api.close()

    run(main)


def test_http_keep_alive_serves_several_requests_on_one_connection() -> None:
    async def main() -> None:
        api, port = await _start_api()
        try:
            two = _req("POST", "/echo/a%2Fb", body=b'{"n": 1}') + _req("GET", "/status/")
            r = await _exchange(port, two, responses=2)
            assert [s for s, _, _ in r] == [200, 200]
            assert r[0][2] == {"got": {"n": 1}, "id": "a/b"}
            assert r[0][1]["connection"] == "keep-alive"
            # Sequential requests on one connection, the last asking to close.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                for i in range(3):
                    last = i == 2
                    writer.write(_req("GET", "/status", "Connection: close\r\n" if last else ""))
                    await writer.drain()
                    head = await reader.readuntil(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 200 ")
                    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
                assert await asyncio.wait_for(reader.read(), 5) == b""  # server closed
            finally:
                writer.close()
            # The client helper the CLI uses.
            assert await fetch_json("127.0.0.1", port, "GET", "/status", "s3cret") == (
                200,
                {"ok": True, "query": {}},
            )
            assert (await fetch_json("127.0.0.1", port, "GET", "/status", None))[0] == 401
            status, body = await fetch_json("127.0.0.1", port, "POST", "/echo/x", "s3cret", [1])
            assert (status, body) == (200, {"got": [1], "id": "x"})
        finally:
            await api.close()

    run(main)


def test_api_limits_connections_and_request_rates(monkeypatch: pytest.MonkeyPatch) -> None:
    """A local process cannot starve the node through its API: connections beyond the limit are
    answered 503 and closed, and wrong tokens beyond their budget are answered 429 while the
    right token keeps working."""
    from ztnode.transport import httpapi

    monkeypatch.setattr(httpapi, "MAX_CONNECTIONS", 4)

    async def main() -> None:
        api, port = await _start_api()
        held: list[asyncio.StreamWriter] = []
        try:
            for _ in range(4):
                _r, w = await asyncio.open_connection("127.0.0.1", port)
                held.append(w)
            await asyncio.sleep(0.05)
            r, w = await asyncio.open_connection("127.0.0.1", port)
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 503 ")
            w.close()
            for w in held:
                w.close()
            await asyncio.sleep(0.05)
            assert api.refused["connections"] == 1
            # Wrong tokens: beyond their budget they get 429; the right token still passes.
            statuses = [
                (await fetch_json("127.0.0.1", port, "GET", "/status", "wrong"))[0]
                for _ in range(httpapi.MAX_AUTH_FAILURES_PER_SECOND + 5)
            ]
            assert statuses.count(401) >= 1 and statuses[-1] == 429
            assert api.refused["auth"] >= 1
            assert (await fetch_json("127.0.0.1", port, "GET", "/status", "s3cret"))[0] == 200
        finally:
            await api.close()

    run(main)
