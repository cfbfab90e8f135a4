"""Busy polling (:mod:`ztnode.transport.busypoll`): poll only right after I/O, never past the
wait's timeout, stop at the first empty poll; how it is chosen (:mod:`ztnode.transport.eventloop`,
``--busy-poll``, ``ZTNODE_BUSY_POLL``); and a real loop on it carrying a ztnode TCP echo.

The selector's rule runs against a scripted inner selector and a clock that advances 10 us per
reading; budgets and timeouts fall between readings (55 us, 35 us), so rounding never decides a
count."""

from __future__ import annotations

import asyncio
import selectors
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

import pytest

from ztnode.transport import eventloop
from ztnode.transport.busypoll import MAX_SPIN_US, BusyPollSelector, check_spin_us
from ztnode.transport.eventloop import LoopChoiceError, choose

_KEY = selectors.SelectorKey(fileobj=0, fd=0, events=selectors.EVENT_READ, data=None)
_EVENT = [(_KEY, selectors.EVENT_READ)]


class _Script(selectors.BaseSelector):
    """An inner selector answering ``select`` from a script: each call pops the next answer
    (an empty list when the script is done) and records the timeout it was given."""

    def __init__(self, answers: list[bool]) -> None:
        self.answers = list(answers)
        self.timeouts: list[float | None] = []
        self.yields = 0

    def yielded(self) -> None:
        """The selector's ``yield_cpu``: counted."""
        self.yields += 1

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.timeouts.append(timeout)
        return list(_EVENT) if self.answers and self.answers.pop(0) else []

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        raise AssertionError("not used")

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        raise AssertionError("not used")

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return {}


class _Clock:
    """Seconds, 10 us further at each reading."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        self.t += 10e-6
        return self.t


def _selector(spin_us: int, answers: list[bool]) -> tuple[BusyPollSelector, _Script]:
    inner = _Script(answers)
    return BusyPollSelector(spin_us, inner, _Clock(), inner.yielded), inner


def test_a_cold_loop_waits_without_polling() -> None:
    sel, inner = _selector(100, [False])
    assert sel.select(1.0) == []
    assert inner.timeouts == [1.0]
    assert sel.spins == 0


def test_after_events_the_next_wait_polls_until_something_comes() -> None:
    sel, inner = _selector(100, [True, False, False, True])
    assert sel.select(None) == _EVENT  # wakes warm
    assert sel.select(None) == _EVENT  # polled: two empty polls, then the event
    assert inner.timeouts == [None, 0, 0, 0]
    assert (sel.spins, sel.caught) == (1, 1)
    assert sel.spun == pytest.approx(30e-6)  # three clock readings after the start
    assert inner.yields == 2  # the core offered to others after each empty poll


def test_a_poll_that_finds_nothing_ends_the_warm_spell_and_then_waits() -> None:
    # 55 us of polling, readings every 10 us: six empty polls, then the blocking wait.
    sel, inner = _selector(55, [True, *([False] * 6), False])
    sel.select(None)
    assert sel.select(None) == []
    assert inner.timeouts == [None, 0, 0, 0, 0, 0, 0, None]
    assert (sel.spins, sel.caught) == (1, 0)
    assert inner.yields == 5  # not after the last poll: the wait follows at once
    assert sel.select(1.0) == []  # cold again: no polling
    assert inner.timeouts[-1] == 1.0 and sel.spins == 1


def test_the_wait_after_polling_gets_what_is_left_of_the_timeout() -> None:
    sel, inner = _selector(55, [True, *([False] * 6), True])
    sel.select(None)
    assert sel.select(0.010) == _EVENT
    assert inner.timeouts[-1] == pytest.approx(0.010 - 60e-6)
    assert sel.select(1.0) == []  # warm again after the wait returned events: polls
    assert sel.spins == 2


def test_polling_never_runs_past_the_timeout() -> None:
    """A timer due in 35 us: the poll stops there and returns nothing, as the wait would."""
    sel, inner = _selector(1000, [True])
    sel.select(None)
    assert sel.select(35e-6) == []
    assert inner.timeouts == [None, 0, 0, 0, 0]  # no blocking wait after the poll
    assert sel.select(None) == [] and inner.timeouts[-1] is None  # cold: waits


def test_a_zero_timeout_never_polls_nor_cools_the_loop() -> None:
    """asyncio checks with a zero timeout whenever callbacks are ready, as after most I/O; that
    empty check must not end the warm spell, or no wait after traffic would ever poll."""
    sel, inner = _selector(100, [True, False, False, True])
    sel.select(None)
    assert sel.select(0) == []
    assert inner.timeouts == [None, 0] and sel.spins == 0
    assert sel.select(None) == _EVENT  # still warm: polls (one empty poll, then the event)
    assert inner.timeouts == [None, 0, 0, 0] and (sel.spins, sel.caught) == (1, 1)


def test_figures_out_of_range_are_clear_errors() -> None:
    for bad in (-1, MAX_SPIN_US + 1, True, 1.5):
        with pytest.raises(ValueError, match=r"^busy poll: .* microseconds from 0 \(off\)"):
            BusyPollSelector(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="0 us is no busy polling"):
        BusyPollSelector(0)
    assert check_spin_us(0, "x") == 0 and check_spin_us(MAX_SPIN_US, "x") == MAX_SPIN_US


def test_registration_is_the_inner_selectors() -> None:
    a, b = socket.socketpair()
    sel = BusyPollSelector(50)
    try:
        sel.register(a, selectors.EVENT_READ, "tag")
        assert sel.get_key(a).data == "tag" and len(sel.get_map()) == 1
        sel.modify(a, selectors.EVENT_READ, "other")
        b.send(b"x")
        (key, ev), *_ = sel.select(1.0)
        assert key.data == "other" and ev == selectors.EVENT_READ
        sel.unregister(a)
        assert len(sel.get_map()) == 0
    finally:
        sel.close()
        a.close()
        b.close()


# ---- the choice


def test_choose_busy_polling_picks_the_stock_loop() -> None:
    c = choose(None, {"ZTNODE_BUSY_POLL": "150"})
    assert (c.name, c.busy_poll_us) == ("asyncio", 150)
    assert "busy polling 150 us" in c.summary()
    assert "ZTNODE_BUSY_POLL=150" in c.why
    assert choose(None, {"ZTNODE_BUSY_POLL": "150"}, busy_poll=0).busy_poll_us == 0  # switch wins
    assert choose("asyncio", {}, busy_poll=80).as_dict()["busy_poll_us"] == 80
    assert choose(None, {"ZTNODE_BUSY_POLL": " "}).busy_poll_us == 0


def test_busy_polling_with_uvloop_or_out_of_range_is_an_error() -> None:
    with pytest.raises(LoopChoiceError, match=r"^--loop uvloop with --busy-poll 100: busy pol"):
        choose("uvloop", {}, busy_poll=100)
    with pytest.raises(LoopChoiceError, match=r"^ZTNODE_LOOP=uvloop with ZTNODE_BUSY_POLL=9"):
        choose(None, {"ZTNODE_LOOP": "uvloop", "ZTNODE_BUSY_POLL": "9"})
    with pytest.raises(LoopChoiceError, match=r"^ZTNODE_BUSY_POLL=fast: not a number"):
        choose(None, {"ZTNODE_BUSY_POLL": "fast"})
    with pytest.raises(LoopChoiceError, match=r"^--busy-poll: 20000 is not"):
        choose(None, {}, busy_poll=20000)


def test_the_command_line_rejects_a_bad_figure() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ztnode.cli", "doctor", "--quick", "--busy-poll", "-5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2
    assert "--busy-poll: -5 is not a number of microseconds" in r.stderr


def test_a_ztnode_echo_runs_on_a_busy_polling_loop() -> None:
    """Two members in one process on a loop from ``eventloop.new_loop``: TCP echo round trips
    arrive intact, timers fire, and the selector polled and caught traffic."""
    from ztnode.testing.local import LocalZtWorld

    async def main() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        sel = loop._selector  # type: ignore[attr-defined]
        assert isinstance(sel, BusyPollSelector)

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)

        with tempfile.TemporaryDirectory() as base:
            async with LocalZtWorld(base, members=2) as world:
                a, b = world.networks
                await b.start_server(echo, port=7)
                reader, writer = await a.open_connection(b.address(4), 7)
                for i in range(200):
                    writer.write(bytes([i]))
                    assert await asyncio.wait_for(reader.readexactly(1), 5) == bytes([i])
                t0 = loop.time()
                await asyncio.sleep(0.02)  # a timer on a warm loop still fires on time
                assert 0.019 <= loop.time() - t0 < 1.0
                writer.close()
        return sel.stats()

    with asyncio.Runner(loop_factory=lambda: eventloop.new_loop(busy_poll_us=500)) as runner:
        stats = runner.run(main())
    assert stats["spin_us"] == 500
    assert stats["spins"] > 0 and stats["caught"] > 0


def test_new_loop_without_busy_polling_is_the_stock_loop() -> None:
    loop = eventloop.new_loop(0)
    try:
        assert not isinstance(getattr(loop, "_selector", None), BusyPollSelector)
    finally:
        loop.close()
    with pytest.raises(ValueError, match="busy_poll_us"):
        eventloop.new_loop(-3)
