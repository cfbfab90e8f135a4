"""``ztnode world make`` / ``world show``: planets and moons, signing keys, updates and rotation.

Most cases call :func:`ztnode.cli.main` in-process (an uncaught exception fails the test just as a
traceback would); a few run the real command line as a subprocess to check exit codes and that
errors are one clean line on stderr.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import load_vectors, test_identities
from ztnode.cli import main
from ztnode.core.topology import Topology
from ztnode.root.worlds import KEY_FILE_SIZE
from ztnode.wire.world import World, WorldType, should_replace

pytestmark = pytest.mark.e2e  # starts processes or uses real sockets (loopback only)

IDS = test_identities()
ROOT0 = IDS[0].to_string()  # public form
ROOT1 = IDS[1].to_string()
KNOWN_BAD = load_vectors()["identities"]["known_bad"][0]["identity"].rsplit(":", 1)[0]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ztnode.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def make(
    capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0
) -> tuple[dict[str, Any] | None, str]:
    """Run ``world make`` in-process; returns (printed JSON or None, stderr)."""
    rc = main(["world", "make", *args])
    out = capsys.readouterr()
    assert rc == expect, out.err
    if expect != 0:
        assert out.err.startswith("ztnode: ") and out.err.count("\n") == 1, out.err
        assert "Traceback" not in out.err
        assert out.out == ""
        return None, out.err
    return json.loads(out.out), out.err


def key_public(path: Path) -> bytes:
    data = path.read_bytes()
    assert len(data) == KEY_FILE_SIZE
    return data[:64]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_make_planet_writes_a_signed_world_and_a_0600_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, out = tmp_path / "planet.key", tmp_path / "planet"
    desc, err = make(
        capsys,
        "--type",
        "planet",
        "--id",
        "0x7a7e57",
        "--timestamp",
        "1000",
        "--root",
        f"{ROOT0}=10.0.0.1/9993,fd00::1/9993",
        "--root",
        f"{ROOT1}=10.0.0.2/443",
        "--signing-key",
        str(key),
        "--out",
        str(out),
    )
    assert "created signing key" in err
    assert mode(key) == 0o600
    world = World.from_bytes(out.read_bytes())
    assert (world.type, world.id, world.timestamp) == (WorldType.PLANET, 0x7A7E57, 1000)
    assert world.update_key == key_public(key)
    assert world.verify_signature(key_public(key))
    assert [r.identity for r in world.roots] == [IDS[0].public(), IDS[1].public()]
    assert not any(r.identity.has_private for r in world.roots)
    assert [str(e) for e in world.roots[0].endpoints] == ["10.0.0.1/9993", "fd00::1/9993"]
    assert desc == {
        "id": "00000000007a7e57",
        "type": "planet",
        "timestamp": 1000,
        "updatesMustBeSignedBy": key_public(key).hex(),
        "signature": world.signature.hex(),
        "roots": [
            {"identity": ROOT0, "stableEndpoints": ["10.0.0.1/9993", "fd00::1/9993"]},
            {"identity": ROOT1, "stableEndpoints": ["10.0.0.2/443"]},
        ],
    }
    # show prints the same description; a node takes the file as its planet.
    assert main(["world", "show", str(out)]) == 0
    assert json.loads(capsys.readouterr().out) == desc
    topo = Topology(IDS[2].address, world)
    assert topo.upstreams == sorted([IDS[0].address, IDS[1].address])
    # The key is reused (not recreated) for the next run, and says nothing about it.
    _, err = make(
        capsys,
        "--id",
        "1",
        "--root",
        f"{ROOT0}=10.0.0.1/9993",
        "--signing-key",
        str(key),
        "--out",
        str(tmp_path / "other"),
    )
    assert "created" not in err
    assert World.from_bytes((tmp_path / "other").read_bytes()).update_key == key_public(key)


def test_make_moon_defaults_its_id_to_the_first_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root_file = tmp_path / "root.public"
    root_file.write_text(ROOT1 + "\n")
    key, out = tmp_path / "moon.key", tmp_path / "moon.moon"
    desc, _ = make(
        capsys,
        "--type",
        "moon",
        "--root",
        f"{root_file}=192.0.2.7/9993",  # an identity may be given as a file
        "--signing-key",
        str(key),
        "--out",
        str(out),
    )
    assert desc is not None and desc["type"] == "moon"
    moon = World.from_bytes(out.read_bytes())
    assert moon.type == WorldType.MOON and moon.id == IDS[1].address
    assert moon.verify_signature(key_public(key))
    assert mode(key) == 0o600
    # A node orbiting nothing takes a moon only when told to (moons.d): always_accept_new.
    topo = Topology(IDS[2].address, World.from_bytes(run_planet(tmp_path, capsys)))
    assert not topo.add_world(moon, always_accept_new=False)
    assert topo.add_world(moon, always_accept_new=True)
    assert IDS[1].address in topo.upstreams


def run_planet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> bytes:
    out = tmp_path / "p"
    make(
        capsys,
        "--id",
        "99",
        "--root",
        f"{ROOT0}=10.0.0.1/9993",
        "--signing-key",
        str(tmp_path / "p.key"),
        "--out",
        str(out),
    )
    return out.read_bytes()


def _planet(
    capsys: pytest.CaptureFixture[str],
    out: Path,
    key: Path,
    ts: int,
    *extra: str,
    expect: int = 0,
) -> tuple[World | None, str]:
    desc, err = make(
        capsys,
        "--id",
        "0x1234",
        "--timestamp",
        str(ts),
        "--root",
        f"{ROOT0}=10.0.0.1/9993",
        "--signing-key",
        str(key),
        "--out",
        str(out),
        *extra,
        expect=expect,
    )
    return (World.from_bytes(out.read_bytes()) if desc is not None else None), err


def test_update_with_previous_needs_the_right_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    k1, k2 = tmp_path / "k1", tmp_path / "k2"
    v1, _ = _planet(capsys, tmp_path / "v1", k1, 1000)
    assert v1 is not None
    # The right key: an accepted update.
    v2, _ = _planet(capsys, tmp_path / "v2", k1, 2000, "--previous", str(tmp_path / "v1"))
    assert v2 is not None and should_replace(v1, v2)
    topo = Topology(IDS[3].address, v1)
    assert topo.add_world(v2, always_accept_new=False)
    # Another key: refused with a clear message, and nothing is written.
    _planet(capsys, tmp_path / "unused", k2, 3000)  # creates k2
    (tmp_path / "v3").write_bytes(b"untouched")
    _, err = _planet(
        capsys, tmp_path / "v3", k2, 3000, "--previous", str(tmp_path / "v2"), expect=2
    )
    assert "signing key is not the one the previous revision names" in err
    assert (tmp_path / "v3").read_bytes() == b"untouched"
    # Not newer than the previous revision: refused too.
    _, err = _planet(
        capsys, tmp_path / "v3", k1, 2000, "--previous", str(tmp_path / "v2"), expect=2
    )
    assert "would not replace" in err
    # A moon cannot update a planet.
    _, err = make(
        capsys,
        "--type",
        "moon",
        "--id",
        "0x1234",
        "--timestamp",
        "5000",
        "--root",
        f"{ROOT0}=10.0.0.1/9993",
        "--signing-key",
        str(k1),
        "--previous",
        str(tmp_path / "v2"),
        "--out",
        str(tmp_path / "v3"),
        expect=2,
    )
    assert "would not replace" in err
    # --previous supplies the id when --id is left out.
    desc, _ = make(
        capsys,
        "--timestamp",
        "2500",
        "--root",
        f"{ROOT0}=10.0.0.1/9993",
        "--signing-key",
        str(k1),
        "--previous",
        str(tmp_path / "v2"),
        "--out",
        str(tmp_path / "v2b"),
    )
    assert desc is not None and desc["id"] == f"{0x1234:016x}"


def test_key_rotation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    v1, _ = _planet(capsys, tmp_path / "v1", old, 1000)
    # Signed by the old key, naming the new one (created now, 0600) for future updates.
    v2, err = _planet(
        capsys,
        tmp_path / "v2",
        old,
        2000,
        "--previous",
        str(tmp_path / "v1"),
        "--next-key",
        str(new),
    )
    assert v1 is not None and v2 is not None
    assert mode(new) == 0o600 and "created" not in err  # only the signing key is announced
    assert v2.update_key == key_public(new) != key_public(old)
    assert v2.verify_signature(key_public(old)) and should_replace(v1, v2)
    # From now on only the new key can sign.
    _, err = _planet(
        capsys, tmp_path / "bad", old, 3000, "--previous", str(tmp_path / "v2"), expect=2
    )
    assert "signing key is not the one" in err and not (tmp_path / "bad").exists()
    v3, _ = _planet(capsys, tmp_path / "v3", new, 3000, "--previous", str(tmp_path / "v2"))
    assert v3 is not None and should_replace(v2, v3)
    topo = Topology(IDS[3].address, v1)
    assert topo.add_world(v2, always_accept_new=False)
    assert topo.add_world(v3, always_accept_new=False)
    assert topo.planet == v3
    stale = World.from_bytes((tmp_path / "v2").read_bytes())
    assert not topo.add_world(stale, always_accept_new=False)


@pytest.mark.parametrize(
    ("root", "words"),
    [
        ("nonsense", "expected IDENTITY=ip/port"),
        (f"{ROOT0}", "expected IDENTITY=ip/port"),
        (f"{ROOT0}=10.0.0.1", "needs a port"),
        (f"{ROOT0}=10.0.0.1/0", "needs a port"),
        (f"{ROOT0}=10.0.0.1/99999", ""),
        (f"{ROOT0}=999.0.0.1/9993", ""),
        ("garbage=10.0.0.1/9993", ""),
        ("/no/such/file=10.0.0.1/9993", ""),
        (f"{KNOWN_BAD}=10.0.0.1/9993", "does not validate"),
        (f"{ROOT0}=" + ",".join(f"10.0.0.{i}/9993" for i in range(1, 34)), "at most 32"),
    ],
)
def test_bad_root_specs_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], root: str, words: str
) -> None:
    out = tmp_path / "p"
    _, err = make(
        capsys,
        "--id",
        "1",
        "--root",
        root,
        "--signing-key",
        str(tmp_path / "k"),
        "--out",
        str(out),
        expect=2,
    )
    assert words in err
    assert not out.exists()


def test_bad_world_shapes_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "k"
    r0 = f"{ROOT0}=10.0.0.1/9993"
    five = [x for i in range(5) for x in ("--root", f"{IDS[i].to_string()}=10.0.0.{i + 1}/1")]
    cases: list[tuple[list[str], str]] = [
        (["--id", "1", "--root", r0, "--root", r0], "listed twice"),
        (["--id", "1", *five], "1 to 4 roots"),
        (["--root", r0], "needs --id"),  # a planet without --id
        (["--id", "zz", "--root", r0], "zz"),
        (["--id", str(2**64), "--root", r0], "64-bit"),
    ]
    for args, words in cases:
        _, err = make(
            capsys, *args, "--signing-key", str(key), "--out", str(tmp_path / "p"), expect=2
        )
        assert words in err
    # Unusable files: a key of the wrong size, a previous that is not a world, an unwritable out.
    (tmp_path / "short.key").write_bytes(b"x" * 10)
    (tmp_path / "junk").write_bytes(b"\x01junk")
    for extra, words in (
        (["--signing-key", str(tmp_path / "short.key"), "--out", str(tmp_path / "p")], "128"),
        (
            [
                "--signing-key",
                str(key),
                "--previous",
                str(tmp_path / "junk"),
                "--out",
                str(tmp_path / "p2"),
            ],
            "",
        ),
        (["--signing-key", str(key), "--out", str(tmp_path / "no" / "such" / "dir")], "no"),
        (["--signing-key", str(key), "--out", str(tmp_path)], ""),
    ):
        _, err = make(capsys, "--id", "1", "--root", r0, *extra, expect=2)
        assert words in err
    assert not (tmp_path / "p").exists()


def test_show_refuses_what_is_not_a_world(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "junk").write_bytes(b"\x01" + bytes(20))
    for target in (tmp_path / "junk", tmp_path / "missing", tmp_path):
        assert main(["world", "show", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ztnode: ") and "Traceback" not in err


def test_command_line_round_trip_and_clean_errors(tmp_path: Path) -> None:
    key, out = tmp_path / "k", tmp_path / "planet"
    r = run(
        "world", "make", "--id", "42", "--root", f"{ROOT0}=10.0.0.1/9993",
        "--signing-key", str(key), "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    shown = run("world", "show", str(out))
    assert shown.returncode == 0 and json.loads(shown.stdout) == json.loads(r.stdout)
    for bad in (
        ["world", "make", "--id", "1", "--root", "x", "--signing-key", str(key), "--out",
         str(tmp_path / "p")],
        ["world", "make", "--id", "1", "--root", f"{ROOT0}=1.2.3.4/1", "--signing-key",
         str(key), "--out", str(tmp_path / "missing" / "p")],
        ["world", "show", str(tmp_path / "missing")],
    ):  # fmt: skip
        r = run(*bad)
        assert r.returncode == 2
        assert r.stderr.startswith("ztnode: ") and "Traceback" not in r.stderr, r.stderr
    r = run("world", "make", "--id", "1")  # argparse: required options missing
    assert r.returncode == 2 and "--root" in r.stderr
