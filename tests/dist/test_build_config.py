"""The release configuration and the build's two switches, without namespaces or root.

A failed C build (the accelerator, and with it the compiled hot path) is a warning for users
(one line, and ztnode runs on its Python path) and an error for releases
(``ZTNODE_REQUIRE_ACCEL_BUILD=1``, which cibuildwheel's configuration sets),
so a release wheel can never be a slow one by accident.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.dist.test_wheel import _copy_sources

ROOT = Path(__file__).resolve().parents[2]


def test_cibuildwheel_builds_for_both_architectures_and_requires_the_c() -> None:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    cibw = conf["tool"]["cibuildwheel"]
    assert set(cibw["linux"]["archs"]) == {"x86_64", "aarch64"}
    assert "cp3*-manylinux_x86_64" in cibw["build"] and "cp3*-manylinux_aarch64" in cibw["build"]
    assert cibw["environment"]["ZTNODE_REQUIRE_ACCEL_BUILD"] == "1"
    assert "--require-fast" in cibw["test-command"]
    assert conf["project"]["requires-python"] == ">=3.11"


def _build_wheel(tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("build")
    src = _copy_sources(tmp)
    full = {k: v for k, v in os.environ.items() if not k.startswith("ZTNODE_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp / "d"),
         str(src)],
        env=full, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_a_failed_c_build_is_one_warning_line_for_users(tmp_path: Path) -> None:
    r = _build_wheel(tmp_path, CC="false")  # a "compiler" that fails every call
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    lines = re.findall(r"WARNING: ztnode: .*", r.stdout + r.stderr)
    assert len(lines) == 1, lines
    assert "install ztnode from a wheel" in lines[0] and "python3-dev" in lines[0]


@pytest.mark.slow
def test_a_failed_c_build_fails_a_release(tmp_path: Path) -> None:
    r = _build_wheel(tmp_path, CC="false", ZTNODE_REQUIRE_ACCEL_BUILD="1")
    assert r.returncode != 0
    assert not list((tmp_path / "d").glob("*.whl")) if (tmp_path / "d").exists() else True
