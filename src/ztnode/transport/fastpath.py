"""Which packet path this process runs, and if it is not the fast one, why and what to install.

Why a module of its own: an install that silently takes the pure-Python path is ten times
slower and looks fine. The node's log at start, ``ztnode info`` (through the local API's
``/status``), ``ztnode demo`` and ``ztnode doctor`` all print the same report, made here from
what the layers below found when they loaded: the C module (:mod:`ztnode.crypto._cext`), its
AES binding to OpenSSL, the Salsa20 and Poly1305 backends, the receive burst engine, and
whether the hot path's Python runs compiled (:mod:`ztnode._compiled`).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any, Final

from ztnode import _compiled, accel
from ztnode.crypto import _cext, _sodium, salsa
from ztnode.transport import burst

#: What to do when the C module is missing; said once, in every report.
INSTALL_HINT: Final = (
    "install ztnode from a wheel (pip install ztnode), or install a C compiler and Python's "
    "headers (Debian: apt-get install gcc python3-dev) and reinstall from source"
)


@dataclass(frozen=True, slots=True)
class Part:
    """One piece of the fast path: on or off, and what it is or why it is off."""

    name: str
    on: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "on": self.on, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class FastPath:
    """The report; :attr:`fast` is True when every packet runs in C."""

    parts: tuple[Part, ...]
    hint: str | None

    @property
    def fast(self) -> bool:
        return all(p.on for p in self.parts if p.name in _ESSENTIAL)

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(name)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        if self.fast:
            on = ", ".join(p.name for p in self.parts if p.on and p.name in _SUMMARISED)
            return f"fast path: on ({on}; Salsa20 by {self.part('Salsa20').detail})"
        off = "; ".join(
            f"{p.name} off: {p.detail}" for p in self.parts if not p.on and p.name in _ESSENTIAL
        )
        return f"fast path: OFF ({off}). {self.hint or ''}".rstrip()

    def as_dict(self) -> dict[str, Any]:
        return {
            "fast": self.fast,
            "parts": [p.as_dict() for p in self.parts],
            "hint": self.hint,
            "summary": self.summary(),
        }


# Without these a packet takes the slow path; the rest only matter for some traffic.
_ESSENTIAL: Final = frozenset({"C accelerator", "AES in C", "burst receive", "compiled hot path"})
_SUMMARISED: Final = _ESSENTIAL | {"TCP segmentation in C"}


def _module_file() -> str:
    mod = sys.modules.get(_cext.MODULE)
    return str(getattr(mod, "__file__", "") or "")


def report() -> FastPath:
    """What this process runs now (the layers decided at import; nothing is probed here)."""
    parts: list[Part] = []
    hint: str | None = None
    if accel.AVAILABLE:
        parts.append(Part("C accelerator", True, _module_file() or _cext.MODULE))
    else:
        parts.append(Part("C accelerator", False, accel.REASON or "not loaded"))
        disabled = _cext.disabled_reason() is not None
        hint = "unset that variable to use it" if disabled else INSTALL_HINT
    if accel.AES_AVAILABLE:
        parts.append(Part("AES in C", True, f"OpenSSL {_cext.LIBCRYPTO}"))
    else:
        parts.append(Part("AES in C", False, accel.AES_REASON or "no libcrypto"))
        if hint is None:
            hint = "install OpenSSL's library (Debian: apt-get install libssl3)"
    if burst.AVAILABLE:
        parts.append(Part("burst receive", True, "recvmmsg, reassembly and dearmor in C"))
    else:
        parts.append(Part("burst receive", False, burst.REASON or "unavailable"))
    parts.append(
        Part(
            "TCP segmentation in C",
            accel.AVAILABLE,
            "large segments cut, armored and fragmented in one call"
            if accel.AVAILABLE
            else "needs the C accelerator",
        )
    )
    hot = _compiled.status()
    if _compiled.active():
        parts.append(Part("compiled hot path", True, f"{hot.modules} modules compiled by mypyc"))
    else:
        parts.append(Part("compiled hot path", False, hot.reason or "its modules run from source"))
        if hint is None:
            hint = hot.fix or INSTALL_HINT
    name = salsa.backend().name
    parts.append(
        Part(
            "Salsa20",
            name != "numpy",
            {"libsodium": "libsodium", "ztnode-c": "ztnode's C"}.get(name, "numpy (slow)"),
        )
    )
    if _sodium.lib is not None:
        lent = (
            " and its Poly1305 to the C packet path" if _cext.poly1305_impl() == "libsodium" else ""
        )
        sodium = f"loaded: lends its SIMD Salsa20 to identity hashing{lent}"
    elif _cext.lib is not None:
        sodium = "not installed; not needed (ztnode's C does its work)"
    else:
        sodium = "not installed"
    parts.append(Part("libsodium", _sodium.lib is not None, sodium))
    return FastPath(tuple(parts), hint)


_announced: list[bool] = []


def announce(log: logging.Logger) -> None:
    """Log the summary once per process (a warning when slow): several nodes in one process
    share one packet path, so one line says it for all of them."""
    if _announced:
        return
    _announced.append(True)
    fp = report()
    if fp.fast:
        log.info("%s", fp.summary())
    else:
        log.warning("%s", fp.summary())


__all__ = ["INSTALL_HINT", "FastPath", "Part", "announce", "report"]
