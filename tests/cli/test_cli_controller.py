"""``ztnode controller network|member ...`` against a controller API.

Most tests serve the API in-process (a JsonApi with the controller routes on 127.0.0.1, in a
background thread, with ``ztnode.port`` and ``authtoken.secret`` in a temporary home) and call
``ztnode.cli.main``. One test runs a real ``ztnode node --controller`` process: the node joins its
own network, is authorised through the CLI, sees a rename at once, and after a restart still
finds everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from ztnode.cli import main
from ztnode.controller.configbuild import build_config
from ztnode.controller.controller import Controller
from ztnode.controller.store import ControllerStore
from ztnode.crypto import c25519_generate
from ztnode.identity import Identity
from ztnode.testing.world import seeded_random_bytes
from ztnode.transport.controllerapi import register_controller_routes
from ztnode.transport.httpapi import JsonApi
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import Root, World, WorldType

pytestmark = pytest.mark.e2e  # starts processes or uses real sockets (loopback only)

IDS = test_identities()
CTL = IDS[0]
CTL_HEX = f"{CTL.address:010x}"
M1, M2 = f"{IDS[1].address:010x}", f"{IDS[2].address:010x}"
TOKEN = "cli-test-token"
START_TIMEOUT = 30.0


class Server:
    """The controller API on 127.0.0.1 in a thread with its own event loop."""

    def __init__(self, home: Path) -> None:
        self.ctl = Controller(
            CTL,
            ControllerStore(home / "controller.db"),
            random_bytes=seeded_random_bytes(21),
            config_builder=build_config,
        )
        self.api = JsonApi(TOKEN)
        register_controller_routes(self.api, self.ctl, lambda: int(time.time() * 1000), self.noop)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(
            self.api.start("127.0.0.1", 0), self.loop
        ).result(10)
        (home / "ztnode.port").write_text(f"{self.port}\n")
        (home / "authtoken.secret").write_text(TOKEN)

    def noop(self) -> None:
        pass

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.api.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.ctl.close()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    server = Server(tmp_path)
    try:
        yield tmp_path
    finally:
        server.close()


def run(capsys: pytest.CaptureFixture[str], home: Path, *argv: str) -> tuple[int, str, str]:
    rc = main(["controller", *argv, "--home", str(home)])
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys: pytest.CaptureFixture[str], home: Path, *argv: str) -> Any:
    rc, out, err = run(capsys, home, *argv, "-j")
    assert rc == 0, err
    return json.loads(out)


def test_create_list_show_delete(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(
        capsys, home, "network", "create", "--name", "lab",
        "--v4-pool", "10.5.0.1-10.5.0.254", "--route", "10.5.0.0/24", "--v6", "rfc4193,6plane",
    )  # fmt: skip
    assert rc == 0, err
    nwid = out.strip()
    assert len(nwid) == 16 and nwid.startswith(CTL_HEX)

    net = run_json(capsys, home, "network", "show", nwid)
    assert net["name"] == "lab" and net["private"] is True
    assert net["routes"] == [{"target": "10.5.0.0/24", "via": None}]
    assert net["ipAssignmentPools"] == [{"ipRangeStart": "10.5.0.1", "ipRangeEnd": "10.5.0.254"}]
    assert net["v4AssignMode"] == {"zt": True}
    assert net["v6AssignMode"] == {"rfc4193": True, "zt": False, "6plane": True}
    rc, out, _ = run(capsys, home, "network", "show", nwid)
    assert rc == 0 and json.loads(out) == net  # show prints JSON either way

    pub = run_json(capsys, home, "network", "create", "--public")
    assert pub["private"] is False and pub["name"] == ""

    rc, out, _ = run(capsys, home, "network", "list")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("<nwid>")
    assert any(line.startswith(nwid) and "PRIVATE" in line and "lab" in line for line in lines)
    assert any(line.startswith(pub["id"]) and "PUBLIC" in line for line in lines)
    listed = run_json(capsys, home, "network", "list")
    assert {n["id"] for n in listed} == {nwid, pub["id"]}

    rc, out, _ = run(capsys, home, "network", "delete", pub["id"])
    assert rc == 0 and pub["id"] in out
    assert {n["id"] for n in run_json(capsys, home, "network", "list")} == {nwid}


def test_members(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nwid = run_json(capsys, home, "network", "create")["id"]
    rc, out, err = run(capsys, home, "member", "authorize", nwid, M1)
    assert rc == 0, err
    assert out.strip() == f"{M1} authorized"
    m = run_json(capsys, home, "member", "set", nwid, M2, "name=laptop", 'tags=[[1,2]]',
                 "activeBridge=true", 'ipAssignments=["10.5.0.9"]')  # fmt: skip
    assert m["name"] == "laptop" and m["tags"] == [[1, 2]] and m["activeBridge"] is True
    assert m["ipAssignments"] == ["10.5.0.9"] and m["authorized"] is False
    rc, out, _ = run(capsys, home, "member", "set", nwid, M2, 'name="quoted"')
    assert rc == 0 and json.loads(out)["name"] == "quoted"

    rc, out, _ = run(capsys, home, "member", "list", nwid)
    assert rc == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "yes" in rows[M1] and "no" in rows[M2] and "10.5.0.9" in rows[M2]
    members = run_json(capsys, home, "member", "list", nwid)
    assert {x["id"] for x in members} == {M1, M2}

    d = run_json(capsys, home, "member", "deauthorize", nwid, M1)
    assert d["authorized"] is False and d["lastDeauthorizedTime"] > 0


def test_rules_script(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nwid = run_json(capsys, home, "network", "create")["id"]
    script = home / "rules.zt"
    script.write_text(
        "tag dept id 1000 enum 1 eng enum 2 ops default eng;\n"
        "cap ssh id 7 accept ipprotocol tcp dport 22; ;\n"
        "drop not tdiff dept 0;\n"
        "accept;\n"
    )
    rc, out, err = run(capsys, home, "network", "rules", nwid, str(script))
    assert rc == 0, err
    assert "3 rules, 1 capabilities, 1 tags" in out
    net = run_json(capsys, home, "network", "show", nwid)
    assert net["rules"][0]["type"] == "MATCH_TAGS_DIFFERENCE" and net["rules"][0]["not"] is True
    assert net["capabilities"][0]["id"] == 7 and net["tags"] == [{"id": 1000, "default": 1}]
    assert net["rulesSource"] == script.read_text()
    # An error names the file, line and column, exits 2, and changes nothing.
    script.write_text("drop dport 99999;\naccept;\n")
    rc, out, err = run(capsys, home, "network", "rules", nwid, str(script))
    assert rc == 2 and "line 1 column 11: Invalid numeric range." in err
    assert run_json(capsys, home, "network", "show", nwid)["rules"] == net["rules"]
    rc = main(["controller", "network", "rules", nwid, str(script), "--check"])
    assert rc == 2


def test_errors_exit_2_one_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nwid = run_json(capsys, home, "network", "create")["id"]
    missing = f"{CTL_HEX}000999"
    for argv, needle in (
        (("network", "show", missing), "404"),
        (("network", "delete", missing), "404"),
        (("member", "list", missing), "404"),
        (("member", "authorize", missing, M1), "404"),
        (("member", "set", nwid, M1, "authorized=maybe"), "authorized"),
        (("member", "set", nwid, M1, "mtu"), "KEY=VALUE"),
        (("member", "set", nwid, M1, "ipAssignments=[1]"), "400"),
        (("network", "create", "--v4-pool", "10.0.0.1-10.0.0.9"), "--route"),
        (("network", "create", "--v4-pool", "10.0.0.1", "--route", "10.0.0.0/24"), "START-END"),
        (("network", "create", "--v4-pool", "1-2", "--route", "10.0.0.0/24"), "--v4-pool"),
        (("network", "create", "--v6", "bogus"), "bogus"),
        (("network", "create", "--route", "10.0.0.0"), "prefix"),
    ):
        rc, out, err = run(capsys, home, *argv)
        assert rc == 2, (argv, out, err)
        assert needle in err, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert [n["id"] for n in run_json(capsys, home, "network", "list")] == [nwid]


def test_bad_arguments_exit_2(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["controller", "network", "show", "xyz"],
        ["controller", "member", "authorize", "0123456789abcdef", "12"],
        ["controller", "network", "create", "--private", "--public"],
    ):
        with pytest.raises(SystemExit) as e:
            main([*argv, "--home", str(home)])
        assert e.value.code == 2
    capsys.readouterr()
    assert main(["controller"]) == 2
    assert main(["controller", "network"]) == 2


def test_bad_token_and_no_server(
    home: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["controller", "network", "list", "--home", str(home), "--token", "wrong"])
    err = capsys.readouterr().err
    assert rc == 2 and "401" in err
    empty = tmp_path_factory.mktemp("nothing")
    rc = main(["controller", "network", "list", "--home", str(empty), "--api-port", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot reach" in err


# --- a real node ------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ztnode.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_planet(path: Path, root: Identity) -> None:
    pub, priv = c25519_generate()
    ep = InetAddress.parse("127.0.0.1/1")  # nobody there: the node stays offline, and that is fine
    planet = World.make(WorldType.PLANET, 0xC11, 1_000, pub, (Root(root.public(), (ep,)),), priv)
    path.write_bytes(planet.to_bytes())


@contextlib.contextmanager
def controller_node(home: Path, planet: Path) -> Iterator[subprocess.Popen[bytes]]:
    home.mkdir(exist_ok=True)
    (home / "ztnode.port").unlink(missing_ok=True)
    err = home.parent / "node.err"
    with err.open("ab") as fe:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "ztnode.cli", "node", "--home", str(home), "--port", "0",
                "--bind", "127.0.0.1", "--allow-loopback", "--api-port", "0",
                "--planet", str(planet), "--controller",
            ],
            stdout=subprocess.DEVNULL,
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
                pytest.fail(f"node did not start in {START_TIMEOUT} s: {err.read_text()}")
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def own_network(home: Path, nwid: str) -> dict[str, Any]:
    r = cli("networks", "--home", str(home), "-j")
    assert r.returncode == 0, r.stderr
    nets = {n["nwid"]: n for n in json.loads(r.stdout)}
    return dict(nets[nwid])


def wait_for(cond: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.slow
def test_real_node_controller(tmp_path: Path) -> None:
    planet = tmp_path / "planet"
    write_planet(planet, IDS[7])
    home = tmp_path / "home"
    h = ("--home", str(home))
    with controller_node(home, planet) as proc:
        me = Identity.from_string((home / "identity.public").read_text().strip())
        me_hex = f"{me.address:010x}"
        r = cli("controller", "network", "create", "--name", "selfnet",
                "--v4-pool", "10.77.0.1-10.77.0.9", "--route", "10.77.0.0/24", *h)  # fmt: skip
        assert r.returncode == 0, r.stderr
        nwid = r.stdout.strip()
        assert nwid.startswith(me_hex)

        # The node joins its own network: served in-process, denied until authorised.
        assert cli("join", nwid, *h).returncode == 0
        wait_for(lambda: own_network(home, nwid)["status"] == "ACCESS_DENIED", "ACCESS_DENIED")
        r = cli("controller", "member", "authorize", nwid, me_hex, *h)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: own_network(home, nwid)["status"] == "OK", "authorisation to apply")
        net = own_network(home, nwid)
        assert net["name"] == "selfnet"
        assert [a.rsplit(".", 1)[0] for a in net["assignedAddresses"]] == ["10.77.0"]

        # A change made by any API client reaches the member at once, not at its next 60 s
        # refresh (here: a plain urllib POST, as an existing tool would send it).
        port = int((home / "ztnode.port").read_text())
        token = (home / "authtoken.secret").read_text().strip()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/controller/network/{nwid}",
            data=json.dumps({"name": "renamed"}).encode(),
            headers={"X-ZT1-Auth": token, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["name"] == "renamed"
        wait_for(lambda: own_network(home, nwid)["name"] == "renamed", "the rename", 5.0)

        members_before = json.loads(cli("controller", "member", "list", nwid, "-j", *h).stdout)
        networks_before = json.loads(cli("controller", "network", "list", "-j", *h).stdout)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=20) == 0

    # Restart: nothing lost, and the member is served again from the stored records.
    with controller_node(home, planet):
        assert json.loads(cli("controller", "network", "list", "-j", *h).stdout) == networks_before
        members_after = json.loads(cli("controller", "member", "list", nwid, "-j", *h).stdout)
        # The node's first real request as an authorised member may have recorded its version
        # (the authorisation itself reached it by a push), which bumps the member's revision.
        volatile = {"vMajor", "vMinor", "vRev", "vProto", "revision"}
        volatile |= {"lastSeen", "online", "physicalAddress"}  # what this instance saw of it
        assert [{k: v for k, v in m.items() if k not in volatile} for m in members_after] == [
            {k: v for k, v in m.items() if k not in volatile} for m in members_before
        ]
        wait_for(lambda: own_network(home, nwid)["status"] == "OK", "config after restart", 90.0)
        assert own_network(home, nwid)["name"] == "renamed"
        wait_for(
            lambda: (
                json.loads(cli("controller", "member", "list", nwid, "-j", *h).stdout)[0]["vMajor"]
                == 1
            ),
            "the member's version from its request",
        )


def test_what_the_console_does_the_cli_does(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The console's forms each have a command: network settings, pools, routes and DNS with
    ``network set``, a member removed with ``member delete`` (rules: ``network rules``)."""
    nwid = run_json(capsys, home, "network", "create")["id"]
    net = run_json(
        capsys, home, "network", "set", nwid, "name=office", "private=false",
        'ipAssignmentPools=[{"ipRangeStart":"10.9.0.1","ipRangeEnd":"10.9.0.9"}]',
        'routes=[{"target":"10.9.0.0/24","via":null}]', 'v4AssignMode={"zt":true}',
        'dns={"domain":"office.zt","servers":["10.9.0.1"]}', "multicastLimit=8",
    )  # fmt: skip
    assert net["name"] == "office" and net["private"] is False
    assert net["routes"] == [{"target": "10.9.0.0/24", "via": None}]
    assert net["dns"] == {"domain": "office.zt", "servers": ["10.9.0.1"]}
    assert net["multicastLimit"] == 8
    rc, _, err = run(capsys, home, "network", "set", nwid, "oops")
    assert rc != 0 and "KEY=VALUE" in err
    run(capsys, home, "member", "authorize", nwid, M1)
    rc, out, _ = run(capsys, home, "member", "delete", nwid, M1)
    assert rc == 0 and f"deleted member {M1}" in out
    assert run_json(capsys, home, "member", "list", nwid) == []
