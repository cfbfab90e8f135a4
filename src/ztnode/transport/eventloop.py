"""Which event loop ztnode's long-running commands run on: uvloop where it is installed, else the
stock asyncio loop, unless the operator says otherwise.

Why a module of its own: ``ztnode node``, ``ztnode demo`` and ``ztnode doctor`` must make the
same choice, say the same thing about it, and fail the same way when the operator asks for a
loop that is not there. uvloop (the ``uvloop`` extra, libuv under asyncio's API) takes 5 to 9 %
off a small round trip between two members (``python -m bench --only tcp``), so it is the
default when importable; ``ZTNODE_LOOP`` or the commands' ``--loop`` switch pick one explicitly.

Only the commands decide. A program using ztnode as a library runs ztnode on whatever loop it
runs itself (``uvloop.run(main())``, an event loop policy, or ``asyncio.run``): nothing here is
consulted, and the short commands that only ask a running node's local API stay on
``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

__all__ = ["CHOICES", "ENV", "LoopChoice", "LoopChoiceError", "choose", "run"]

#: The environment variable that picks the loop when no ``--loop`` switch does.
ENV: Final = "ZTNODE_LOOP"
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

    def summary(self) -> str:
        """One line, e.g. ``uvloop 0.21.0 (installed; ZTNODE_LOOP=asyncio for the stock loop)``."""
        label = self.name if self.version is None else f"{self.name} {self.version}"
        return f"{label} ({self.why})"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "why": self.why}

    def loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        """What :class:`asyncio.Runner` is given: uvloop's constructor, or None (the stock loop
        from the current policy, exactly as :func:`asyncio.run` makes it)."""
        if self.name != "uvloop":
            return None
        import uvloop

        return uvloop.new_event_loop


def _uvloop_version() -> str | None:
    """uvloop's version when it imports, else None (any import failure: a broken build of it
    is as absent as a missing one)."""
    try:
        import uvloop
    except ImportError:
        return None
    return str(getattr(uvloop, "__version__", "(version unknown)"))


def choose(requested: str | None = None, environ: Mapping[str, str] | None = None) -> LoopChoice:
    """The loop to run on: ``requested`` (a ``--loop`` switch) first, then ``ZTNODE_LOOP``, then
    uvloop when it imports. Raises :class:`LoopChoiceError` for a name outside :data:`CHOICES`
    and for ``uvloop`` asked for but not importable."""
    env = os.environ if environ is None else environ
    if requested is not None:
        setting, value = f"--loop {requested}", requested
    elif env.get(ENV):
        setting, value = f"{ENV}={env[ENV]}", env[ENV].strip().lower()
    else:
        setting, value = "", "auto"
    if value not in CHOICES:
        where = "--loop" if requested is not None else ENV
        raise LoopChoiceError(f"{where}: {value!r} is not one of {', '.join(CHOICES)}")
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
