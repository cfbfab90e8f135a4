"""Loads ztnode's own compiled module, ``ztnode._zt_accel``, and binds it to OpenSSL.

One extension carries two kinds of C: symmetric primitives of our own (Salsa20, Poly1305,
SipHash: :mod:`ztnode.crypto.salsa` uses them when libsodium is absent) and the per-packet
engines of :mod:`ztnode.accel` (armor, receive bursts, TCP segmentation). It is loaded here, in
the crypto layer, because crypto sits below accel and must not import it; :mod:`ztnode.accel`
takes ``ffi``/``lib`` from this module.

Why it needs no libsodium and no OpenSSL headers: a wheel must carry the fast path to machines
with Python and pip only. The primitives are written in C here, and OpenSSL's AES (cipher 3) is
bound at run time: this module opens (:mod:`ctypes`) the libcrypto the interpreter itself already
uses for :mod:`hashlib` and :mod:`ssl` (found in ``/proc/self/maps``), else what ``find_library``
or the usual sonames give, and hands the C side the addresses of the calls it names. Without a
libcrypto the module still loads; cipher 3 then runs in Python and :data:`AES_REASON` says why.

Nothing here raises: :data:`REASON` (module) and :data:`AES_REASON` (C AES) say what is missing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import importlib.util
import os
import sys
from typing import Any, Final

from ztnode.crypto import _sodium
from ztnode.crypto._native import native_disabled

MODULE: Final = "ztnode._zt_accel"
DISABLE_ENV: Final = "ZTNODE_NO_ACCEL"
# A build to load instead of the installed one (CI's sanitizer build; see accel/_build.py).
PATH_ENV: Final = "ZTNODE_ACCEL_PATH"
# A libcrypto to bind instead of the one found (a path or a soname).
LIBCRYPTO_ENV: Final = "ZTNODE_LIBCRYPTO"
# Keeps the per-packet calls on cffi (the reference the direct calls are checked against).
NO_FAST_ENV: Final = "ZTNODE_NO_FAST_CALLS"
# Must equal ZT_ACCEL_ABI in the C source: an extension left over from an older build of a
# different meaning is ignored rather than trusted.
ABI: Final = 11

# Where libcrypto usually answers to its soname, newest first.
_SONAMES: Final = ("libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.3.dylib", "libcrypto.dylib")


def disabled_reason() -> str | None:
    """Why the environment turned the extension off, or None."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return f"disabled by {DISABLE_ENV}"
    if native_disabled():
        return "disabled by ZTNODE_NO_NATIVE_CRYPTO"
    return None


def _import_extension() -> Any:
    path = os.environ.get(PATH_ENV, "")
    if not path:
        return importlib.import_module(MODULE)
    spec = importlib.util.spec_from_file_location(MODULE, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{PATH_ENV}={path} is not a loadable extension")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _mapped_libcrypto() -> list[str]:
    """The libcrypto files this process has mapped, once the stdlib's own OpenSSL user loaded."""
    with contextlib.suppress(ImportError):
        import _hashlib  # noqa: F401  # maps the interpreter's libcrypto where it links one
    found: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.rstrip("\n").split(None, 5)  # addr perms offset dev inode path
                path = fields[5] if len(fields) == 6 else ""
                name = os.path.basename(path)
                if path.startswith("/") and name.startswith("libcrypto.so") and path not in found:
                    found.append(path)
    except OSError:  # no /proc (not Linux): the sonames below
        pass
    return found


def libcrypto_candidates() -> list[str]:
    """Where to look for libcrypto, in order (deduplicated)."""
    override = os.environ.get(LIBCRYPTO_ENV, "")
    if override:
        return [override]
    out = _mapped_libcrypto()
    named = ctypes.util.find_library("crypto")
    for c in ([named] if named else []) + list(_SONAMES):
        if c not in out:
            out.append(c)
    return out


# The libcrypto bound, kept open for the life of the process (C contexts point into it).
_held: list[ctypes.CDLL] = []


def _symbols(lib: Any, ffi: Any) -> list[str]:
    names: list[str] = []
    while True:
        name = lib.zt_crypto_symbol(len(names))
        if name == ffi.NULL:
            return names
        names.append(ffi.string(name).decode())


def _bind(lib: Any, ffi: Any) -> tuple[str | None, str | None]:
    """``(path bound, None)`` or ``(None, why not)``."""
    if lib.zt_crypto_bound():
        return "(bound before)", None
    names = _symbols(lib, ffi)
    tried: list[str] = []
    for candidate in libcrypto_candidates():
        try:
            crypto = ctypes.CDLL(candidate, mode=os.RTLD_LOCAL | os.RTLD_NOW)
        except OSError:
            tried.append(f"{candidate} would not load")
            continue
        try:
            addrs = [ctypes.cast(getattr(crypto, n), ctypes.c_void_p).value for n in names]
        except AttributeError:
            addrs = [None]
        if None in addrs:
            tried.append(f"{candidate} lacks the EVP AES calls")
            continue
        table = ffi.new("void *[]", [ffi.cast("void *", a) for a in addrs])
        if lib.zt_crypto_bind(table, len(names)) == lib.ZT_CRYPTO_BOUND:
            _held.append(crypto)
            return candidate, None
        tried.append(f"{candidate} was refused")
    detail = "; ".join(tried) if tried else "nothing to try"
    return None, (
        f"no usable OpenSSL libcrypto ({detail}): cipher 3 (AES-GMAC-SIV) runs in Python. "
        "Install OpenSSL's library (Debian: libssl3) or set ZTNODE_LIBCRYPTO to its path"
    )


def _load() -> tuple[Any, Any, str | None, str | None, str | None]:
    """``(ffi, lib, reason, libcrypto path, aes reason)``; ffi and lib None when unusable."""
    reason = disabled_reason()
    if reason is not None:
        return None, None, reason, None, reason
    try:
        # importlib keeps mypy away from the compiled module, which has no stubs; everything it
        # exports is re-exposed through typed functions (here and in ztnode.accel).
        mod = _import_extension()
    except ImportError as e:
        why = f"{MODULE} could not be imported ({e})"
        return None, None, why, None, why
    lib = mod.lib
    if lib.ZT_ACCEL_ABI != ABI:
        why = f"{MODULE} has ABI {lib.ZT_ACCEL_ABI}, expected {ABI}: rebuild it"
        return None, None, why, None, why
    path, aes_reason = _bind(lib, mod.ffi)
    _bind_sodium_poly1305(lib, mod.ffi)
    return mod.ffi, lib, None, path, aes_reason


def _fast_module(lib: Any) -> Any:
    """The extension's per-packet calls as CPython functions (``csrc/fast.c``), or None where
    they are turned off or could not be made (the cffi calls then serve; they compute the
    same). The C creates the module under a name of this load's own in ``sys.modules``, taken
    out again here: two builds loaded in one process (a test's sanitizer build) keep apart."""
    if os.environ.get(NO_FAST_ENV, "") not in ("", "0"):
        return None
    name = f"ztnode._zt_fast_{id(lib):x}"
    if lib.zt_fast_register(name.encode()) != 0:
        return None
    return sys.modules.pop(name, None)


def _bind_sodium_poly1305(lib: Any, ffi: Any) -> None:
    """Lend the packet path libsodium's faster Poly1305 where the machine has libsodium (already
    initialised by :mod:`ztnode.crypto._sodium`, so its best code is chosen)."""
    if _sodium.lib is None:
        return
    addr = int(_sodium.ffi.cast("uintptr_t", _sodium.lib.crypto_onetimeauth_poly1305))
    lib.zt_poly1305_bind(ffi.cast("void *", addr))


def poly1305_impl() -> str:
    """Whose Poly1305 the C packet path runs: ``libsodium`` or ``ztnode``."""
    if lib is None:
        return "none"
    name: str = ffi.string(lib.zt_poly1305_impl()).decode()
    return name


ffi: Any
lib: Any
ffi, lib, REASON, LIBCRYPTO, AES_REASON = _load()
#: The direct per-packet calls (see :func:`_fast_module`), or None.
fast: Any = _fast_module(lib) if lib is not None else None
#: True when the compiled module loaded; :data:`REASON` says why not otherwise.
AVAILABLE: Final[bool] = lib is not None
#: True when cipher 3 runs in C (a libcrypto was bound); :data:`AES_REASON` says why not.
AES_AVAILABLE: Final[bool] = LIBCRYPTO is not None

__all__ = [
    "ABI",
    "AES_AVAILABLE",
    "AES_REASON",
    "AVAILABLE",
    "DISABLE_ENV",
    "LIBCRYPTO",
    "LIBCRYPTO_ENV",
    "MODULE",
    "NO_FAST_ENV",
    "PATH_ENV",
    "REASON",
    "disabled_reason",
    "fast",
    "ffi",
    "lib",
    "libcrypto_candidates",
    "poly1305_impl",
]
