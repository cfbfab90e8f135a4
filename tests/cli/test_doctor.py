"""``ztnode doctor`` and the fast-path report it shares with the log, ``info`` and the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ztnode import _compiled, accel
from ztnode.cli import doctor, main
from ztnode.transport import fastpath

ROOT = Path(__file__).resolve().parents[2]
needs_accel = pytest.mark.skipif(not accel.AVAILABLE, reason=f"no accelerator: {accel.REASON}")
# The whole fast path: the accelerator and the compiled hot path (CI requires both).
needs_fast = pytest.mark.skipif(
    not (accel.AVAILABLE and _compiled.status().compiled),
    reason=f"not the fast path here: {accel.REASON or _compiled.status().reason}",
)


def _doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    rc = main(["doctor", "--json", *args])
    out = capsys.readouterr().out
    report: dict[str, object] = json.loads(out)
    return rc, report


@needs_fast
def test_quick_doctor_passes_and_checks_every_cipher(capsys: pytest.CaptureFixture[str]) -> None:
    rc, report = _doctor(capsys, "--quick", "--require-fast")
    assert rc == 0 and report["ok"] is True
    names = [c["name"] for c in report["checks"]]  # type: ignore[attr-defined]
    expected = [f"cipher {c}: C armor matches Python" for c in (0, 1, 3)]
    assert names == (expected if accel.AES_AVAILABLE else expected[:2])
    assert report["throughputMBs"] is None
    fast = report["fastPath"]
    assert isinstance(fast, dict) and fast["fast"] is True and fast["hint"] is None


@needs_accel
def test_doctor_fails_when_c_and_python_disagree(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The self-test can fail: a C armor that flips one byte of the tag is caught."""
    # The packet codec keeps the accelerator's armor it found at import: imported first here, so
    # it never keeps the broken one below (the nodes of later tests armor with it).
    import ztnode.wire.packet  # noqa: F401

    real = accel.armor

    def broken(packet: bytearray, key: object, cipher: int) -> bool:
        done = real(packet, key, cipher)  # type: ignore[arg-type]
        packet[20] ^= 1
        return done

    monkeypatch.setattr(accel, "armor", broken)
    rc, report = _doctor(capsys, "--quick")
    assert rc == 1 and report["ok"] is False
    failed = [c for c in report["checks"] if not c["ok"]]  # type: ignore[attr-defined]
    assert failed and all("64 of 64 differ" in c["detail"] for c in failed)


@pytest.mark.e2e
def test_doctor_transfer_runs_real_traffic(capsys: pytest.CaptureFixture[str]) -> None:
    rc, report = _doctor(capsys, "--megabytes", "4")
    assert rc == 0, report
    end = [c for c in report["checks"] if c["name"] == "end to end"]  # type: ignore[attr-defined]
    assert len(end) == 1 and end[0]["ok"] and "TCP echo ok" in end[0]["detail"]
    rate = report["throughputMBs"]
    assert isinstance(rate, float) and rate > 0


def test_text_report_names_every_part(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["doctor", "--quick"])
    out = capsys.readouterr().out
    assert rc == 0
    for part in fastpath.report().parts:
        assert part.name in out
    assert out.rstrip().endswith("all checks passed")


def _subprocess_report(**env: str) -> dict[str, object]:
    code = (
        "import json; from ztnode.transport import fastpath; "
        "print(json.dumps(fastpath.report().as_dict()))"
    )
    full = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **env)
    r = subprocess.run(
        [sys.executable, "-c", code],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data: dict[str, object] = json.loads(r.stdout.strip().splitlines()[-1])
    return data


def test_disabled_accelerator_is_reported_off_with_the_reason() -> None:
    report = _subprocess_report(ZTNODE_NO_ACCEL="1")
    assert report["fast"] is False
    summary = str(report["summary"])
    assert summary.startswith("fast path: OFF (C accelerator off: disabled by ZTNODE_NO_ACCEL")
    assert report["hint"] == "unset that variable to use it"


def test_missing_accelerator_says_what_to_install() -> None:
    """An install without the compiled module (a source build on a machine with no compiler)."""
    report = _subprocess_report(ZTNODE_ACCEL_PATH="/nonexistent/_zt_accel.so")
    assert report["fast"] is False
    assert report["hint"] == fastpath.INSTALL_HINT
    assert "install ztnode from a wheel" in str(report["summary"])


@needs_accel
def test_require_fast_fails_on_the_slow_path(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = fastpath.FastPath((fastpath.Part("C accelerator", False, "not built"),), "hint")
    monkeypatch.setattr(fastpath, "report", lambda: slow)
    rc, report = _doctor(capsys, "--quick", "--require-fast")
    assert rc == doctor.EXIT_FAILED and report["ok"] is False
    rc, report = _doctor(capsys, "--quick")
    assert rc == 0 and report["ok"] is True


def test_a_starting_node_logs_the_fast_path_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node's log says which packet path runs, once per process however many nodes start
    (a warning when it is the slow one)."""
    import asyncio
    import logging

    from tests.helpers.data import test_identities
    from ztnode.testing.local import LocalZtWorld

    monkeypatch.setattr(fastpath, "_announced", [])

    async def go() -> None:
        async with LocalZtWorld(tmp_path, members=1, identities=test_identities()[:2]):
            pass

    with caplog.at_level(logging.INFO, logger="ztnode.service"):
        asyncio.run(go())
    lines = [r for r in caplog.records if r.getMessage().startswith("fast path: ")]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].getMessage() == fastpath.report().summary()
    expected = logging.INFO if fastpath.report().fast else logging.WARNING
    assert lines[0].levelno == expected


def test_the_hot_path_from_source_is_reported_off_with_the_reason() -> None:
    report = _subprocess_report(ZTNODE_PURE="1")
    assert report["fast"] is False
    parts = {p["name"]: p for p in report["parts"]}  # type: ignore[attr-defined]
    assert parts["compiled hot path"]["on"] is False
    assert parts["compiled hot path"]["detail"] == "ZTNODE_PURE is set"
    if accel.AVAILABLE:
        assert report["hint"] == "unset that variable to use it"
