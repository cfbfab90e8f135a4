"""``ztnode demo``, run exactly as the README's first line says, and ``--keep``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # starts processes or uses real sockets (loopback only)

README = Path(__file__).resolve().parents[1] / "README.md"
HEX10 = r"[0-9a-f]{10}"


def readme_demo_command() -> list[str]:
    """The command after ``&&`` on the README's first command line."""
    for line in README.read_text().splitlines():
        if line.startswith("pip install") and "ztnode demo" in line:
            cmd = line.split("#", 1)[0].split("&&", 1)[1].strip()
            return cmd.split()
    raise AssertionError("README.md has no 'pip install ... && ztnode demo' line")


def test_demo_as_the_readme_says() -> None:
    cmd = readme_demo_command()
    assert cmd[:2] == ["ztnode", "demo"]
    t0 = time.monotonic()
    r = subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert elapsed < 30, f"the demo took {elapsed:.1f} s"
    # The first line says which packet path runs: the fast one wherever this process has it.
    from ztnode import accel

    first = out.splitlines()[0]
    assert "fast path: " in first, out
    assert ("fast path: on" in first) == (accel.AVAILABLE and accel.AES_AVAILABLE), first
    # The members table: two members with their IPv4 and rfc4193 addresses.
    members = re.findall(rf"│ ({HEX10}) │ (10\.147\.17\.\d+) +│ (fd[0-9a-f:]+) +│", out)
    assert len(members) == 2, out
    # The links table: both directions, a direct path, pings, echo ok, a throughput figure.
    rows = re.findall(
        rf"│ ({HEX10}) -> ({HEX10}) │ direct 127\.0\.0\.1/\d+ +│ ([\d.]+) ms │ ([\d.]+) ms │ ok +│"
        r" ([\d.]+) MB/s",
        out,
    )
    assert len(rows) == 2, out
    addrs = {m[0] for m in members}
    for src, dst, v4, v6, mbs in rows:
        assert {src, dst} == addrs
        assert 0 < float(v4) < 1000 and 0 < float(v6) < 1000 and float(mbs) > 0


@pytest.mark.slow
def test_demo_keep_serves_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "world"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ztnode.cli", "demo", "--keep", "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        seen = ""
        while "keeps running" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert "keeps running" in seen, seen
        info = subprocess.run(
            [sys.executable, "-m", "ztnode.cli", "info", "-j", "--home", str(home / "member0")],
            check=False, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert info.returncode == 0, info.stderr
        status = json.loads(info.stdout)
        assert status["online"] is True and re.fullmatch(HEX10, status["address"])
        nets = subprocess.run(
            [sys.executable, "-m", "ztnode.cli", "networks", "-j", "--home", str(home / "member0")],
            check=False, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert nets.returncode == 0, nets.stderr
        (net,) = json.loads(nets.stdout)
        assert net["status"] == "OK" and len(net["assignedAddresses"]) == 2
    finally:
        os.kill(proc.pid, signal.SIGINT)
        try:
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
