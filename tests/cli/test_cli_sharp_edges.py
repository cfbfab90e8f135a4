"""The command line's edges as a new user meets them: each mistake is one clear line on stderr
with the documented exit code, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def ztnode(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ztnode.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def test_identity_new_makes_the_folder_it_is_asked_to_write_in(tmp_path: Path) -> None:
    r = ztnode("identity", "new", "--out", "root/identity.secret", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "root" / "identity.secret").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("world", "make", "--id", "1", "--root", "missing.secret=10.0.0.1/9993",
             "--signing-key", "k", "--out", "p"),
            "root 'missing.secret': not an identity string, and no readable file",
        ),
        (("node", "--home", "h", "--port", "99999"), "port 99999 is out of range"),
        (("node", "--home", "h", "--api-port", "-1"), "port -1 is out of range"),
        (("info", "--home", "/nonexistent/zt"), "/nonexistent/zt does not exist"),
        (("info", "--home", "."), "no node runs with home ."),
    ],
)  # fmt: skip
def test_mistakes_are_one_line_not_a_traceback(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    r = ztnode(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
