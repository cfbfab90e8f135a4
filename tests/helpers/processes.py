"""Worlds of real ztnode processes on loopback driven through the CLI, for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from ztnode.crypto import c25519_generate
from ztnode.identity import Identity
from ztnode.transport.httpapi import fetch_json
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import Root, World, WorldType

IDS = test_identities()


CTL_ID, MEMBER_ID = IDS[0], IDS[1]


CTL_HEX, MEMBER_HEX = f"{CTL_ID.address:010x}", f"{MEMBER_ID.address:010x}"


START_TIMEOUT = 20.0


POOL, ROUTE = "10.147.17.10-10.147.17.20", "10.147.17.0/24"


# ZeroTierOne's /network fields and the JSON types it gives them (service/OneService.cpp).
NETWORK_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "nwid": str,
    "mac": str,
    "name": str,
    "status": str,
    "type": str,
    "mtu": int,
    "dhcp": bool,
    "bridge": bool,
    "broadcastEnabled": bool,
    "portError": int,
    "netconfRevision": int,
    "portDeviceName": str,
    "allowManaged": bool,
    "allowGlobal": bool,
    "allowDefault": bool,
    "allowDNS": bool,
    "assignedAddresses": list,
    "routes": list,
    "multicastSubscriptions": list,
    "dns": dict,
}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ztnode.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def cli_json(*args: str) -> Any:
    r = cli(*args, "-j")
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return json.loads(r.stdout)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_planet(path: Path, root: Identity, port: int) -> None:
    pub, priv = c25519_generate()
    ep = InetAddress.parse(f"127.0.0.1/{port}")
    planet = World.make(WorldType.PLANET, 0xC11, 1_000, pub, (Root(root.public(), (ep,)),), priv)
    path.write_bytes(planet.to_bytes())


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    home: Path
    api_port: int
    log: Path

    @property
    def h(self) -> tuple[str, str]:
        """``--home HOME`` for the CLI."""
        return ("--home", str(self.home))

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        token = (self.home / "authtoken.secret").read_text().strip()
        return asyncio.run(
            fetch_json("127.0.0.1", self.api_port, method, path, token, body, timeout=10)
        )

    def stop(self) -> int:
        """Ctrl-C, and the exit code of the clean stop that follows."""
        os.kill(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=20)


@contextlib.contextmanager
def node(
    home: Path,
    planet: Path,
    ident: Identity,
    port: int = 0,
    *,
    controller: bool = False,
    extra: tuple[str, ...] = (),
    new_session: bool = False,
    netns: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[Proc]:
    """Run ``ztnode node`` with a fixed identity; wait (bounded) for its API; always kill it.
    ``env``: variables added to this process's environment for the node."""
    home.mkdir(exist_ok=True)
    if not (home / "identity.secret").exists():
        ident.save(home / "identity.secret", include_private=True)
    (home / "ztnode.port").unlink(missing_ok=True)
    log = home.parent / f"{home.name}.log"
    argv = [
        sys.executable, "-m", "ztnode.cli", "node", "--home", str(home), "--port", str(port),
        "--bind", "127.0.0.1", "--allow-loopback", "--api-port", "0", "--planet", str(planet),
    ]  # fmt: skip
    if controller:
        argv.append("--controller")
    argv += extra
    if netns is not None:  # inside a namespace the test made (``ip netns exec``)
        argv = ["ip", "netns", "exec", netns, *argv]
    with log.open("ab") as f:
        proc = subprocess.Popen(
            argv,
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=new_session,  # its own process group, for a Ctrl-C to all of it
            env=None if env is None else {**os.environ, **env},
        )
    try:
        port_file = home / "ztnode.port"
        deadline = time.monotonic() + START_TIMEOUT
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None:
                pytest.fail(f"node exited with {proc.returncode}: {log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"node did not start within {START_TIMEOUT} s: {log.read_text()}")
            time.sleep(0.05)
        yield Proc(proc, home, int(port_file.read_text()), log)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> float:
    """Poll until ``cond()`` is true; the seconds it took (fails after ``timeout``)."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def networks(member: Proc) -> dict[str, dict[str, Any]]:
    """``ztnode networks -j`` by network id."""
    return {n["nwid"]: n for n in cli_json("networks", *member.h)}


def status(member: Proc, nwid: str) -> str | None:
    net = networks(member).get(nwid)
    return None if net is None else str(net["status"])


def online(p: Proc) -> bool:
    return bool(cli_json("info", *p.h)["online"])


def create_network(ctl: Proc, name: str) -> str:
    r = cli(
        "controller", "network", "create", "--name", name, "--v4-pool", POOL, "--route", ROUTE,
        "--v6", "rfc4193", *ctl.h,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    nwid = r.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{16}", nwid) and nwid.startswith(CTL_HEX)
    return nwid


def member_record(ctl: Proc, nwid: str, address: str) -> dict[str, Any]:
    members = {m["id"]: m for m in cli_json("controller", "member", "list", nwid, *ctl.h)}
    return dict(members[address])


@contextlib.contextmanager
def world(
    tmp_path: Path, ctl_env: Mapping[str, str] | None = None
) -> Iterator[tuple[Proc, Proc, Path]]:
    """A root+controller process and a member process on loopback, the member online;
    ``ctl_env`` as :func:`node`'s ``env`` for the root."""
    port = free_udp_port()
    planet = tmp_path / "planet"
    write_planet(planet, CTL_ID, port)
    with (
        node(tmp_path / "ctl", planet, CTL_ID, port, controller=True, env=ctl_env) as ctl,
        node(tmp_path / "member", planet, MEMBER_ID) as member,
    ):
        wait_for(lambda: online(member), 15, "the member to come online")
        yield ctl, member, planet
