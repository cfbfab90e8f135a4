"""The ``ztnode identity`` commands, run as a user would (a real subprocess) and in-process."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.data import load_vectors
from ztnode.cli import main
from ztnode.identity import Identity

pytestmark = pytest.mark.e2e  # starts processes or uses real sockets (loopback only)

KNOWN_GOOD = load_vectors()["identities"]["known_good"][0]["identity"]
KNOWN_BAD = load_vectors()["identities"]["known_bad"][0]["identity"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ztnode.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_new_prints_a_valid_secret_identity() -> None:
    r = run("identity", "new")
    assert r.returncode == 0, r.stderr
    ident = Identity.from_string(r.stdout.strip())
    assert ident.has_private
    assert ident.validate()


def test_new_out_writes_0600_secret_and_public(tmp_path: Path) -> None:
    secret, public = tmp_path / "identity.secret", tmp_path / "identity.public"
    assert main(["identity", "new", "--out", str(secret), "--public-out", str(public)]) == 0
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    s = Identity.from_string(secret.read_text().strip())
    p = Identity.from_string(public.read_text().strip())
    assert s.has_private and not p.has_private
    assert s == p
    # Refuses to overwrite without --force, and the old secret survives.
    before = secret.read_bytes()
    assert main(["identity", "new", "--out", str(secret)]) == 2
    assert secret.read_bytes() == before


def test_public_from_file_and_string(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "id.secret"
    f.write_text(KNOWN_GOOD + "\n")
    assert main(["identity", "public", str(f)]) == 0
    out_file = capsys.readouterr().out.strip()
    assert main(["identity", "public", KNOWN_GOOD]) == 0
    out_str = capsys.readouterr().out.strip()
    assert out_file == out_str == KNOWN_GOOD.rsplit(":", 1)[0]


def test_validate_exit_codes(tmp_path: Path) -> None:
    assert run("identity", "validate", KNOWN_GOOD).returncode == 0
    bad = run("identity", "validate", KNOWN_BAD)
    assert bad.returncode == 1
    assert "INVALID" in bad.stdout
    f = tmp_path / "good.public"
    f.write_text(KNOWN_GOOD.rsplit(":", 1)[0])
    assert main(["identity", "validate", "-q", str(f)]) == 0


@pytest.mark.parametrize(
    "arg",
    ["", "nonsense", "8e4df28b72:1:00", "ffffffffff:0:" + "00" * 64, "/no/such/file"],
)
def test_bad_input_is_a_usage_error(arg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["identity", "validate", arg]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ztnode: ")
    assert "Traceback" not in err


def test_secret_never_printed_by_public_or_validate(capsys: pytest.CaptureFixture[str]) -> None:
    secret_hex = KNOWN_GOOD.rsplit(":", 1)[1]
    main(["identity", "public", KNOWN_GOOD])
    main(["identity", "validate", KNOWN_GOOD])
    captured = capsys.readouterr()
    assert secret_hex not in captured.out + captured.err


def test_no_command_prints_help() -> None:
    r = run()
    assert r.returncode == 2
    assert "identity" in r.stderr
    assert run("--version").stdout.startswith("ztnode ")


def test_get_property_as_zerotier_cli_prints_it() -> None:
    from ztnode.cli.local import get_property

    net = {
        "name": "office", "status": "OK", "mtu": 2800, "bridge": False, "routes": [],
        "assignedAddresses": ["10.1.2.3/24", "fd00::1/88", "fc12:3456:78ab:cdef::1/40"],
    }  # fmt: skip
    assert get_property(net, "name") == "office"
    assert get_property(net, "mtu") == "2800" and get_property(net, "bridge") == "false"
    assert get_property(net, "routes") == "[]"
    assert get_property(net, "missing") is None
    assert get_property(net, "ip") == "10.1.2.3\nfd00::1\nfc12:3456:78ab:cdef::1"
    assert get_property(net, "ip4") == "10.1.2.3"
    assert get_property(net, "ip6") == "fd00::1\nfc12:3456:78ab:cdef::1"
    assert get_property(net, "ip6plane") == "fc12:3456:78ab:cdef::1"
    assert get_property(net, "ip6prefix") == "fc12:3456:78ab:cdef::1"[:24]


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["info"], ["info"]),
        (
            ["-D/h", "-p9993", "-j", "info"],
            ["info", "--home", "/h", "--api-port", "9993", "--json"],
        ),
        (
            ["-q", "-H10.0.0.5", "-Ttok", "listnetworks"],
            ["listnetworks", "--host", "10.0.0.5", "--token", "tok"],
        ),
        (["-j", "/status"], ["get-path", "--json", "/status"]),
        (["/peer/89e92ceee5"], ["get-path", "/peer/89e92ceee5"]),
        (["join", "-p9993", "8056c2e21c000001"], ["join", "-p9993", "8056c2e21c000001"]),
        (["-x", "info"], ["-x", "info"]),  # not a switch of zerotier-cli's: the parser says so
        (["-D/h"], ["-D/h"]),
    ],
)
def test_zerotier_cli_switches_become_ours(argv: list[str], want: list[str]) -> None:
    from ztnode.cli.main import zerotier_cli_argv

    assert zerotier_cli_argv(argv) == want
