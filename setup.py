"""Build hook for the optional C accelerator ``ztnode.accel._zt_accel``; metadata is in pyproject.

Why a setup.py at all: the accelerator must be *optional*. It needs a C compiler and the OpenSSL
and libsodium headers (Debian: ``gcc libssl-dev libsodium-dev``), and a machine without them must
still install ztnode, which then runs its pure-Python armor path. So the extension is declared
through cffi's ``cffi_modules`` hook and built by a ``build_ext`` that turns any compile or link
failure into a warning instead of a failed install.

``ZTNODE_NO_ACCEL_BUILD=1`` skips the extension entirely (for testing the fallback install, or
for platforms where even trying is unwanted).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ACCEL_BUILDER = "src/ztnode/accel/_build.py:ffibuilder"
SKIP_ENV = "ZTNODE_NO_ACCEL_BUILD"


def _warn(message: str) -> None:
    # stderr, prefixed, so the line is easy to find in pip's verbose output.
    print(f"WARNING: ztnode: {message}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """``build_ext`` that never fails the install: a failed extension is skipped with a warning."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # a missing compiler surfaces here, before any extension
            _warn(f"C accelerator not built ({e}); using the pure-Python packet crypto")

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:  # CompileError / LinkError: usually missing -dev headers
            _warn(
                f"C accelerator {ext.name} not built ({e}); using the pure-Python packet crypto. "
                "For the fast path install a C compiler, libssl-dev and libsodium-dev, then "
                "reinstall ztnode."
            )
            self._failed = [*getattr(self, "_failed", []), ext]

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
    if os.environ.get(SKIP_ENV, "") not in ("", "0"):
        _warn(f"{SKIP_ENV} is set: not building the C accelerator")
        return {}
    try:
        import cffi  # noqa: F401  # the cffi_modules hook needs it at build time
    except ImportError:
        _warn("cffi is not importable at build time: not building the C accelerator")
        return {}
    return {"cffi_modules": [ACCEL_BUILDER]}


setup(cmdclass={"build_ext": OptionalBuildExt}, **_accel_kwargs())
