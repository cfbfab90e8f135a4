"""The one choice of event loop for ztnode's long-running commands
(:mod:`ztnode.transport.eventloop`): ``--loop`` over ``ZTNODE_LOOP`` over uvloop-when-installed,
clear errors naming the setting, and ``run`` on the loop chosen. uvloop's absence is simulated
(``sys.modules['uvloop'] = None`` makes its import fail), so these run with or without it; the
cases that need it installed skip without it."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import warnings

import pytest

from ztnode.transport import eventloop
from ztnode.transport.eventloop import LoopChoiceError, choose

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
needs_uvloop = pytest.mark.skipif(
    not HAVE_UVLOOP, reason="uvloop is not installed (pip install 'ztnode[uvloop]')"
)


@pytest.fixture
def no_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError


@needs_uvloop
def test_auto_picks_uvloop_when_installed() -> None:
    c = choose(None, {})
    assert c.name == "uvloop" and c.version
    assert "ZTNODE_LOOP=asyncio" in c.why  # says how to opt out
    assert choose(None, {"ZTNODE_LOOP": "auto"}).name == "uvloop"


@pytest.mark.usefixtures("no_uvloop")
def test_auto_falls_back_to_asyncio_and_says_how_to_get_uvloop() -> None:
    c = choose(None, {})
    assert c.name == "asyncio" and c.version is None
    assert "pip install 'ztnode[uvloop]'" in c.summary()


def test_the_switch_wins_over_the_environment() -> None:
    assert choose("asyncio", {"ZTNODE_LOOP": "uvloop"}).name == "asyncio"
    c = choose(None, {"ZTNODE_LOOP": " AsyncIO "})
    assert c.name == "asyncio" and c.why == "ZTNODE_LOOP= AsyncIO "


def test_unknown_names_are_errors_naming_the_setting() -> None:
    with pytest.raises(LoopChoiceError, match=r"^ZTNODE_LOOP: 'tokio' is not one of auto"):
        choose(None, {"ZTNODE_LOOP": "tokio"})
    with pytest.raises(LoopChoiceError, match=r"^--loop: 'trio' is not one of"):
        choose("trio", {})


@pytest.mark.usefixtures("no_uvloop")
def test_uvloop_asked_for_but_missing_is_an_error_naming_the_setting() -> None:
    with pytest.raises(LoopChoiceError, match=r"^ZTNODE_LOOP=uvloop: uvloop is not installed"):
        choose(None, {"ZTNODE_LOOP": "uvloop"})
    with pytest.raises(LoopChoiceError, match=r"^--loop uvloop: .*ztnode\[uvloop\]"):
        choose("uvloop", {})


@pytest.mark.usefixtures("no_uvloop")
def test_run_with_a_bad_setting_raises_and_leaves_no_unawaited_coroutine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZTNODE_LOOP", "uvloop")

    async def never() -> None:
        raise AssertionError("must not run")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine was never awaited" would fail here
        with pytest.raises(LoopChoiceError):
            eventloop.run(never())


def _running_loop_module() -> str:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    return eventloop.run(which(), choose("asyncio", {}))


def test_run_on_the_stock_loop() -> None:
    assert _running_loop_module().startswith("asyncio")


@needs_uvloop
def test_run_on_uvloop() -> None:
    import uvloop

    async def which() -> bool:
        await asyncio.sleep(0.001)
        return isinstance(asyncio.get_running_loop(), uvloop.Loop)

    assert eventloop.run(which(), choose("uvloop", {})) is True


@needs_uvloop
def test_ztnode_doctor_names_the_loop_and_fails_clearly() -> None:
    """Through the command line: the report names the loop; a missing uvloop asked for by the
    environment is exit 2 with the variable named."""
    env_cmd = [sys.executable, "-m", "ztnode.cli", "doctor", "--quick", "--json"]
    r = subprocess.run(
        [*env_cmd, "--loop", "uvloop"], capture_output=True, text=True, timeout=60, check=False
    )
    assert '"name": "uvloop"' in r.stdout, r.stderr
    r = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['uvloop'] = None; "
         "from ztnode.cli import main; sys.exit(main(['doctor', '--quick']))"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "ZTNODE_LOOP": "uvloop"},
    )  # fmt: skip
    assert r.returncode == 2
    assert "ZTNODE_LOOP=uvloop: uvloop is not installed" in r.stderr
