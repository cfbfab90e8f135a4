"""mDNS/DNS-SD and LLMNR between separate ztnode processes (loopback only): one process serves
and advertises an echo service under its host name; one finds it by browsing and by ``.local``
and connects by name; one with mDNS off finds the same host by LLMNR alone. Each process is a
plain ``ztnode.Node`` (``tests/sockets/names_peer.py``) joined to this test's local world."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from ztnode.testing.local import LocalZtWorld

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

IDS = test_identities()
REPO = Path(__file__).resolve().parents[2]


def spawn(tmp: Path, name: str, ident_index: int, planet: Path, nwid: int, *args: str) -> Any:
    home = tmp / name
    home.mkdir()
    IDS[ident_index].save(home / "identity.secret", include_private=True)
    cmd = [
        sys.executable, "-m", "tests.sockets.names_peer", *args,
        "--home", str(home), "--planet", str(planet), "--network", f"{nwid:016x}",
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])},
    )  # fmt: skip


def lines(proc: Any, timeout: float = 60) -> list[dict[str, Any]]:
    out, _ = proc.communicate(timeout=timeout)
    got = []
    for line in out.splitlines():
        if line.startswith("{"):
            got.append(json.loads(line))
    assert proc.returncode == 0, out
    return got


def test_discovery_between_processes(tmp_path: Path) -> None:
    async def main() -> None:
        async with LocalZtWorld(tmp_path / "world", members=1, identities=IDS[:2]) as w:
            assert w.root is not None and w.planet is not None
            planet = tmp_path / "planet"
            planet.write_bytes(w.planet.to_bytes())
            for i in (3, 4, 5):
                w.root.controller.authorize(w.network_id, f"{IDS[i].address:010x}")
            procs = []
            try:
                server = spawn(
                    tmp_path, "server", 3, planet, w.network_id,
                    "serve", "--hostname", "files", "--linger", "25",
                )  # fmt: skip
                procs.append(server)
                first = await asyncio.to_thread(server.stdout.readline)
                ready = json.loads(first)
                print("server:", first)
                assert ready.get("ready"), first
                finder = spawn(
                    tmp_path, "finder", 4, planet, w.network_id,
                    "find", "--hostname", "desk", "--target", "files",
                )  # fmt: skip
                llmnr = spawn(
                    tmp_path, "llmnr", 5, planet, w.network_id,
                    "find", "--hostname", "laptop", "--target", "files", "--only", "llmnr",
                )  # fmt: skip
                procs += [finder, llmnr]
                found = await asyncio.to_thread(lines, finder)
                by_llmnr = await asyncio.to_thread(lines, llmnr)
                served = await asyncio.to_thread(lines, server)
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait(10)
            assert served == []  # nothing more than the ready line, read above
            assert ready["name"] == "Echo on files" and ready["hostname"] == "files"
            addr = ready["address"]
            assert found[0] == {
                "browsed": "Echo on files", "port": 7300, "txt": {"by": "files"},
                "addresses": found[0]["addresses"],
            }  # fmt: skip
            assert addr in found[0]["addresses"]
            assert found[1] == {"mdns": [addr]}
            assert found[2] == {"single_label": [addr]}
            assert found[3] == {"echoed": "across processes", "via": "files.local"}
            assert by_llmnr[0] == {"single_label": [addr]}
            assert by_llmnr[1] == {"echoed": "across processes", "via": "files"}
            assert by_llmnr[2]["llmnr_queries"] >= 1 and by_llmnr[2]["mdns_queries"] == 0

    asyncio.run(main())
