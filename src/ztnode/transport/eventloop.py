"""Which event loop ztnode's long-running commands run on: uvloop where it is installed, else the
stock asyncio loop, unless the operator says otherwise.

Why a module of its own: ``ztnode node``, ``ztnode demo`` and ``ztnode doctor`` must make the
same choice, say the same thing about it, and fail the same way when the operator asks for a
loop that is not there. uvloop (the ``uvloop`` extra, libuv under asyncio's API) takes 5 to 9 %
off a small round trip between two members (``python -m bench --only tcp``), so it is the
default when importable; ``ZTNODE_LOOP`` or the commands' ``--loop`` switch pick one explicitly.
Busy polling (``ZTNODE_BUSY_POLL`` or ``--busy-poll``, in microseconds;
:mod:`ztnode.transport.busypoll`) runs on the stock loop, the only one that takes a selector:
asking for it picks asyncio's loop, and asking for both it and uvloop is an error.

Only the commands decide. A program using ztnode as a library runs ztnode on whatever loop it
runs itself (``uvloop.run(main())``, an event loop policy, ``asyncio.run``, or
``asyncio.Runner(loop_factory=lambda: new_loop(busy_poll_us=100))`` for busy polling): nothing
here is consulted, and the short commands that only ask a running node's local API stay on
``asyncio.run``. The blocking API's loop thread reads ``ZTNODE_BUSY_POLL`` too.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from ztnode.transport.busypoll import MAX_SPIN_US, BusyPollSelector, check_spin_us

__all__ = [
    "BUSY_POLL_ENV",
    "CHOICES",
    "ENV",
    "LoopChoice",
    "LoopChoiceError",
    "busy_poll_from_env",
    "choose",
    "new_loop",
    "run",
]

#: The environment variable that picks the loop when no ``--loop`` switch does.
ENV: Final = "ZTNODE_LOOP"
#: Microseconds of busy polling when no ``--busy-poll`` switch says (unset or 0: none).
BUSY_POLL_ENV: Final = "ZTNODE_BUSY_POLL"
#: ``auto``: uvloop when importable, else asyncio.
CHOICES: Final = ("auto", "asyncio", "uvloop")
INSTALL_HINT: Final = "pip install 'ztnode[uvloop]'"

T = TypeVar("T")


class LoopChoiceError(ValueError):
    """An unknown loop name, or uvloop asked for and not installed; the message names the
    setting (``ZTNODE_LOOP`` or ``--loop``) that asked."""


@dataclass(frozen=True, slots=True)
class LoopChoice:
    """The loop a command will run on, and why (for logs, ``ztnode doctor``)."""

    name: str  # "asyncio" or "uvloop"
    version: str | None  # uvloop's version; None for the stock loop
    why: str
    busy_poll_us: int = 0  # on the stock loop only

    def summary(self) -> str:
        """One line, e.g. ``uvloop 0.21.0 (installed; ZTNODE_LOOP=asyncio for the stock loop)``."""
        label = self.name if self.version is None else f"{self.name} {self.version}"
        poll = f", busy polling {self.busy_poll_us} us" if self.busy_poll_us else ""
        return f"{label} ({self.why}){poll}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "why": self.why,
            "busy_poll_us": self.busy_poll_us,
        }

    def loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        """What :class:`asyncio.Runner` is given: uvloop's constructor, a busy-polling stock
        loop, or None (the stock loop from the current policy, exactly as :func:`asyncio.run`
        makes it)."""
        if self.busy_poll_us:
            spin = self.busy_poll_us
            return lambda: new_loop(spin)
        if self.name != "uvloop":
            return None
        import uvloop

        return uvloop.new_event_loop


def new_loop(busy_poll_us: int = 0) -> asyncio.AbstractEventLoop:
    """A new stock asyncio loop; with ``busy_poll_us`` > 0 its selector polls that long after
    I/O before it sleeps (:class:`~ztnode.transport.busypoll.BusyPollSelector`). ValueError for
    a figure outside 0..10 000."""
    check_spin_us(busy_poll_us, "busy_poll_us")
    if not busy_poll_us:
        return asyncio.new_event_loop()
    return asyncio.SelectorEventLoop(BusyPollSelector(busy_poll_us))


def busy_poll_from_env(environ: Mapping[str, str] | None = None) -> int:
    """``ZTNODE_BUSY_POLL`` as microseconds (unset or empty: 0); LoopChoiceError naming the
    variable when it is not a whole number in range."""
    env = os.environ if environ is None else environ
    raw = env.get(BUSY_POLL_ENV, "").strip()
    if not raw:
        return 0
    try:
        return check_spin_us(int(raw), f"{BUSY_POLL_ENV}={raw}")
    except ValueError:
        raise LoopChoiceError(
            f"{BUSY_POLL_ENV}={raw}: not a number of microseconds from 0 (off) to {MAX_SPIN_US}"
        ) from None


def _uvloop_version() -> str | None:
    """uvloop's version when it imports, else None (any import failure: a broken build of it
    is as absent as a missing one)."""
    try:
        import uvloop
    except ImportError:
        return None
    return str(getattr(uvloop, "__version__", "(version unknown)"))


def choose(
    requested: str | None = None,
    environ: Mapping[str, str] | None = None,
    busy_poll: int | None = None,
) -> LoopChoice:
    """The loop to run on: ``requested`` (a ``--loop`` switch) first, then ``ZTNODE_LOOP``, then
    uvloop when it imports; with busy polling (``busy_poll`` microseconds from a
    ``--busy-poll`` switch, else ``ZTNODE_BUSY_POLL``) the stock loop. Raises
    :class:`LoopChoiceError` for a name outside :data:`CHOICES`, for ``uvloop`` asked for but
    not importable or together with busy polling, and for a busy-poll figure out of range."""
    env = os.environ if environ is None else environ
    if busy_poll is None:
        spin = busy_poll_from_env(env)
        spin_setting = f"{BUSY_POLL_ENV}={env.get(BUSY_POLL_ENV, '').strip()}"
    else:
        try:
            spin = check_spin_us(busy_poll, "--busy-poll")
        except ValueError as e:
            raise LoopChoiceError(str(e)) from None
        spin_setting = f"--busy-poll {busy_poll}"
    if requested is not None:
        setting, value = f"--loop {requested}", requested
    elif env.get(ENV):
        setting, value = f"{ENV}={env[ENV]}", env[ENV].strip().lower()
    else:
        setting, value = "", "auto"
    if value not in CHOICES:
        where = "--loop" if requested is not None else ENV
        raise LoopChoiceError(f"{where}: {value!r} is not one of {', '.join(CHOICES)}")
    if spin and value == "uvloop":
        raise LoopChoiceError(
            f"{setting} with {spin_setting}: busy polling runs on asyncio's own loop only "
            "(uvloop takes no selector to poll with)"
        )
    if spin:
        why = setting if value == "asyncio" else f"{spin_setting}: busy polling runs on it"
        return LoopChoice("asyncio", None, why, spin)
    version = None if value == "asyncio" else _uvloop_version()
    if value == "uvloop" and version is None:
        raise LoopChoiceError(f"{setting}: uvloop is not installed ({INSTALL_HINT})")
    if value == "asyncio":
        return LoopChoice("asyncio", None, setting)
    if version is None:
        return LoopChoice("asyncio", None, f"uvloop not installed; {INSTALL_HINT} for it")
    why = setting or f"installed; {ENV}=asyncio for the stock loop"
    return LoopChoice("uvloop", version, why)


def run(main: Coroutine[Any, Any, T], choice: LoopChoice | None = None) -> T:
    """``asyncio.run(main)`` on the chosen loop (:func:`choose` when ``choice`` is None)."""
    if choice is None:
        try:
            choice = choose()
        except LoopChoiceError:
            main.close()  # never awaited: say nothing about it, the error says what is wrong
            raise
    with asyncio.Runner(loop_factory=choice.loop_factory()) as runner:
        return runner.run(main)
