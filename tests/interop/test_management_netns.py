"""The local API beyond loopback (``settings.allowManagementFrom``), between two namespaces.

A ``ztnode node`` runs in namespace ``a`` of a :class:`LinkedPair` (two cables to ``b``:
``10.71.0.0/24`` and ``10.72.0.0/24``) with ``allowManagementFrom: ["10.71.0.0/24"]``; from
``b`` (another machine, as far as the node can tell) zerotier-cli's command line with ``-H``
reaches it over the allowed cable, with the token; over the other cable the node answers 401
and ``{}`` whatever the token, as ZeroTierOne does. Written into the running node's local.conf,
the change of ``allowManagementFrom`` is applied by its watcher: without it the API listens on
loopback only and ``b`` cannot even connect.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.processes import CTL_ID, node, write_planet
from tests.interop.conftest import need_root
from tests.interop.netns import LinkedPair


def _cli_from(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "ztnode.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _connects(pair: LinkedPair, src: str, dst: str, port: int) -> bool:
    def attempt() -> bool:
        with socket.socket() as s:
            s.settimeout(3)
            s.bind((src, 0))
            try:
                s.connect((dst, port))
            except OSError:
                return False
            return True

    return pair.b.in_namespace(attempt)


def test_management_from_another_machine(tmp_path: Path) -> None:
    need_root()
    with LinkedPair(links=2) as pair:
        home = tmp_path / "node"
        home.mkdir()
        conf = {"settings": {"allowManagementFrom": ["10.71.0.0/24"]}}
        (home / "local.conf").write_text(json.dumps(conf))
        planet = tmp_path / "planet"
        write_planet(planet, CTL_ID, 9)  # a root nobody runs: the API is what is tested
        with node(home, planet, CTL_ID, 0, netns=pair.a.name) as proc:
            token = (home / "authtoken.secret").read_text().strip()
            allowed, other = LinkedPair.ip_of(0, "a"), LinkedPair.ip_of(1, "a")
            port = proc.api_port
            r = _cli_from(pair.b.name, f"-H{allowed}", f"-p{port}", f"-T{token}", "-j", "info")
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["address"] == f"{CTL_ID.address:010x}"
            r = _cli_from(pair.b.name, f"-H{allowed}", f"-p{port}", "-Twrong", "/status")
            assert (r.returncode, r.stdout.split(" ", 2)[:2]) == (1, ["401", "/status"])
            r = _cli_from(pair.b.name, f"-H{other}", f"-p{port}", f"-T{token}", "/status")
            assert r.returncode == 1 and r.stdout.strip() == "401 /status {}"
            # Taken out of local.conf: within the watcher's 10 s the API is loopback only.
            (home / "local.conf").write_text(json.dumps({"settings": {}}))
            deadline = time.monotonic() + 25
            while _connects(pair, LinkedPair.ip_of(0, "b"), allowed, port):
                assert time.monotonic() < deadline, "the API still listens beyond loopback"
                time.sleep(0.5)
            r = _cli_from(pair.a.name, f"-D{home}", "-j", "info")  # loopback, as ever
            assert r.returncode == 0, r.stderr
