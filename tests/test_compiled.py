"""The compiled hot path (``ztnode._compiled``): when a process uses it, and that it does what
its sources do.

The differential test runs one deterministic in-memory scenario (tests/helpers/compiled_scenario)
twice in fresh interpreters, once from the sources (``ZTNODE_PURE=1``) and once compiled, and
requires the same transcript: every datagram's time, addresses and length, what each side
received, and the nodes' counters. Without a compiled build it skips, except under
``ZTNODE_REQUIRE_COMPILED=1`` (CI), where it and :func:`test_ci_runs_the_compiled_build` fail.
The rest of the suite runs on whatever the process chose, so in CI it tests the compiled
modules, and the sources through the pure pass of ``.ci/run``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ztnode import _compiled

ROOT = Path(__file__).resolve().parent.parent
REQUIRE = os.environ.get(_compiled.REQUIRE_ENV, "") not in ("", "0")
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (_compiled.PURE_ENV,)}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH", "")])]
    )
    env.update(extra)
    return env


def _scenario(tmp: Path, **extra: str) -> dict[str, object]:
    tmp.mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "tests.helpers.compiled_scenario", str(tmp)],
        env=_env(**extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_ci_runs_the_compiled_build() -> None:
    st = _compiled.status()
    if not st.compiled:
        if REQUIRE:
            pytest.fail(f"{_compiled.REQUIRE_ENV}=1 but the hot path runs from source: {st.reason}")
        pytest.skip(f"the hot path runs from source here: {st.reason}")
    assert _compiled.active()
    for rel in _compiled.MODULES:
        mod = sys.modules.get(_compiled.module_name(rel))
        if mod is not None:
            assert not str(mod.__file__).endswith(".py"), mod.__file__


def test_compiled_and_source_runs_agree(tmp_path: Path) -> None:
    """The same scenario, byte-for-byte the same decisions, from source and compiled."""
    if not _compiled.status().compiled:
        if REQUIRE:
            pytest.fail(f"no compiled build to compare: {_compiled.status().reason}")
        pytest.skip(_compiled.status().reason)
    pure = _scenario(tmp_path / "pure", **{_compiled.PURE_ENV: "1"})
    compiled = _scenario(tmp_path / "compiled")
    assert pure.pop("compiled") is False
    assert compiled.pop("compiled") is True
    assert pure["datagrams"] and pure["udp"]  # the scenario ran: something to compare
    assert compiled == pure


def test_scenario_is_deterministic(tmp_path: Path) -> None:
    """Without this the comparison above would prove nothing (or fail at random)."""
    one = _scenario(tmp_path / "one", **{_compiled.PURE_ENV: "1"})
    two = _scenario(tmp_path / "two", **{_compiled.PURE_ENV: "1"})
    assert one == two


def test_pure_env_loads_every_module_from_source() -> None:
    code = (
        "import importlib, ztnode._compiled as c\n"
        "files = [importlib.import_module(c.module_name(r)).__file__ for r in c.MODULES]\n"
        "print(c.status().reason); print(sum(f.endswith('.py') for f in files), len(files))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(**{_compiled.PURE_ENV: "1"}),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    assert out[0] == f"{_compiled.PURE_ENV} is set"
    n = len(_compiled.MODULES)
    assert out[1] == f"{n} {n}"


def _fake_package(root: Path) -> Path:
    """A package directory with every listed module as a source file (and one more)."""
    pkg = root / "ztnode"
    for rel in (*_compiled.MODULES, "other.py"):
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {rel}\n")
    return pkg


def _build_fake(pkg: Path, digest: str) -> None:
    (pkg / f"{_compiled.GROUP_PREFIX}{digest}__mypyc{SUFFIX}").write_bytes(b"")
    for rel in _compiled.MODULES:
        source = pkg / rel
        (source.parent / (source.stem + SUFFIX)).write_bytes(b"")


def test_probe_not_built(tmp_path: Path) -> None:
    st = _compiled.probe(_fake_package(tmp_path), environ=[])
    assert not st.compiled
    assert st.reason.startswith("not built")


def test_probe_built_for_these_sources(tmp_path: Path) -> None:
    pkg = _fake_package(tmp_path)
    _build_fake(pkg, _compiled.source_hash(pkg))
    st = _compiled.probe(pkg, environ=[])
    assert st.compiled and st.modules == len(_compiled.MODULES)
    assert not _compiled.probe(pkg, environ=[(_compiled.PURE_ENV, "1")]).compiled
    assert _compiled.probe(pkg, environ=[(_compiled.PURE_ENV, "0")]).compiled


def test_probe_any_edit_makes_the_build_stale(tmp_path: Path) -> None:
    """Compiled code carries constants and types of modules it does not list: an edit to any
    source of the package, listed or not, turns the build off until it is rebuilt."""
    pkg = _fake_package(tmp_path)
    _build_fake(pkg, _compiled.source_hash(pkg))
    (pkg / "other.py").write_text("# edited\n")
    st = _compiled.probe(pkg, environ=[])
    assert not st.compiled
    assert "other sources" in st.reason and st.fix == _compiled.REBUILD


def test_probe_a_missing_module_extension_turns_it_all_off(tmp_path: Path) -> None:
    """All or nothing: one module from source among compiled ones would break them."""
    pkg = _fake_package(tmp_path)
    _build_fake(pkg, _compiled.source_hash(pkg))
    tcp = pkg / "netstack" / f"tcp{SUFFIX}"
    tcp.unlink()
    st = _compiled.probe(pkg, environ=[])
    assert not st.compiled
    assert "ztnode.netstack.tcp" in st.reason


def test_hash_ignores_bytecode_caches(tmp_path: Path) -> None:
    pkg = _fake_package(tmp_path)
    before = _compiled.source_hash(pkg)
    cache = pkg / "__pycache__"
    cache.mkdir()
    (cache / "x.py").write_text("# a stray file in a cache\n")
    assert _compiled.source_hash(pkg) == before


def _age(pkg: Path, seconds: int = 60) -> None:
    """Every source of ``pkg`` last modified ``seconds`` ago (older than the racy window)."""
    when = time.time_ns() - seconds * 1_000_000_000
    for path in _compiled._scan(pkg)[0]:
        os.utime(path, ns=(when, when))


def _sources(pkg: Path) -> list[Path]:
    return _compiled._scan(pkg)[0]


@pytest.fixture
def writes_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python as it runs by default, writing its caches (some machines set
    PYTHONDONTWRITEBYTECODE, which also keeps the stamp from being written)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


def test_the_digest_is_remembered_and_then_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writes_bytecode: None
) -> None:
    pkg = _fake_package(tmp_path)
    _age(pkg)
    digest = _compiled.source_hash(pkg)
    assert _compiled.remembered_source_hash(pkg, _sources(pkg)) == digest
    assert (pkg / _compiled.STAMP).is_file()

    def no_hashing(*_: object) -> str:
        raise AssertionError("hashed although nothing changed")

    monkeypatch.setattr(_compiled, "source_hash", no_hashing)
    assert _compiled.remembered_source_hash(pkg, _sources(pkg)) == digest


@pytest.mark.parametrize("edit", ["content", "same size", "new file", "removed file"])
def test_any_change_since_the_stamp_is_hashed_again(
    tmp_path: Path, edit: str, writes_bytecode: None
) -> None:
    pkg = _fake_package(tmp_path)
    _age(pkg, 120)
    _compiled.remembered_source_hash(pkg, _sources(pkg))
    assert (pkg / _compiled.STAMP).is_file()
    other = pkg / "other.py"
    if edit == "content":
        other.write_text("# other.py, edited\n")
    elif edit == "same size":
        other.write_text(other.read_text().upper())  # same length, other bytes, a new time
    elif edit == "new file":
        (pkg / "new.py").write_text("# new\n")
    else:
        other.unlink()
    _age(pkg)  # older than the racy window again, yet newer than what the stamp remembers
    assert _compiled.remembered_source_hash(pkg, _sources(pkg)) == _compiled.source_hash(pkg)


def test_a_stamp_written_just_after_an_edit_is_not_trusted(
    tmp_path: Path, writes_bytecode: None
) -> None:
    """A source modified within the racy window of the stamp's writing could change again
    without its time changing: no stamp is written, and a stamp that says otherwise is
    ignored."""
    pkg = _fake_package(tmp_path)  # just written: racy
    digest = _compiled.remembered_source_hash(pkg, _sources(pkg))
    assert digest == _compiled.source_hash(pkg)
    assert not (pkg / _compiled.STAMP).exists()
    stats = {
        p.relative_to(pkg).as_posix(): [p.stat().st_size, p.stat().st_mtime_ns]
        for p in _sources(pkg)
    }
    forged = {"digest": "0" * 20, "written_ns": time.time_ns(), "files": stats}
    (pkg / "__pycache__").mkdir()
    (pkg / _compiled.STAMP).write_text(json.dumps(forged))
    assert _compiled.remembered_source_hash(pkg, _sources(pkg)) == digest


@pytest.mark.parametrize("junk", [b"", b"{", b"[]", b'{"digest": 1}', b'{"digest": "x"}'])
def test_a_damaged_stamp_is_ignored(tmp_path: Path, junk: bytes, writes_bytecode: None) -> None:
    pkg = _fake_package(tmp_path)
    _age(pkg)
    (pkg / "__pycache__").mkdir()
    (pkg / _compiled.STAMP).write_bytes(junk)
    assert _compiled.remembered_source_hash(pkg, _sources(pkg)) == _compiled.source_hash(pkg)


def test_no_stamp_without_bytecode_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _fake_package(tmp_path)
    _age(pkg)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    _compiled.remembered_source_hash(pkg, _sources(pkg))
    assert not (pkg / _compiled.STAMP).exists()


def test_a_package_without_a_build_is_not_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_hashing(*_: object) -> str:
        raise AssertionError("hashed although there is no build to match")

    monkeypatch.setattr(_compiled, "source_hash", no_hashing)
    assert _compiled.probe(_fake_package(tmp_path), environ=[]).reason.startswith("not built")


def test_every_listed_module_exists() -> None:
    pkg = Path(_compiled.__file__).parent
    for rel in _compiled.MODULES:
        assert (pkg / rel).is_file(), rel
    assert len(set(_compiled.MODULES)) == len(_compiled.MODULES)


def test_a_stray_extension_of_an_unlisted_module_is_not_loaded(tmp_path: Path) -> None:
    """A module that left the list keeps its old extension in a developer's tree until the next
    build: the finder loads its source instead of an extension whose library is gone."""
    pkg = _fake_package(tmp_path)
    (pkg / f"other{SUFFIX}").write_bytes(b"")
    (pkg / "_zt_accel.abi3.so").write_bytes(b"")  # no source of that name: not a stray
    assert _compiled._strays(pkg) == {"ztnode.other": pkg / "other.py"}


def test_the_in_tree_build_cleans_what_the_chooser_looks_for() -> None:
    pytest.importorskip("cffi")
    spec = importlib.util.spec_from_file_location(
        "_ztnode_accel_build", ROOT / "src" / "ztnode" / "accel" / "_build.py"
    )
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert build.GROUP_GLOB.startswith(_compiled.GROUP_PREFIX)
    assert build.GROUP_GLOB.endswith("__mypyc*")
