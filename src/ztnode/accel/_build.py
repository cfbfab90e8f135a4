"""cffi (API mode) builder for ``ztnode._zt_accel``, the optional C accelerator.

The C lives in ``csrc/`` as ordinary source files (the interface in ``zt_accel.h``, shared
internals in ``zt_internal.h``), so compilers, sanitizers and C tooling see it as C. cffi's
``cdef`` is derived from ``zt_accel.h`` (every ``#define`` becomes ``...`` so cffi reads the
value from the compiled header): the interface is written once.

The file imports nothing from ztnode because ``setup.py`` hands it to cffi's ``cffi_modules``
hook, which executes it on its own at build time. By hand:

- ``python src/ztnode/accel/_build.py`` compiles the extension into ``src/ztnode/`` (a source
  checkout; the file is named for this interpreter and so takes precedence over pip's ``abi3``
  build: delete it to go back);
- ``--strict`` compiles each of our C files alone with ``-Wall -Wextra -Werror`` (CI does; the
  install itself uses ``-Wall`` only, since cffi's generated wrapper trips ``-Wextra`` and a
  newer compiler's new warning must not turn a user's install into the pure-Python fallback);
- ``--compiled`` compiles the hot path with mypyc into ``src/ztnode/`` (see
  :mod:`ztnode._compiled`; what an editable install does too): needed again after any change
  to a source, until then the sources run;
- ``--sanitize DIR`` builds it with AddressSanitizer and UndefinedBehaviorSanitizer into
  ``DIR`` and prints the file's path; ``ZTNODE_ACCEL_PATH=<that path>`` makes
  :mod:`ztnode.accel` load it (run Python with libasan preloaded, see ``.ci/run``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cffi  # type: ignore[import-untyped]

# The compiled module sits directly in the ``ztnode`` package, not in ``ztnode.accel``: the crypto
# layer loads it for its primitives (Salsa20, Poly1305) and must not import the accel package,
# which sits above crypto.
MODULE_NAME = "ztnode._zt_accel"
HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"
HEADER = CSRC / "zt_accel.h"
# Every C file of the accelerator; tests check this list against the folder.
SOURCES = (
    "aesni.c",
    "armor.c",
    "checksum.c",
    "fast.c",
    "idhash.c",
    "ossl.c",
    "primitives.c",
    "rx.c",
    "rx_burst.c",
    "rx_guard.c",
    "tx_frame.c",
    "tx_tcp.c",
    "tx_udp.c",
)
# Nothing but the C library: the primitives are our own and OpenSSL's calls are handed over at
# run time (ossl.c), so a build needs a C compiler and Python's headers, no -dev package.
LIBRARIES: tuple[str, ...] = ()
STRICT_FLAGS = ("-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror")
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1")


def cdef_from_header(text: str) -> str:
    """The declarations cffi needs, from the interface header: comments, include guard and
    includes dropped, every ``#define NAME value`` turned into ``#define NAME ...``."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#define"):
            name = stripped.split()[1]
            if name != "ZT_ACCEL_H":
                out.append(f"#define {name} ...")
        elif not stripped.startswith("#"):
            out.append(line)
    return "\n".join(out) + "\n"


def _path_arg(p: Path, relative: bool) -> str:
    """setuptools wants source paths relative to the project root, where an install runs;
    ``FFI.compile`` changes directory, so a build by hand needs them absolute."""
    if relative:
        try:
            return str(p.relative_to(Path.cwd()))
        except ValueError:
            pass
    return str(p)


def make_ffibuilder(
    extra_compile_args: Sequence[str] = (),
    extra_link_args: Sequence[str] = (),
    *,
    relative: bool = False,
) -> cffi.FFI:
    ffi = cffi.FFI()
    ffi.cdef(cdef_from_header(HEADER.read_text()))
    unix = sys.platform != "win32"
    ffi.set_source(
        MODULE_NAME,
        '#include "zt_accel.h"\n',
        sources=[_path_arg(CSRC / s, relative) for s in SOURCES],
        include_dirs=[_path_arg(CSRC, relative)],
        libraries=list(LIBRARIES),
        extra_compile_args=(["-Wall"] if unix else []) + list(extra_compile_args),
        extra_link_args=list(extra_link_args),
    )
    return ffi


# What setup.py's cffi_modules hook builds.
ffibuilder = make_ffibuilder(relative=True)


def build_into(directory: Path, builder: cffi.FFI | None = None) -> Path:
    """Compile the extension in a scratch directory and copy it into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        built = Path((builder or make_ffibuilder()).compile(tmpdir=tmp))
        target = directory / built.name
        shutil.copy2(built, target)
    return target


def strict_check() -> None:
    """Compile every C file alone with warnings as errors (raises CalledProcessError)."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    python_h = sysconfig.get_paths()["include"]  # fast.c is CPython code
    for name in SOURCES:
        cmd = [*cc, *STRICT_FLAGS, f"-I{CSRC}", f"-I{python_h}", "-c", str(CSRC / name)]
        cmd += ["-o", os.devnull]
        subprocess.run(cmd, check=True)


#: The compiled hot path's files in the package (``ztnode._compiled.GROUP_PREFIX``'s library).
GROUP_GLOB = "_hot_*__mypyc*"


def build_compiled() -> Path:
    """Compile the hot path with mypyc into the source tree (what an editable install does),
    after removing every earlier compiled build there; the shared library's path. It runs
    setup.py's own build (the accelerator left out), so the tree gets exactly what an install
    compiles; a failure is an error here, not the install's warning."""
    package = HERE.parent
    root = package.parent.parent  # the checkout: src/ztnode/..
    for old in package.glob(GROUP_GLOB):
        old.unlink()
    for source in package.rglob("*.py"):  # every module's extension, listed now or before
        for ext in source.parent.glob(source.stem + ".*"):
            if ext.suffix in (".so", ".pyd"):
                ext.unlink()
    env = dict(os.environ, ZTNODE_NO_ACCEL_BUILD="compiled-only", ZTNODE_REQUIRE_ACCEL_BUILD="1")
    env.pop("ZTNODE_NO_COMPILE", None)
    cmd = [sys.executable, "setup.py", "-q", "build_ext", "--inplace"]
    subprocess.run(cmd, cwd=root, env=env, check=True)
    built = sorted(package.glob(GROUP_GLOB))
    if not built:
        raise RuntimeError("mypyc built no shared library")
    return built[0]


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["--compiled"]:
        print(build_compiled())
        return 0
    if argv[:1] == ["--strict"]:
        strict_check()
        print(f"{len(SOURCES)} C files compile with {' '.join(STRICT_FLAGS)}")
        return 0
    if argv[:1] == ["--sanitize"] and len(argv) == 2:
        builder = make_ffibuilder(SANITIZE_FLAGS, SANITIZE_FLAGS[:1])
        print(build_into(Path(argv[1]), builder))
        return 0
    if not argv:
        print(build_into(HERE.parent))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
