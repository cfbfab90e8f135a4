"""Every snippet of docs/api.md marked ``# runs as is`` runs: each in a fresh folder and a
process of its own (all side by side), and must exit 0 within the timeout. Snippets start
local worlds of their own (loopback only)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
MARK = "# runs as is"
TIMEOUT = 180.0


def snippets() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    return [b for b in blocks if b.startswith(MARK)]


def test_the_docs_have_runnable_snippets() -> None:
    assert len(snippets()) >= 5


def test_every_runnable_snippet_runs(tmp_path: Path) -> None:
    procs = []
    for i, code in enumerate(snippets()):
        cwd = tmp_path / f"snippet{i}"
        cwd.mkdir()
        log = (cwd / "out.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )  # fmt: skip
        procs.append((proc, log, cwd, code))
    deadline = time.monotonic() + TIMEOUT
    failures = []
    try:
        for proc, log, cwd, code in procs:
            try:
                rc = proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                rc = None
            log.close()
            if rc != 0:
                first = code.splitlines()[1:4]
                failures.append(f"exit {rc} for {first}:\n{(cwd / 'out.log').read_text()}")
    finally:
        for proc, *_ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert not failures, "\n\n".join(failures)
