"""Shared plumbing for the C libraries reached through cffi in ABI mode.

ABI mode needs no compiler at install time: the shared objects that Debian already ships
(``libsodium23``, ``libssl3``) are opened at import. Every loader returns ``None`` instead of
raising when a library or one of its symbols is missing, so each primitive can fall back to a
portable implementation.
"""

from __future__ import annotations

import ctypes.util
import os
from collections.abc import Iterable
from typing import Any

# Setting this to 1 makes every loader report "not available", so the whole stack can be run on the
# portable fallbacks (CI uses it to prove they still interoperate).
DISABLE_ENV = "ZTNODE_NO_NATIVE_CRYPTO"


def native_disabled() -> bool:
    """Whether the environment asks for the portable fallbacks only."""
    return os.environ.get(DISABLE_ENV, "") not in ("", "0")


def dlopen_first(ffi: Any, sonames: Iterable[str], short_name: str, symbols: Iterable[str]) -> Any:
    """Open the first loadable library that exports every symbol, or return ``None``.

    Sonames are tried before ``find_library`` because the soname pins the ABI the ``cdef`` was
    written for; ``find_library`` is only a fallback for non-Debian layouts.
    """
    if native_disabled():
        return None
    candidates = list(sonames)
    found = ctypes.util.find_library(short_name)
    if found and found not in candidates:
        candidates.append(found)
    wanted = list(symbols)
    for name in candidates:
        try:
            lib = ffi.dlopen(name)
        except OSError:
            continue
        try:
            for sym in wanted:
                getattr(lib, sym)
        except AttributeError:
            continue
        return lib
    return None
