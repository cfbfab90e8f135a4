"""The release build as a user gets it: the wheel carries the fast path to a machine that has no
compiler, no -dev headers and no libsodium, and the sdist there still installs, with one warning.

How: the sdist and a wheel are built from a copy of the sources (``python -m build``, no network),
the wheel is repaired for manylinux (``auditwheel``), and each is installed into a fresh venv
inside a mount namespace (``unshare -m``) where the C compilers, ``/usr/include``, Python's own
headers and libsodium's shared objects are covered up. There:

- the wheel: the accelerator and the compiled hot path load, libsodium is absent and not
  missed, and ``ztnode doctor``
  (self-test plus a real transfer between two in-process members) passes with the fast path;
  its transfer rate is within 10 % of this checkout's source build (with headers), measured
  alternately in the same run;
- the sdist: pip installs it, the build says why the accelerator was not built in exactly one
  warning line, and ztnode runs on the Python path, saying so.

Everything runs on loopback; the namespace only hides files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

import ztnode

pytestmark = [pytest.mark.dist, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# Bulk data per transfer: over a second of traffic on the fast path, so loop start-up noise
# stays small against it.
MEGABYTES = 96
RUNS = 3
# Binaries that could compile C, hidden in the namespace wherever the PATH finds them.
COMPILERS = ("gcc", "cc", "c89", "c99", "g++", "c++", "clang", "tcc", "x86_64-linux-gnu-gcc")


def _need_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for a mount namespace (unshare -m)")
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found")
    for mod in ("build", "auditwheel"):
        if subprocess.run([sys.executable, "-c", f"import {mod}"], check=False).returncode:
            pytest.skip(f"python package {mod} missing (pip install '.[test]')")


def _run(cmd: list[str], timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)


def _copy_sources(dst: Path) -> Path:
    """The files a release is built from: no build products, no caches, no local extension."""
    src = dst / "src-copy"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    skip = shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info", ".*_cache")
    shutil.copytree(ROOT / "src", src / "src", ignore=skip)
    return src


def _build(tmp: Path) -> tuple[Path, Path]:
    """``(repaired wheel, sdist)``."""
    src = _copy_sources(tmp)
    out = tmp / "dist"
    env = dict(os.environ, ZTNODE_REQUIRE_ACCEL_BUILD="1")
    r = _run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        env=env,
        timeout=1200,  # the wheel compiles the hot path (mypyc)
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    wheels = list(out.glob("*.whl"))
    sdists = list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    # The compiled hot path makes the wheel one CPython's (mypyc uses the full C API).
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert f"-{py}-{py}-" in wheels[0].name, wheels[0].name
    repaired = tmp / "wheelhouse"
    r = _run(["auditwheel", "repair", "-w", str(repaired), str(wheels[0])])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (fixed,) = repaired.glob("*.whl")
    assert "manylinux" in fixed.name, fixed.name
    return fixed, sdists[0]


def _hiding_script(tmp: Path, body: str, *, compiler: bool = False) -> Path:
    """A shell script that, in its own mount namespace, covers libsodium and OpenSSL's headers
    and, unless ``compiler``, the C compilers, ``/usr/include`` and Python's headers too; it
    proves they are gone, then runs ``body``."""
    multiarch = _multiarch()
    hide_files: list[str] = []
    for pattern in ("libsodium.so*",):
        for d in ("/usr/lib", "/usr/lib64", "/usr/local/lib", f"/usr/lib/{multiarch}"):
            hide_files.extend(str(p) for p in Path(d).glob(pattern) if p.is_file())
    # The -dev packages' headers, hidden in either case.
    hide_dirs = ["/usr/include/openssl", "/usr/include/sodium", f"/usr/include/{multiarch}/openssl"]
    hide_files += [p for p in ("/usr/include/sodium.h",) if Path(p).is_file()]
    if not compiler:
        for name in COMPILERS:
            found = shutil.which(name)
            if found:
                hide_files.append(os.path.realpath(found))
        hide_dirs += ["/usr/include", sysconfig.get_paths()["include"]]
    lines = ["set -eu", "mount --make-rprivate /"]
    # Files first, then folders deepest first: a folder covered by a tmpfs has no mount points
    # left inside it.
    for f in dict.fromkeys(hide_files):
        lines.append(f"mount --bind /dev/null '{f}'")
    for d in sorted(dict.fromkeys(hide_dirs), key=lambda p: -p.count("/")):
        if Path(d).is_dir():
            lines.append(f"mount -t tmpfs -o size=1m tmpfs '{d}'")
    # The proof: no library headers (a present but empty sodium.h counts as gone) ...
    lines += [
        "test ! -s /usr/include/sodium.h && test ! -e /usr/include/openssl/evp.h",
        "test ! -e /usr/include/sodium/core.h",
    ]
    if not compiler:  # ... and the machine looks like one with Python and pip only
        lines += [
            "for c in " + " ".join(COMPILERS) + "; do",
            "  if command -v $c >/dev/null 2>&1 && $c --version >/dev/null 2>&1; then",
            '    echo "compiler $c still runs" >&2; exit 90; fi',
            "done",
            f"test ! -e '{sysconfig.get_paths()['include']}/Python.h'",
        ]
    else:
        lines.append("gcc --version >/dev/null")
    lines.append(body)
    script = tmp / f"hidden-{len(list(tmp.glob('hidden-*')))}.sh"
    script.write_text("\n".join(lines) + "\n")
    return script


def _multiarch() -> str:
    return str(sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu")


def _venv(path: Path) -> Path:
    """A fresh venv that sees this interpreter's packages (ztnode's dependencies: no network)
    but installs ztnode itself into its own site-packages, which come first."""
    r = _run([sys.executable, "-m", "venv", "--system-site-packages", str(path)])
    assert r.returncode == 0, r.stderr
    return path / "bin" / "python"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZTNODE_")}
    env.pop("PYTHONPATH", None)
    return env


def _doctor_json(
    *, hidden: Path | None = None, extra: str = "", timeout: float = 300
) -> dict[str, Any]:
    """The doctor's report: in hiding (the script runs it) or from the ztnode this test imports
    (this checkout's source build, with headers)."""
    env = _clean_env()
    if hidden is not None:
        r = _run(["unshare", "-m", "bash", str(hidden)], env=env, timeout=timeout)
    else:
        env["PYTHONPATH"] = str(Path(ztnode.__file__).resolve().parents[1])
        cmd = [sys.executable, "-m", "ztnode", "doctor", "--json", "--megabytes", str(MEGABYTES)]
        r = _run([*cmd, *extra.split()], env=env, timeout=300, cwd="/")
    assert r.returncode in (0, 1), r.stdout[-2000:] + r.stderr[-3000:]
    start = r.stdout.index("{")
    report: dict[str, Any] = json.loads(r.stdout[start:])
    report["_stderr"] = r.stderr
    report["_rc"] = r.returncode
    return report


def test_wheel_is_fast_without_compiler_headers_or_libsodium(tmp_path: Path) -> None:
    _need_tools()
    wheel, sdist = _build(tmp_path)

    # The wheel, installed and run where nothing could have built it.
    wpy = _venv(tmp_path / "venv-wheel")
    probe = (
        "import json, ztnode, ctypes\n"
        "from ztnode.crypto import _cext, _sodium, salsa\n"
        "from ztnode import accel\n"
        "try:\n"
        "    ctypes.CDLL('libsodium.so.23'); sodium_loads = True\n"
        "except OSError:\n"
        "    sodium_loads = False\n"
        "from ztnode import _compiled\n"
        "print(json.dumps({'file': ztnode.__file__, 'accel': accel.AVAILABLE,\n"
        "  'compiled': _compiled.active(), 'compiled_reason': _compiled.status().reason,\n"
        "  'reason': accel.REASON, 'aes': accel.AES_AVAILABLE, 'sodium': _sodium.lib is not None,\n"
        "  'sodium_loads': sodium_loads, 'salsa': salsa.backend().name}))\n"
    )
    (tmp_path / "probe.py").write_text(probe)
    install = f"'{wpy}' -m pip install --no-deps --no-index -q '{wheel}'"
    setup = _hiding_script(tmp_path, f"{install}\ncd / && '{wpy}' '{tmp_path / 'probe.py'}'")
    r = _run(["unshare", "-m", "bash", str(setup)], env=_clean_env())
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen["file"].startswith(str(tmp_path / "venv-wheel")), seen
    assert seen["accel"] and seen["aes"], seen
    assert seen["compiled"], seen
    assert not seen["sodium"] and not seen["sodium_loads"], seen
    assert seen["salsa"] == "ztnode-c", seen

    # Speed: the wheel in hiding against this checkout's source build, alternately.
    doctor_hidden = _hiding_script(
        tmp_path, f"cd / && '{wpy}' -m ztnode doctor --json --require-fast --megabytes {MEGABYTES}"
    )
    wheel_rates: list[float] = []
    source_rates: list[float] = []
    for _ in range(RUNS):
        src_report = _doctor_json(extra="--require-fast")
        assert src_report["ok"], src_report
        source_rates.append(src_report["throughputMBs"])
        whl_report = _doctor_json(hidden=doctor_hidden)
        assert whl_report["ok"], whl_report
        assert whl_report["fastPath"]["fast"], whl_report["fastPath"]
        wheel_rates.append(whl_report["throughputMBs"])
    best_wheel, best_source = max(wheel_rates), max(source_rates)
    print(f"transfer MB/s: wheel {wheel_rates}, source build {source_rates}")
    assert best_wheel >= 0.9 * best_source, (wheel_rates, source_rates)

    # The sdist where nothing can compile: it installs, with one warning line, and runs slowly.
    spy = _venv(tmp_path / "venv-sdist")
    sdist_install = (
        f"'{spy}' -m pip install --no-deps --no-index --no-build-isolation -v '{sdist}'"
        f" > '{tmp_path / 'sdist-install.log'}' 2>&1\n"
        f"cd / && '{spy}' -m ztnode doctor --json --megabytes 8"
    )
    report = _doctor_json(hidden=_hiding_script(tmp_path, sdist_install), timeout=900)
    log = (tmp_path / "sdist-install.log").read_text()
    assert "Successfully installed ztnode" in log, log[-3000:]
    warnings = re.findall(r"WARNING: ztnode: .*", log)
    assert len(warnings) == 1, warnings
    assert "wheel" in warnings[0] and "python3-dev" in warnings[0], warnings[0]
    assert report["ok"] and not report["fastPath"]["fast"], report
    assert "install ztnode from a wheel" in report["fastPath"]["summary"]
    print(f"sdist without a compiler: {report['throughputMBs']:.1f} MB/s ({warnings[0]})")


def test_source_build_needs_no_library_headers(tmp_path: Path) -> None:
    """The README's ``pip install .`` on a machine with a C compiler and Python's headers but no
    OpenSSL or libsodium headers or libsodium (what the issue's new user had) gets the fast
    path, and its build says nothing to warn about."""
    _need_tools()
    src = _copy_sources(tmp_path)
    py = _venv(tmp_path / "venv-source")
    log = tmp_path / "source-install.log"
    body = (
        f"'{py}' -m pip install --no-deps --no-index --no-build-isolation -v '{src}'"
        f" > '{log}' 2>&1\n"
        f"cd / && '{py}' -m ztnode doctor --json --quick --require-fast"
    )
    # The install compiles the hot path too (mypyc, a few minutes on a busy machine).
    report = _doctor_json(hidden=_hiding_script(tmp_path, body, compiler=True), timeout=1200)
    text = log.read_text()
    assert "Successfully installed ztnode" in text, text[-3000:]
    assert "WARNING: ztnode:" not in text, text[-3000:]
    assert report["ok"] and report["fastPath"]["fast"], report
    assert report["_rc"] == 0
