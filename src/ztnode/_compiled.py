"""The compiled hot path: the packet path's Python modules built with mypyc, and the choice,
once per process, between them and their sources.

Why: a small message crosses about 430 Python calls per packet (TCB, stack, node, transport),
and no single one stands out (docs/performance.md, issue 16). Compiled by mypyc from the same
typed sources, those calls become C calls between native classes: the round trip takes about
half the time. The sources stay the reference: every module listed here runs from its ``.py``
when the compiled build is absent, stale or turned off, and the tests run both ways
(tests/test_compiled.py compares the two byte for byte).

All or nothing: compiled modules call each other's native classes directly, so one module from
its source among compiled ones would break them. The build names its shared library after a
hash of the package's sources (:func:`group_name`); a process uses the compiled modules only
when the library for the sources it sees is there, with every module's extension beside its
source. Otherwise (not built, built from other sources, ``ZTNODE_PURE=1``) a finder placed in
front of the import system loads every listed module from its ``.py``.

This file imports only the standard library: ``setup.py`` and ``accel/_build.py`` load it by
path at build time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

#: Set to 1 to run every listed module from its source even where the compiled build is there.
PURE_ENV = "ZTNODE_PURE"
#: Set to 1 where the compiled build must be in use (CI): tests/test_compiled.py fails otherwise.
REQUIRE_ENV = "ZTNODE_REQUIRE_COMPILED"
#: The shared library's name is this prefix, a hash of the sources, and mypyc's ``__mypyc``.
GROUP_PREFIX = "_hot_"

#: The hot path, as paths relative to the package directory: what one small message or one
#: bulk segment runs through, from the socket call to the datagram and back. A compiled class's
#: methods cannot be replaced on an instance: whatever must observe one does so through a hook
#: (``Node.tap``, ``Host.sent_taps``, ``Switch.dispatch_observer``).
MODULES: tuple[str, ...] = (
    "accel/_hot.py",
    "core/bond/layer.py",
    "core/counters.py",
    "core/frames.py",
    "core/housekeeper.py",
    "core/multicaster.py",
    "core/network.py",
    "core/node.py",
    "core/path.py",
    "core/peer.py",
    "core/replay.py",
    "core/routecache.py",
    "core/switch.py",
    "core/tracer.py",
    "core/validator.py",
    "core/vl1.py",
    "core/whois.py",
    "netstack/_reassembly.py",
    "netstack/arpcache.py",
    "netstack/checksum.py",
    "netstack/handles.py",
    "netstack/host.py",
    "netstack/igmp.py",
    "netstack/ipinput.py",
    "netstack/ipoutput.py",
    "netstack/ipv4.py",
    "netstack/ipv6.py",
    "netstack/porttable.py",
    "netstack/stack.py",
    "netstack/stackconfig.py",
    "netstack/tcp.py",
    "netstack/tcp_cc.py",
    "netstack/tcp_options.py",
    "netstack/tcp_rcvwnd.py",
    "netstack/tcp_recovery.py",
    "netstack/tcp_rto.py",
    "netstack/tcp_rxqueue.py",
    "netstack/tcp_sack.py",
    "netstack/tcp_sendbuf.py",
    "netstack/tcp_sender.py",
    "netstack/tcp_seq.py",
    "netstack/tcp_states.py",
    "netstack/tcp_timers.py",
    "netstack/tcp_timewait.py",
    "netstack/tcpmux.py",
    "netstack/tcpwire.py",
    "netstack/tso.py",
    "netstack/udp.py",
    "netstack/udpmux.py",
    "sockets/aio_tcp.py",
    "sockets/addresses.py",
    "sockets/aio_udp.py",
    "sockets/dispatch.py",
    "transport/burst.py",
    "transport/randompool.py",
    "transport/service.py",
    "transport/tcprelay.py",
    "transport/udp.py",
    "wire/constants.py",
    "wire/mac.py",
)

PACKAGE = "ztnode"
HERE = Path(__file__).resolve().parent


def module_name(rel: str) -> str:
    """``netstack/tcp.py`` -> ``ztnode.netstack.tcp``."""
    return PACKAGE + "." + rel.removesuffix(".py").replace("/", ".")


def _scan(package_dir: Path) -> tuple[list[Path], list[Path]]:
    """The package's sources and extension modules, found in one walk of its tree: every
    ``import ztnode`` needs both (the hash, the strays), and three ``rglob`` passes cost more
    than the hash itself."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    sources: list[Path] = []
    extensions: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(package_dir):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name.endswith(".py"):
                sources.append(Path(dirpath, name))
            elif name.endswith(suffixes):
                extensions.append(Path(dirpath, name))
    return sources, extensions


def source_hash(package_dir: Path = HERE, sources: list[Path] | None = None) -> str:
    """A hash of every ``.py`` file of the package (``sources``, when the caller walked the
    tree already): compiled code depends on more than its own modules (constants and types it
    imports are built in), so any change makes a build stale."""
    h = hashlib.sha256()
    for path in sorted(_scan(package_dir)[0] if sources is None else sources):
        h.update(path.relative_to(package_dir).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:20]


#: Where the sources' digest is remembered with every source's size and modification time, in
#: the package's bytecode cache directory (written where the package is writable, as Python
#: writes its bytecode there; never when ``sys.dont_write_bytecode``). The next ``import ztnode``
#: then stats the sources instead of reading them all: ~0.5 ms instead of ~5 ms for 2.2 MB.
STAMP = "__pycache__/ztnode-sources.json"
#: A source modified this close to the moment its stamp was written could have been edited again
#: within the file system's time granularity without its time changing: such a stamp is not
#: trusted (the "racy" case git guards against the same way).
RACY_NS = 2_000_000_000


def remembered_source_hash(package_dir: Path, sources: list[Path]) -> str:
    """:func:`source_hash`, taken from the stamp when every source's size and modification time
    match what was hashed (the rule Python's own bytecode cache trusts), else computed and
    remembered."""
    try:
        stats = {
            p.relative_to(package_dir).as_posix(): (st.st_size, st.st_mtime_ns)
            for p in sources
            for st in (p.stat(),)
        }
    except OSError:
        return source_hash(package_dir, sources)
    stamp = package_dir / STAMP
    known = _read_stamp(stamp, stats)
    if known is not None:
        return known
    digest = source_hash(package_dir, sources)
    if not sys.dont_write_bytecode:
        _write_stamp(stamp, digest, stats)
    return digest


def _read_stamp(stamp: Path, stats: dict[str, tuple[int, int]]) -> str | None:
    try:
        data = json.loads(stamp.read_bytes())
        digest, written, files = data["digest"], data["written_ns"], data["files"]
        if not (isinstance(digest, str) and isinstance(written, int) and isinstance(files, dict)):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(files) != len(stats):
        return None
    for rel, (size, mtime) in stats.items():
        if files.get(rel) != [size, mtime] or mtime > written - RACY_NS:
            return None
    return digest


def _write_stamp(stamp: Path, digest: str, stats: dict[str, tuple[int, int]]) -> None:
    now = time.time_ns()
    if any(mtime > now - RACY_NS for _, mtime in stats.values()):
        return  # an edit just now: the next import, later, remembers it
    body = json.dumps(
        {"digest": digest, "written_ns": now, "files": {k: list(v) for k, v in stats.items()}}
    ).encode()
    tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
    try:
        stamp.parent.mkdir(exist_ok=True)
        tmp.write_bytes(body)
        os.replace(tmp, stamp)  # whole or not at all, for a process importing at the same time
    except OSError:  # a read-only install: hashing on every import is all it costs
        with contextlib.suppress(OSError):
            tmp.unlink()


def group_name(digest: str) -> str:
    """mypyc's group for sources of hash ``digest``; its shared library is this plus
    ``__mypyc`` and lives in the package."""
    return f"{PACKAGE}.{GROUP_PREFIX}{digest}"


#: What to do about a build that is there but of other sources.
REBUILD = "rebuild it: python src/ztnode/accel/_build.py --compiled (or reinstall)"


class Status:
    """What this process runs: ``compiled`` or not, why not, and what would fix it (empty: the
    build is simply not there, so install it as the fast path's other parts are)."""

    __slots__ = ("compiled", "fix", "modules", "reason")

    def __init__(self, compiled: bool, reason: str, modules: int, fix: str = "") -> None:
        self.compiled = compiled
        self.reason = reason
        self.modules = modules
        self.fix = fix

    def __repr__(self) -> str:
        return f"Status(compiled={self.compiled}, reason={self.reason!r})"


def _extension(directory: Path, stem: str) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = directory / (stem + suffix)
        if candidate.exists():
            return candidate
    return None


def _builds(package_dir: Path) -> list[str]:
    """The compiled builds' shared libraries in the package, of whatever sources."""
    return sorted(
        p.name for p in package_dir.glob(GROUP_PREFIX + "*__mypyc*") if p.suffix in (".so", ".pyd")
    )


def probe(
    package_dir: Path = HERE,
    environ: Sequence[tuple[str, str]] | None = None,
    sources: list[Path] | None = None,
) -> Status:
    """Decide, without importing anything, whether the compiled build can be used."""
    env = dict(environ) if environ is not None else dict(os.environ)
    if env.get(PURE_ENV, "") not in ("", "0"):
        return Status(False, f"{PURE_ENV} is set", 0, fix="unset that variable to use it")
    builds = _builds(package_dir)
    if not builds:  # nothing to match: no need to read the sources
        return Status(False, "not built (no C compiler or mypyc at install time)", 0)
    if sources is None:
        sources = _scan(package_dir)[0]
    digest = remembered_source_hash(package_dir, sources)
    lib = _extension(package_dir, f"{GROUP_PREFIX}{digest}__mypyc")
    if lib is None:
        return Status(False, f"the compiled build ({builds[0]}) is of other sources", 0, REBUILD)
    for rel in MODULES:
        path = package_dir / rel
        if _extension(path.parent, path.stem) is None:
            return Status(False, f"the compiled build lacks {module_name(rel)}", 0, REBUILD)
    return Status(True, "", len(MODULES))


def _strays(package_dir: Path, extensions: list[Path] | None = None) -> dict[str, Path]:
    """Modules of the package with a compiled extension beside their source that the list does
    not name (a developer's tree after a module left the list): loaded from source always, since
    their extension belongs to a build that is gone. ``extensions``: the tree's extension
    files, when the caller walked it already."""
    listed = {module_name(rel) for rel in MODULES}
    out: dict[str, Path] = {}
    found = _scan(package_dir)[1] if extensions is None else extensions
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for ext in found:
            if not ext.name.endswith(suffix):
                continue
            source = ext.with_name(ext.name[: -len(suffix)] + ".py")
            if not source.exists():
                continue  # the accelerator, the shared library: no source of that name
            name = module_name(source.relative_to(package_dir).as_posix())
            if name not in listed:
                out[name] = source
    return out


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Loads the listed modules from their sources (the compiled build is not to be used)."""

    def __init__(self, names: dict[str, Path]) -> None:
        self._names = names

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        source = self._names.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


#: The decision of this process (one entry, once :func:`install` ran).
_decided: list[Status] = []


def install() -> Status:
    """Decide once for this process; from then on the listed modules load compiled or all from
    source. Called by ``ztnode/__init__.py`` before anything imports them."""
    if _decided:
        return _decided[0]
    strays: dict[str, Path] = {}
    try:
        sources, extensions = _scan(HERE)
        status = probe(sources=sources)
        strays = _strays(HERE, extensions)
    except OSError as e:  # an unreadable source tree: the sources still import as usual
        status = Status(False, f"could not check the sources ({e})", 0)
    _decided.append(status)
    names = {} if status.compiled else {module_name(rel): HERE / rel for rel in MODULES}
    names.update(strays)
    if names:
        sys.meta_path.insert(0, _SourceFinder(names))
    if status.fix == REBUILD:  # a developer's tree after an edit: say so once
        logging.getLogger("ztnode").warning(
            "compiled hot path off: %s; %s", status.reason, status.fix
        )
    return status


def status() -> Status:
    """What :func:`install` decided (deciding now if nothing did yet)."""
    return _decided[0] if _decided else install()


def active() -> bool:
    """Whether the hot path runs compiled in this process: a listed module's file is its
    extension, not its source."""
    mod = sys.modules.get(module_name(MODULES[0]))
    if mod is None:
        return status().compiled
    return not str(getattr(mod, "__file__", "")).endswith(".py")


__all__ = [
    "MODULES",
    "PURE_ENV",
    "REQUIRE_ENV",
    "Status",
    "active",
    "group_name",
    "install",
    "module_name",
    "probe",
    "remembered_source_hash",
    "source_hash",
    "status",
]
