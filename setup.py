"""Build hook for the optional C accelerator ``ztnode.accel._zt_accel`` and the compiled hot path
(``ztnode._compiled``: the packet path's modules built by mypyc); metadata is in pyproject.

Why a setup.py at all: the accelerator must be *optional*. A wheel carries it built; from source
it needs a C compiler and Python's headers (Debian: ``gcc python3-dev``; no OpenSSL or libsodium
headers: its primitives are its own and OpenSSL is bound at run time), and a machine without
them must still install ztnode, which then runs its pure-Python packet path. So the extension is
declared through cffi's ``cffi_modules`` hook and built by a ``build_ext`` that turns any compile
or link failure into a warning instead of a failed install.

``ZTNODE_NO_ACCEL_BUILD=1`` skips the extension entirely (for testing the fallback install, or
for platforms where even trying is unwanted); ``=compiled-only`` skips it without the warning,
for ``_build.py --compiled``, which builds the source tree's accelerator apart.
``ZTNODE_REQUIRE_ACCEL_BUILD=1`` does the opposite: a failed extension fails the build, so a
release wheel can never be a slow one by accident (cibuildwheel's configuration in
pyproject.toml sets it).

The hot path is the same kind of optional: mypyc (build requirement ``mypy``) compiles the
modules ``ztnode._compiled`` lists into one shared library named after a hash of the sources;
where mypyc, its type check or the compiler fails, the install goes on with one warning and the
sources run (``ZTNODE_NO_COMPILE=1`` skips it). ``ZTNODE_REQUIRE_ACCEL_BUILD=1`` requires it too.

The accelerator alone uses only CPython's limited API (cffi builds it so); the compiled modules
use the full one, so a wheel that carries them is tagged for one CPython (``cp311-cp311``), and
one without them (``ZTNODE_NO_COMPILE=1``) is ``abi3``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ACCEL_BUILDER = "src/ztnode/accel/_build.py:ffibuilder"
ACCEL_MODULE = "ztnode._zt_accel"
SKIP_ENV = "ZTNODE_NO_ACCEL_BUILD"
REQUIRE_ENV = "ZTNODE_REQUIRE_ACCEL_BUILD"
LIMITED_API = "cp311"
COMPILED_SPEC = "src/ztnode/_compiled.py"
NO_COMPILE_ENV = "ZTNODE_NO_COMPILE"
#: ``ZTNODE_NO_ACCEL_BUILD``'s value from ``_build.py --compiled``: the hot path alone.
COMPILED_ONLY = "compiled-only"


HINT = (
    "ztnode runs, on its slow pure-Python packet path; for the fast path install ztnode from a "
    "wheel, or a C compiler and Python's headers (Debian: gcc python3-dev) and reinstall"
)


COMPILE_HINT = (
    "ztnode runs its hot path from source (about half the speed for small messages); install "
    "it from a wheel, or with a C compiler and Python's headers, to compile it"
)


def _warn(message: str) -> None:
    # One line on stderr, prefixed, so it is easy to find in pip's verbose output (pip shows a
    # successful build's output only with -v; ztnode repeats the news at run time, see
    # ztnode.diagnostics).
    line = " ".join(message.split())
    print(f"WARNING: ztnode: {line}", file=sys.stderr)


def _required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


class OptionalBuildExt(build_ext):
    """``build_ext`` that never fails the install: a failed extension is skipped with a warning
    (unless ``ZTNODE_REQUIRE_ACCEL_BUILD`` asks for the failure).

    The C accelerator builds first. If it fails (no compiler, no Python.h), the compiled hot
    path needs the same and is not tried: one warning says both. If only the hot path fails,
    its other modules are skipped (it is all or nothing, see ``ztnode._compiled``) with one
    warning of its own."""

    def run(self) -> None:
        accel_first = sorted(self.extensions, key=lambda e: 0 if e.name == ACCEL_MODULE else 1)
        self.extensions = accel_first
        try:
            super().run()
        except Exception as e:  # a missing compiler surfaces here, before any extension
            if _required():
                raise
            _warn(f"C accelerator not built, nor the compiled hot path ({e}). {HINT}")

    def build_extension(self, ext: Any) -> None:
        failed: list[Any] = getattr(self, "_failed", [])
        hot = ext.name != ACCEL_MODULE
        if hot and failed:  # the accelerator or an earlier hot-path module failed
            self._failed = [*failed, ext]
            return
        try:
            super().build_extension(ext)
        except Exception as e:  # CompileError / LinkError: no compiler or no Python.h
            if _required():
                raise
            if hot:
                _warn(f"the compiled hot path not built ({ext.name}: {e}). {COMPILE_HINT}")
            else:
                why = f"not built, nor the compiled hot path ({e})"
                _warn(f"C accelerator {ext.name} {why}. {HINT}")
            self._failed = [*failed, ext]

    def copy_extensions_to_source(self) -> None:
        # Editable installs copy each built extension into the source tree; skip the ones that
        # failed (and were already reported) instead of failing on the missing file.
        failed = getattr(self, "_failed", [])
        every = self.extensions
        self.extensions = [e for e in every if e not in failed]
        try:
            super().copy_extensions_to_source()
        finally:
            self.extensions = every

    def get_outputs(self) -> list[str]:
        # Only report what exists, so an editable or wheel install does not look for a file
        # that a failed build never produced.
        return [p for p in super().get_outputs() if os.path.exists(p)]


def _accel_kwargs() -> dict[str, Any]:
    skip = os.environ.get(SKIP_ENV, "")
    if skip == COMPILED_ONLY:  # only the hot path wanted: nothing to warn about
        return {}
    if skip not in ("", "0"):
        _warn(f"{SKIP_ENV} is set: not building the C accelerator. {HINT}")
        return {}
    try:
        import cffi  # noqa: F401  # the cffi_modules hook needs it at build time
    except ImportError:
        _warn(f"cffi is not importable at build time: not building the C accelerator. {HINT}")
        return {}
    return {
        "cffi_modules": [ACCEL_BUILDER],
        "options": {"bdist_wheel": {"py_limited_api": LIMITED_API}},
    }


def _load_compiled_spec() -> Any:
    """``src/ztnode/_compiled.py`` by path (it imports only the standard library)."""
    spec = importlib.util.spec_from_file_location("_ztnode_compiled_spec", COMPILED_SPEC)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _can_compile() -> bool:
    """A compiler that runs and Python's headers, checked before mypyc spends a minute
    type-checking and generating C that nothing could compile."""
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not cc or shutil.which(cc[0]) is None or not header.exists():
        return False
    try:
        probe = subprocess.run([*cc, "--version"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _compiled_extensions() -> list[Any]:
    """The hot path's modules compiled by mypyc (see ``ztnode._compiled``), or nothing, with a
    warning, where mypyc or its type check is unavailable: the sources then run."""
    if os.environ.get(NO_COMPILE_ENV, "") not in ("", "0"):
        _warn(f"{NO_COMPILE_ENV} is set: not compiling the hot path. {COMPILE_HINT}")
        return []
    if not _can_compile():
        return []  # the accelerator's build fails too, and its one warning says so
    try:
        from mypyc.build import mypycify
    except ImportError:
        if _required():
            raise
        _warn(f"mypyc is not importable at build time: not compiling the hot path. {COMPILE_HINT}")
        return []
    spec = _load_compiled_spec()
    package = Path("src") / spec.PACKAGE
    paths = [str(package / rel) for rel in spec.MODULES]
    try:
        exts: list[Any] = mypycify(
            paths,
            opt_level="3",
            group_name=spec.group_name(spec.source_hash(package)),
            target_dir=str(Path("build") / "mypyc"),
        )
    except (Exception, SystemExit) as e:  # mypyc exits on a failed type check
        if _required():
            raise
        _warn(f"the hot path was not compiled ({e!r}). {COMPILE_HINT}")
        return []
    return exts


def _setup_kwargs() -> dict[str, Any]:
    kwargs = _accel_kwargs()
    compiled = _compiled_extensions()
    if compiled:
        kwargs["ext_modules"] = compiled
        # mypyc's modules use CPython's full API: the wheel is for one CPython, not abi3.
        kwargs.pop("options", None)
    return kwargs


setup(cmdclass={"build_ext": OptionalBuildExt}, **_setup_kwargs())
