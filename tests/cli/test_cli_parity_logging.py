"""Structured logging with per-subsystem levels: ``--log-level``, ``ZTNODE_LOG``, JSON lines.

The spec syntax and its precedence, the JSON formatter, that a disabled subsystem never formats
its messages, that no logging call in ztnode formats eagerly (f-strings, ``%`` or ``.format``
in the call: the cost would be paid with logging off), that every logger ztnode has is one the
help names, and ``ztnode node --log-level ... --log-format json`` as a process.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.processes import CTL_ID, write_planet
from ztnode.cli import LOG_SUBSYSTEMS, JsonLogFormatter, configure_logging, parse_log_spec

pytestmark = pytest.mark.e2e  # starts processes or uses real sockets (loopback only)

SRC = Path(__file__).resolve().parents[2] / "src" / "ztnode"
D, INFO, W = logging.DEBUG, logging.INFO, logging.WARNING


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ["ztnode", *LOG_SUBSYSTEMS, "ztnode.bogus"]
    levels = {n: logging.getLogger(n).level for n in names}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for n, lv in levels.items():
            logging.getLogger(n).setLevel(lv)


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("debug", [("ztnode", D)]),
        (
            "info,netstack=debug,ztnode.core=warning",
            [("ztnode", INFO), ("ztnode.netstack", D), ("ztnode.core", W)],
        ),
        (" ztnode.node = INFO , , host=off", [("ztnode.core", INFO), ("ztnode.host", 60)]),
        ("sockets=15", [("ztnode.sockets", 15)]),
        ("", []),
    ],
)
def test_log_spec(spec: str, want: list[tuple[str, int]]) -> None:
    assert parse_log_spec(spec) == want


@pytest.mark.parametrize("spec", ["netstack=loud", "=debug", "verbose"])
def test_bad_log_spec(spec: str) -> None:
    with pytest.raises(ValueError, match=r"level|name"):
        parse_log_spec(spec)


def test_levels_per_subsystem_and_precedence(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZTNODE_LOG", "warning,netstack=debug,core=debug")
    configure_logging("core=error,api=info")
    assert logging.getLogger("ztnode").level == W  # ZTNODE_LOG over the default
    assert logging.getLogger("ztnode.netstack").isEnabledFor(D)
    assert logging.getLogger("ztnode.core").level == logging.ERROR  # --log-level over the env
    assert logging.getLogger("ztnode.api").isEnabledFor(INFO)
    assert not logging.getLogger("ztnode.service").isEnabledFor(INFO)  # inherits ztnode's
    assert logging.getLogger().level == W  # other libraries: unchanged at WARNING
    monkeypatch.setenv("ZTNODE_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="text or json"):
        configure_logging()


def test_disabled_subsystem_never_formats(restore_logging: None) -> None:
    class Costly:
        formatted = 0

        def __str__(self) -> str:
            Costly.formatted += 1
            return "costly"

    configure_logging("info,netstack=debug")
    core, netstack = logging.getLogger("ztnode.core"), logging.getLogger("ztnode.netstack")
    for _ in range(1000):
        core.debug("%s", Costly())
    assert Costly.formatted == 0
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(io.StringIO())
    netstack.debug("%s", Costly())
    assert Costly.formatted == 1


def test_json_lines(restore_logging: None) -> None:
    rec = logging.LogRecord("ztnode.core", W, __file__, 1, "peer %s gone", ("abc",), None)
    rec.peer = "0123456789"
    out = json.loads(JsonLogFormatter().format(rec))
    assert out["level"] == "warning" and out["logger"] == "ztnode.core"
    assert out["msg"] == "peer abc gone" and out["peer"] == "0123456789"
    assert out["ts"].endswith("Z") and "T" in out["ts"]
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = logging.LogRecord("ztnode.api", logging.ERROR, __file__, 1, "x", (), sys.exc_info())
    assert "RuntimeError: boom" in json.loads(JsonLogFormatter().format(rec))["exc"]


def _logging_calls(tree: ast.AST) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("debug", "info", "warning", "error", "exception", "critical")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in ("log", "logger")
        ):
            yield node


def test_no_logging_call_formats_eagerly() -> None:
    """A message built before the call (f-string, ``%``, ``.format``) costs its formatting even
    when the level is off; ``log.debug("... %s", x)`` costs one level check."""
    eager = []
    calls = 0
    for f in sorted(SRC.rglob("*.py")):
        for call in _logging_calls(ast.parse(f.read_text())):
            calls += 1
            msg = call.args[0] if call.args else None
            if (
                isinstance(msg, ast.JoinedStr)
                or (isinstance(msg, ast.BinOp) and isinstance(msg.op, ast.Mod))
                or (
                    isinstance(msg, ast.Call)
                    and isinstance(msg.func, ast.Attribute)
                    and msg.func.attr == "format"
                )
            ):
                eager.append(f"{f.relative_to(SRC)}:{call.lineno}")
    assert calls > 10 and eager == []


def test_every_logger_is_a_named_subsystem() -> None:
    names = set()
    for f in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "getLogger"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(node.args[0].value)
    names.discard("ztnode")
    assert names and names <= set(LOG_SUBSYSTEMS), names - set(LOG_SUBSYSTEMS)


def test_node_process_logs_json_with_levels(tmp_path: Path) -> None:
    planet = tmp_path / "planet"
    write_planet(planet, CTL_ID, 1)  # nobody there: the node stays offline, which is fine
    home = tmp_path / "home"
    argv = [
        sys.executable, "-m", "ztnode.cli", "node", "--home", str(home), "--port", "0",
        "--bind", "127.0.0.1", "--api-port", "0", "--planet", str(planet),
    ]  # fmt: skip
    bad = subprocess.run(
        [*argv, "--log-level", "netstack=loud"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 2 and "logging:" in bad.stderr and "loud" in bad.stderr
    env = dict(os.environ, ZTNODE_LOG="debug,bogus=info")
    err = tmp_path / "err"
    with err.open("wb") as fe:
        proc = subprocess.Popen(
            [*argv, "--log-level", "core=warning", "--log-format", "json"],
            stdout=subprocess.DEVNULL,
            stderr=fe,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        while not (home / "ztnode.port").exists():
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [json.loads(x) for x in err.read_text().splitlines()]
    assert lines, "no log lines"
    assert all({"ts", "level", "logger", "msg"} <= set(x) for x in lines)
    warn = [x for x in lines if "no such log subsystem" in x["msg"]]
    assert warn and warn[0]["level"] == "warning" and "ztnode.bogus" in warn[0]["msg"]
