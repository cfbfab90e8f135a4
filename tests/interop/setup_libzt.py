"""Installs the libzt 1.8.4 test peer into a cache directory, idempotently.

libzt has no wheel for Python 3.11, but its cp39 manylinux wheel carries the whole ZeroTier core
as one shared object that we drive through ctypes. Two steps make it loadable: fetch the wheel
from PyPI with pip, and build a tiny shim of our own (``libzt_shim.cpp``) that defines the symbols
the wheel references but never ships. CI runs this module as a script; the test fixtures call
:func:`ensure_libzt` so a developer machine sets itself up on first use.

Run: ``python -m tests.interop.setup_libzt`` (prints the library directory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

LIBZT_VERSION = "1.8.4"
_HERE = Path(__file__).resolve().parent
_SO_NAME = "_libzt.cpython-39-x86_64-linux-gnu.so"


def cache_dir() -> Path:
    """Where the library and shim live: ``$ZTNODE_LIBZT_DIR`` or a per-user cache."""
    env = os.environ.get("ZTNODE_LIBZT_DIR")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "ztnode-test" / f"libzt-{LIBZT_VERSION}"


class LibztPaths:
    """The two shared objects to load, shim first (both with RTLD_GLOBAL)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.libzt = root / _SO_NAME
        self.shim = root / "libzt_shim.so"

    def ready(self) -> bool:
        return self.libzt.is_file() and self.shim.is_file()


def _download(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--python-version",
                "3.9",
                "--only-binary=:all:",
                "--platform",
                "manylinux2010_x86_64",
                f"libzt=={LIBZT_VERSION}",
                "-d",
                tmp,
            ],
            check=True,
            timeout=300,
        )
        wheels = list(Path(tmp).glob("libzt-*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"expected one libzt wheel, found {wheels}")
        with zipfile.ZipFile(wheels[0]) as zf:
            member = f"libzt/{_SO_NAME}"
            with zf.open(member) as src, open(dest / (_SO_NAME + ".part"), "wb") as out:
                shutil.copyfileobj(src, out)
        (dest / (_SO_NAME + ".part")).replace(dest / _SO_NAME)


def _build_shim(dest: Path) -> None:
    gxx = shutil.which("g++")
    if gxx is None:
        raise RuntimeError("g++ is needed to build the libzt shim (apt-get install g++)")
    part = dest / "libzt_shim.so.part"
    subprocess.run(
        [gxx, "-shared", "-fPIC", "-O1", "-o", str(part), str(_HERE / "libzt_shim.cpp")],
        check=True,
        timeout=120,
    )
    part.replace(dest / "libzt_shim.so")


def ensure_libzt() -> LibztPaths:
    """Return the paths, downloading and building what is missing."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    paths = LibztPaths(root)
    if not paths.libzt.is_file():
        _download(root)
    if not paths.shim.is_file():
        _build_shim(root)
    return paths


if __name__ == "__main__":
    print(ensure_libzt().root)
