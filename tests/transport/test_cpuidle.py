"""The idle policy read from sysfs (trees made here), and the doctor's line about it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ztnode.cli import doctor
from ztnode.transport import cpuidle, eventloop


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


IDLE = "devices/system/cpu/cpuidle"
POLL = "module/haltpoll/parameters/guest_halt_poll_ns"


@pytest.mark.parametrize(
    ("files", "expected", "summary", "at_once"),
    [
        (
            {f"{IDLE}/current_driver": "haltpoll\n", f"{IDLE}/current_governor_ro": "haltpoll\n",
             POLL: "0\n"},
            cpuidle.IdlePolicy("haltpoll", "haltpoll", 0),
            "cpuidle haltpoll, guest halt polling 0 us",
            True,
        ),
        (
            {f"{IDLE}/current_driver": "haltpoll", f"{IDLE}/current_governor": "haltpoll",
             POLL: "200000"},
            cpuidle.IdlePolicy("haltpoll", "haltpoll", 200),
            "cpuidle haltpoll, guest halt polling 200 us",
            False,
        ),
        (
            {f"{IDLE}/current_driver": "intel_idle", f"{IDLE}/current_governor": "menu",
             POLL: "0"},  # the setting belongs to haltpoll: ignored under another driver
            cpuidle.IdlePolicy("intel_idle", "menu", None),
            "cpuidle intel_idle (menu)",
            False,
        ),
        (
            {f"{IDLE}/current_driver": "haltpoll", POLL: "lots"},
            cpuidle.IdlePolicy("haltpoll", None, None),
            "cpuidle haltpoll",
            False,
        ),
        ({}, cpuidle.IdlePolicy(None, None, None), "cpuidle unknown", False),
    ],
)  # fmt: skip
def test_read_reports_what_sysfs_says_and_never_raises(
    tmp_path: Path,
    files: dict[str, str],
    expected: cpuidle.IdlePolicy,
    summary: str,
    at_once: bool,
) -> None:
    policy = cpuidle.read(_tree(tmp_path, files))
    assert policy == expected
    assert policy.summary() == summary
    assert policy.halts_at_once is at_once
    assert policy.as_dict()["haltsAtOnce"] is at_once


def test_an_unreadable_file_is_unknown_not_an_error(tmp_path: Path) -> None:
    (tmp_path / IDLE / "current_driver").mkdir(parents=True)  # a directory where a file was
    assert cpuidle.read(tmp_path).driver is None


def test_the_doctor_names_the_remedy_only_where_cpus_halt_at_once() -> None:
    halting = cpuidle.IdlePolicy("haltpoll", "haltpoll", 0)
    plain = eventloop.LoopChoice("asyncio", None, "the default")
    line = doctor._idle_line(halting, plain)
    assert line.startswith("  [--] idle CPUs: cpuidle haltpoll, guest halt polling 0 us")
    assert "--busy-poll" in line and "guest_halt_poll_ns" in line
    busy = eventloop.LoopChoice("asyncio", None, "asked", busy_poll_us=200)
    assert doctor._idle_line(halting, busy).startswith("  [ok] idle CPUs:")
    polling = cpuidle.IdlePolicy("haltpoll", "haltpoll", 200)
    assert doctor._idle_line(polling, plain) == (
        "  [ok] idle CPUs: cpuidle haltpoll, guest halt polling 200 us"
    )


def test_the_doctor_reports_this_machines_policy(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from ztnode.cli import main

    main(["doctor", "--json", "--quick"])
    report = json.loads(capsys.readouterr().out)
    assert report["cpuIdle"] == cpuidle.read().as_dict()
    main(["doctor", "--quick"])
    assert "idle CPUs: " + cpuidle.read().summary() in capsys.readouterr().out
