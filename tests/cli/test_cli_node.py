"""``ztnode node`` as a real process, and ``ztnode info`` / ``peers`` and the local API against it.

Every node runs on 127.0.0.1 with ``--allow-loopback``; waits are bounded, and every process is
killed by its pid in a ``finally`` whatever happens. One node runs alone with a planet naming a
root that does not exist (it stays offline); then a root process and a leaf process form a world
on loopback and the leaf comes online.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from ztnode.crypto import c25519_generate
from ztnode.identity import Identity
from ztnode.transport.httpapi import fetch_json
from ztnode.transport.state import HomeDir
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import Root, World, WorldType

pytestmark = pytest.mark.e2e  # starts processes or uses real sockets (loopback only)

IDS = test_identities()
START_TIMEOUT = 30.0


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ztnode.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_planet(path: Path, root: Identity, port: int) -> World:
    pub, priv = c25519_generate()
    ep = InetAddress.parse(f"127.0.0.1/{port}")
    planet = World.make(WorldType.PLANET, 0xC11, 1_000, pub, (Root(root.public(), (ep,)),), priv)
    path.write_bytes(planet.to_bytes())
    return planet


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    home: Path
    api_port: int
    stdout: Path
    stderr: Path

    def token(self) -> str:
        return (self.home / "authtoken.secret").read_text().strip()

    def api(self, method: str, path: str, token: str | None = "") -> tuple[int, Any]:
        tok = self.token() if token == "" else token
        return asyncio.run(fetch_json("127.0.0.1", self.api_port, method, path, tok, timeout=10))

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()


@contextlib.contextmanager
def node(home: Path, planet: Path, port: int = 0) -> Iterator[Proc]:
    """Start ``ztnode node`` and wait (bounded) for its API port file; always kill it after."""
    home.mkdir(exist_ok=True)
    (home / "ztnode.port").unlink(missing_ok=True)  # left by an earlier run: not ours
    out, err = home.parent / f"{home.name}.out", home.parent / f"{home.name}.err"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "ztnode.cli", "node", "--home", str(home),
                "--port", str(port), "--bind", "127.0.0.1", "--allow-loopback",
                "--api-port", "0", "--planet", str(planet),
            ],
            stdout=fo,
            stderr=fe,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        port_file = home / "ztnode.port"
        deadline = time.monotonic() + START_TIMEOUT
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None:
                pytest.fail(f"node exited with {proc.returncode}: {err.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"node did not start within {START_TIMEOUT} s: {err.read_text()}")
            time.sleep(0.05)
        yield Proc(proc, home, int(port_file.read_text()), out, err)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def stop(p: Proc) -> int:
    os.kill(p.proc.pid, signal.SIGINT)
    return p.proc.wait(timeout=20)


def info_json(home: Path) -> dict[str, Any]:
    r = cli("info", "--home", str(home), "-j")
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def test_single_node_cli_api_and_clean_stop(tmp_path: Path) -> None:
    planet_file = tmp_path / "planet"
    root = IDS[0]
    planet = write_planet(planet_file, root, 1)  # nobody answers there: the node stays offline
    home = tmp_path / "home"
    with node(home, planet_file) as p:
        # Files: a fresh identity (secret 0600), its public half, the API token (0600).
        secret, public = home / "identity.secret", home / "identity.public"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert stat.S_IMODE((home / "authtoken.secret").stat().st_mode) == 0o600
        me = Identity.from_string(secret.read_text().strip())
        assert me.has_private and me.validate()
        assert public.read_text().strip() == me.to_string()

        info = info_json(home)
        assert info["address"] == f"{me.address:010x}"
        assert info["publicIdentity"] == me.to_string()
        assert info["online"] is False
        assert info["planetWorldId"] == planet.id
        assert info["planetWorldTimestamp"] == planet.timestamp
        major, minor, rev = info["versionMajor"], info["versionMinor"], info["versionRev"]
        assert info["version"] == f"{major}.{minor}.{rev}" and major == 1
        settings = info["config"]["settings"]
        assert isinstance(settings["primaryPort"], int) and settings["primaryPort"] > 0
        # The primary port and, as ZeroTierOne's daemon, a random secondary one.
        secondary = settings["secondaryPort"]
        assert 20_000 <= secondary < 65_500 and secondary != settings["primaryPort"]
        assert settings["listeningOn"] == [
            f"127.0.0.1/{settings['primaryPort']}",
            f"127.0.0.1/{secondary}",
        ]
        assert me.to_string(include_private=True).rsplit(":", 1)[1] not in json.dumps(info)

        # The node's own packet path, as its process found it (the node runs this checkout).
        fast = info["fastPath"]
        assert {p["name"] for p in fast["parts"]} >= {"C accelerator", "AES in C", "burst receive"}
        assert fast["summary"].startswith("fast path: ")

        text = cli("info", "--home", str(home))
        assert text.returncode == 0
        assert text.stdout.split() == ["200", "info", info["address"], info["version"], "OFFLINE"]
        assert text.stderr.strip() == fast["summary"]  # stdout keeps zerotier-cli's one line

        r = cli("peers", "--home", str(home), "-j")
        assert r.returncode == 0, r.stderr
        peers = json.loads(r.stdout)
        assert [q["address"] for q in peers] == [f"{root.address:010x}"]
        rp = peers[0]
        assert rp["role"] == "PLANET" and rp["paths"] == [] and rp["latency"] == -1
        assert rp["version"] == "-1.-1.-1" and rp["versionMajor"] == -1
        for key in ("versionMinor", "versionRev", "isBonded", "tunneled"):
            assert key in rp
        text = cli("peers", "--home", str(home))
        assert text.returncode == 0 and f"{root.address:010x}" in text.stdout
        assert "RELAY" in text.stdout

        # The API itself: auth, routing, methods, counters.
        assert p.api("GET", "/status", token=None)[0] == 401
        assert p.api("GET", "/status", token="wrong")[0] == 401
        assert p.api("GET", "/nonexistent")[0] == 404
        status, body = p.api("POST", "/status")
        assert status == 405 and "GET" in body["error"]
        status, body = p.api("GET", "/counters")
        assert status == 200
        assert body["packetsOut"] > 0 and isinstance(body["drops"], dict)
        status, one = p.api("GET", f"/peer/{root.address:010x}")
        assert status == 200 and one == rp | {"paths": one["paths"]}
        assert p.api("GET", "/peer/zzzz")[0] == 400
        assert p.api("GET", "/peer/0102030405")[0] == 404
        bad = cli("info", "--home", str(home), "--token", "wrong")
        assert bad.returncode == 2 and "401" in bad.stderr and "Traceback" not in bad.stderr

        # Ctrl-C: a clean stop that saves state.
        assert stop(p) == 0
        assert "state saved" in p.stdout.read_text()
        assert "Traceback" not in p.output()
    cached = HomeDir(home).load_peers()
    assert [c[0] for c in cached] == [root.public()]
    assert (home / "peers.d" / f"{root.address:010x}.peer").is_file()
    # Restarting reuses the identity.
    with node(home, planet_file) as p2:
        assert info_json(home)["address"] == f"{me.address:010x}"
        assert stop(p2) == 0
    # With the node gone, the CLI says so (exit 2), without a traceback.
    gone = cli("info", "--home", str(home))
    assert gone.returncode == 2 and gone.stderr.startswith("ztnode: ")
    assert "Traceback" not in gone.stderr


def test_root_and_leaf_processes_on_loopback(tmp_path: Path) -> None:
    root_id, leaf_id = IDS[0], IDS[1]
    root_home, leaf_home = tmp_path / "root", tmp_path / "leaf"
    for home, ident in ((root_home, root_id), (leaf_home, leaf_id)):
        home.mkdir()
        ident.save(home / "identity.secret", include_private=True)
    port = free_udp_port()
    planet_file = tmp_path / "planet"
    write_planet(planet_file, root_id, port)
    with node(root_home, planet_file, port) as root, node(leaf_home, planet_file) as leaf:
        assert info_json(root_home)["config"]["settings"]["primaryPort"] == port
        wait_for(lambda: info_json(leaf_home)["online"] is True, 30, "the leaf to come online")
        r = cli("peers", "--home", str(leaf_home), "-j")
        assert r.returncode == 0, r.stderr
        peers = {q["address"]: q for q in json.loads(r.stdout)}
        rp = peers[f"{root_id.address:010x}"]
        assert rp["role"] == "PLANET"
        assert rp["versionMajor"] == 1 and rp["version"] != "-1.-1.-1"
        direct = [q for q in rp["paths"] if q["address"] == f"127.0.0.1/{port}"]
        assert len(direct) == 1 and direct[0]["active"] and not direct[0]["expired"]
        assert direct[0]["preferred"]
        assert rp["latency"] >= 0
        # The root learned the leaf and sees it as a leaf.
        status, lp = root.api("GET", f"/peer/{leaf_id.address:010x}")
        assert status == 200 and lp["role"] == "LEAF" and lp["paths"]
        assert info_json(root_home)["online"] is True  # a root is always online
        status, counters = leaf.api("GET", "/counters")
        assert status == 200 and counters["verbsIn"].get("OK", 0) >= 1
        assert counters["drops"].get("internal_error", 0) == 0
        assert stop(leaf) == 0 and stop(root) == 0
        assert "Traceback" not in leaf.output() + root.output()
    assert (leaf_home / "peers.d" / f"{root_id.address:010x}.peer").is_file()
    assert (root_home / "peers.d" / f"{leaf_id.address:010x}.peer").is_file()
