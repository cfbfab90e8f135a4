"""State survives SIGKILL at any instant: identity creation, network config persistence and the
controller's database writes are killed at seeded random moments, then reopened.

Each scenario runs a child process that does the write in a loop (or once, for the identity),
kills it with SIGKILL after a random delay, and checks what is on disk: the old or the new
content, never a torn file; no temporary file left once a node's home is opened again; and the
controller's SQLite database opens, passes ``PRAGMA integrity_check`` and still serves its
network. Bounded: a fixed number of kills, each child waited for by pid."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.data import test_identities
from ztnode.controller import DATABASE_NAME, open_controller
from ztnode.identity import Identity
from ztnode.testing.world import seeded_random_bytes
from ztnode.transport.state import HomeDir

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

KILLS = 8
NWID = 0x1122334455667788
_REPO = Path(__file__).resolve().parents[2]

CONFIG_WRITER = """
import sys
from pathlib import Path
from ztnode.transport.state import HomeDir
home = HomeDir(Path(sys.argv[1]))
home.ensure()
print("ready", flush=True)
i = 0
while True:
    i += 1
    home.save_network_config(0x1122334455667788, (f"config {i:08d};".encode()) * 3000)
"""

IDENTITY_MAKER = """
import sys
from pathlib import Path
from ztnode.transport.state import HomeDir
home = HomeDir(Path(sys.argv[1]))
home.ensure()
print("ready", flush=True)
home.load_or_create_identity()
print("done", flush=True)
"""

CONTROLLER_WRITER = """
import sys
from pathlib import Path
from tests.helpers.data import test_identities
from ztnode.controller import DATABASE_NAME, open_controller
from ztnode.testing.world import seeded_random_bytes
ids = test_identities()
ctl = open_controller(ids[0], Path(sys.argv[1]), seeded_random_bytes(3))
nwid = int(sys.argv[2], 16)
print("ready", flush=True)
i = 0
while True:
    i += 1
    ctl.update_member(nwid, ids[1 + i % 4].address, {"name": f"m{i}", "authorized": i % 2 == 0}, i)
"""


def _kill_after(script: str, args: list[str], delay: float) -> None:
    env = {**os.environ, "PYTHONPATH": f"{_REPO}{os.pathsep}{_REPO / 'src'}"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=_REPO,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def _temps(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_network_config_write_killed_at_random(tmp_path: Path) -> None:
    rng = random.Random(11)
    home = tmp_path / "home"
    config = home / "networks.d" / f"{NWID:016x}.conf"
    seen: set[bytes] = set()
    for _ in range(KILLS):
        _kill_after(CONFIG_WRITER, [str(home)], rng.uniform(0.05, 0.4))
        data = config.read_bytes()
        record = data[:16]
        assert record.startswith(b"config ") and data == record * 3000, "a torn config file"
        seen.add(record)
        HomeDir(home).ensure()  # a node starting on this home sweeps what the kill left
        assert _temps(home / "networks.d") == []
    assert len(seen) > 1  # the writes really ran between kills


def test_identity_creation_killed_at_random(tmp_path: Path) -> None:
    rng = random.Random(12)
    outcomes = []
    for k in range(KILLS):
        home = tmp_path / f"home{k}"
        _kill_after(IDENTITY_MAKER, [str(home)], rng.uniform(0.0, 0.25))
        secret = home / "identity.secret"
        if secret.exists():
            ident = Identity.load(secret)
            assert ident.has_private and ident.validate(), "a torn identity.secret"
            outcomes.append("made")
        else:
            outcomes.append("not yet")
        hd = HomeDir(home)
        hd.ensure()
        again = hd.load_or_create_identity()  # restarts cleanly either way
        assert again.has_private and again.validate()
        assert Identity.load(home / "identity.public") == again
        assert _temps(home) == []
    assert outcomes  # both outcomes are fine; neither may tear


def test_controller_writes_killed_at_random(tmp_path: Path) -> None:
    rng = random.Random(13)
    ids = test_identities()
    home = tmp_path / "ctl"
    home.mkdir()
    ctl = open_controller(ids[0], home, seeded_random_bytes(1))
    nwid = int(str(ctl.create_network({"name": "kill"}, 0)["id"]), 16)
    ctl.close()
    names: set[str] = set()
    for _ in range(KILLS):
        _kill_after(CONTROLLER_WRITER, [str(home), f"{nwid:016x}"], rng.uniform(0.1, 0.5))
        db = sqlite3.connect(home / DATABASE_NAME)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            db.close()
        ctl = open_controller(ids[0], home, seeded_random_bytes(2))
        try:
            assert ctl.get_network(nwid)["name"] == "kill"
            for m in ctl.members(nwid):
                names.add(str(m["name"]))
                assert str(m["name"]).startswith("m")
        finally:
            ctl.close()
    assert len(names) > 1


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


# Without ztnode's C module the identity hash runs in Python, holding the interpreter, and a
# node validates identities in a forked worker process: these tests make the root run so.
FORKED_WORKER = {"ZTNODE_NO_ACCEL": "1"}


def test_a_killed_node_takes_its_validation_worker_with_it(tmp_path: Path) -> None:
    """SIGKILL leaves no process behind: the identity-validation worker (forked when the
    root validated the member's identity) ends with its parent, although the parent's event
    loop had taken over SIGTERM before the fork."""
    from tests.helpers.processes import wait_for, world

    with world(tmp_path, ctl_env=FORKED_WORKER) as (ctl, _member, _planet):
        pid = ctl.proc.pid
        workers = _children(pid)
        assert workers, "the root validated no identity in a worker"
        os.kill(pid, signal.SIGKILL)
        ctl.proc.wait(timeout=10)
        wait_for(
            lambda: not any(Path(f"/proc/{w}").exists() for w in workers), 10, "the workers to end"
        )


@pytest.mark.parametrize("forked", [True, False], ids=["forked-worker", "thread-worker"])
def test_ctrl_c_to_the_process_group_stops_cleanly_and_quietly(
    tmp_path: Path, forked: bool
) -> None:
    """A terminal's Ctrl-C reaches the node and its identity-validation worker alike: the node
    stops cleanly (exit 0, state saved) and nothing prints a traceback. With the C module the
    worker is a thread of the node and there is no child process."""
    from tests.helpers.processes import (
        CTL_ID,
        MEMBER_ID,
        free_udp_port,
        node,
        online,
        wait_for,
        write_planet,
    )

    port = free_udp_port()
    planet = tmp_path / "planet"
    write_planet(planet, CTL_ID, port)
    env = FORKED_WORKER if forked else None
    with node(
        tmp_path / "ctl", planet, CTL_ID, port, controller=True, new_session=True, env=env
    ) as ctl:
        with node(tmp_path / "member", planet, MEMBER_ID) as member:
            wait_for(lambda: online(member), 15, "the member to come online")
        if forked:
            assert _children(ctl.proc.pid), "the root validated no identity in a worker"
        else:
            assert not _children(ctl.proc.pid), "a worker process although the hash is in C"
        os.killpg(ctl.proc.pid, signal.SIGINT)
        assert ctl.proc.wait(timeout=20) == 0
    text = ctl.log.read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert "stopped; state saved" in text
