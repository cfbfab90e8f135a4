"""Shared setup for interop worlds: our root+controller in a namespace, its planet, its HTTP API.

Every libzt interop test needs the same scaffolding before its own story starts: a planet whose
only root is one of our nodes, that node running as ``ztnode node --controller`` inside the test's
namespace, and a way to drive the controller's ``/controller/...`` HTTP API from this process.
Keeping it here lets each test module say only what is particular to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.interop.netns import NetNamespace
from tests.interop.peer import LibztPeer
from ztnode.identity import Identity
from ztnode.root.worlds import KeyPair
from ztnode.sockets.aio import Network, Node
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import Root, World, WorldType

PLANET_ID = 0x1DE57A12
P_ROOT = 29983


class ControllerProcess:
    """``ztnode node --controller`` (or, with ``controller=False``, a plain root) inside the
    namespace: the planet's root, stopped by pid."""

    def __init__(
        self,
        ns: NetNamespace,
        home: Path,
        planet_file: Path,
        ip: str,
        port: int = P_ROOT,
        *,
        controller: bool = True,
    ) -> None:
        self.ns = ns
        self.home = home
        self.log = home.parent / "root.log"
        self._log_f = open(self.log, "w")  # noqa: SIM115  (closed in stop())
        cmd = [
            "ip", "netns", "exec", ns.name,
            sys.executable, "-m", "ztnode.cli", "node",
            "--home", str(home), "--port", str(port), "--bind", ip,
            "--planet", str(planet_file), "--api-port", "0",
            *(["--controller"] if controller else []),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdout=self._log_f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self.api: HttpApi | None = None

    def wait_ready(self, timeout: float) -> HttpApi:
        port_file = self.home / "ztnode.port"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"root exited {self.proc.returncode}: {self.log_text()}")
            if "local API on" in self.log.read_text() and port_file.exists():
                token = (self.home / "authtoken.secret").read_text().strip()
                self.api = HttpApi(self.ns, int(port_file.read_text().strip()), token)
                return self.api
            time.sleep(0.05)
        raise AssertionError(f"root not ready within {timeout} s: {self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text()[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            # ip netns exec execs the command, so this pid is the node itself.
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log_f.close()


class HttpApi:
    """The node's local HTTP API (127.0.0.1 inside the namespace), one connection per call."""

    def __init__(self, ns: NetNamespace, port: int, token: str) -> None:
        self.ns = ns
        self.port = port
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        sock = self.ns.socket(kind=socket.SOCK_STREAM)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            sock.settimeout(10)
            sock.connect(("127.0.0.1", self.port))
            conn.sock = sock  # already connected, in the namespace
            data = None if body is None else json.dumps(body).encode()
            headers = {"X-ZT1-Auth": self.token, "Content-Type": "application/json"}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
            sock.close()
        payload = json.loads(raw) if raw.strip() else None
        if resp.status != 200:
            raise AssertionError(f"{method} {path} -> {resp.status} {payload}")
        return payload

    async def acall(self, method: str, path: str, body: Any = None) -> Any:
        return await asyncio.to_thread(self.call, method, path, body)


def make_planet(root: Identity, ip: str, port: int = P_ROOT, world_id: int = PLANET_ID) -> World:
    key = KeyPair.generate()
    roots = [Root(root.public(), (InetAddress.parse(f"{ip}/{port}"),))]
    return World.make(
        WorldType.PLANET, world_id, int(time.time() * 1000), key.public, roots, key.private
    )


@dataclass
class ControllerWorld:
    """A running root+controller and what members need to reach it."""

    planet: World
    root: ControllerProcess
    api: HttpApi


@contextlib.contextmanager
def controller_world(
    ns: NetNamespace, tmp_path: Path, root_id: Identity, ip: str, port: int = P_ROOT
) -> Iterator[ControllerWorld]:
    """Our root+controller on ``ip`` inside ``ns``, ready to serve its API; stopped on exit."""
    planet = make_planet(root_id, ip, port)
    planet_file = tmp_path / "planet"
    planet_file.write_bytes(planet.to_bytes())
    home = tmp_path / "root"
    home.mkdir()
    root_id.save(home / "identity.secret", include_private=True)
    root = ControllerProcess(ns, home, planet_file, ip, port)
    try:
        api = root.wait_ready(20)
        yield ControllerWorld(planet, root, api)
    finally:
        root.stop()


# ------------------------------------------------------------------------------ libzt members


def authorize(api: HttpApi, nwid: str, ident: Identity) -> None:
    """A member record made ahead of the node's first request, so that request succeeds."""
    member = f"/controller/network/{nwid}/member/{ident.address:010x}"
    api.call("POST", member, {"authorized": True})


def authorized_network(api: HttpApi, spec: dict[str, Any], members: Iterable[Identity]) -> str:
    """A new network made from ``spec`` with ``members`` authorized ahead; its id."""
    nwid: str = api.call("POST", "/controller/network", spec)["id"]
    for ident in members:
        authorize(api, nwid, ident)
    return nwid


def start_libzt_member(
    lz: LibztPeer,
    home: Path,
    ident: Identity,
    planet: World,
    port: int,
    nwid: str,
    blacklist_if: list[str],
) -> None:
    """A libzt worker (``LibztPeer``) started with a fixed identity in ``home`` and joined to
    ``nwid`` at once (the core asks for a config at its next 5 s tick)."""
    home.mkdir(parents=True, exist_ok=True)
    ident.save(home / "identity.secret", include_private=True)
    ident.save(home / "identity.public", include_private=False)
    lz.call(
        "start",
        30,
        storage=str(home),
        planet=planet.to_bytes().hex(),
        port=port,
        blacklist_if=blacklist_if,
    )
    lz.call("join", 30, nwid=nwid)


def wait_libzt_addresses(
    lz: LibztPeer, nwid: str, timeout: float, families: tuple[int, ...] = (4,)
) -> dict[int, str]:
    """libzt's first address of each family on ``nwid`` once the core says OK and the
    transport is up (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while True:
        st = lz.call("network", 10, nwid=nwid)
        core = st.get("core") or {}
        found: dict[int, str] = {}
        for a in st["addresses"]:
            found.setdefault(6 if ":" in a else 4, a)
        if core.get("status") == "OK" and st["ready"] and all(f in found for f in families):
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"libzt not ready on {nwid} within {timeout} s: {st}")
        time.sleep(0.1)


# -------------------------------------------------------------- our member beside a libzt one


@contextlib.asynccontextmanager
async def our_member(
    ns: NetNamespace, planet: World, home: Path, ident: Identity, slot: int, port: int
) -> AsyncIterator[Node]:
    """Our in-process node on the namespace's address ``slot`` (a socket made inside it),
    started with a fixed identity; stopped on exit."""
    home.mkdir(parents=True, exist_ok=True)
    ident.save(home / "identity.secret", include_private=True)
    sock = ns.socket(bind=(ns.addresses[slot], port))
    node = Node(home, planet=planet, sockets=(sock,))
    try:
        await node.start()
    except BaseException:
        sock.close()
        raise
    try:
        yield node
    finally:
        await node.stop()


async def join_beside_libzt(
    ns: NetNamespace,
    node: Node,
    planet: World,
    nwid: str,
    lz: LibztPeer,
    lz_home: Path,
    lz_ident: Identity,
    lz_slot: int,
    lz_port: int,
) -> tuple[Network, str]:
    """Our node and a libzt member join ``nwid`` side by side: our Network and libzt's IPv4
    address, once both are ready (libzt told to ignore every interface but its own)."""
    join = asyncio.ensure_future(node.join(nwid, timeout=40))
    try:
        await asyncio.to_thread(
            start_libzt_member,
            lz,
            lz_home,
            lz_ident,
            planet,
            lz_port,
            nwid,
            [n for j, n in enumerate(ns.interfaces) if j != lz_slot],
        )
        lz_ip = (await asyncio.to_thread(wait_libzt_addresses, lz, nwid, 40))[4]
        return await join, lz_ip
    except BaseException:
        join.cancel()
        raise
