"""A throwaway PostgreSQL server for the controller's PostgreSQL tests.

The server is this machine's PostgreSQL (Debian's ``postgresql`` package, which ``.ci/run``
installs), run from a fresh ``initdb`` in a temporary folder, listening on a Unix socket in that
folder only (``listen_addresses=''``: no TCP port, nothing reachable from elsewhere), started
once per test session and stopped (by its pid file, ``pg_ctl stop``) at the end. PostgreSQL
refuses to run as root, so as root it runs as the ``postgres`` user the package created. Each
test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class PgServer:
    socket_dir: Path
    user: str

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{dbname}?host={self.socket_dir}"


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_server_user(cmd: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *cmd] if owner else cmd


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def start_server() -> tuple[PgServer, Path, str | None]:
    """``(server, its folder, the OS user it runs as or None for us)``; skips without
    PostgreSQL or psycopg."""
    pytest.importorskip("psycopg")
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    owner: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        owner = "postgres"
    base = Path(tempfile.mkdtemp(prefix="ztnode-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if owner is not None:
        entry = pwd.getpwnam(owner)
        for p in (base, sock):
            os.chown(p, entry.pw_uid, entry.pw_gid)
    r = _run(
        _as_server_user(
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "ztnode", "--no-sync"],
            owner,
        )
    )
    if r.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {r.stdout}{r.stderr}")
    opts = f"-c listen_addresses='' -k {sock} -c max_connections=200"
    r = _run(
        _as_server_user(
            [str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-t", "60",
             "-l", str(base / "log"), "start"],
            owner,
        )
    )  # fmt: skip
    if r.returncode != 0:
        log = (base / "log").read_text() if (base / "log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {r.stdout}{r.stderr}{log}")
    return PgServer(sock, "ztnode"), base, owner


def stop_server(base: Path, owner: str | None) -> None:
    bindir = _bindir()
    if bindir is not None:
        subprocess.run(
            _as_server_user(
                [str(bindir / "pg_ctl"), "-D", str(base / "data"), "-m", "fast", "-w", "stop"],
                owner,
            ),
            capture_output=True,
            timeout=60,
            check=False,
        )
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server, base, owner = start_server()
    try:
        yield server
    finally:
        stop_server(base, owner)


_numbers = itertools.count(1)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A URL of a fresh, empty database, dropped after the test."""
    import psycopg

    name = f"t{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(pg_server.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield pg_server.url(name)
    finally:
        with psycopg.connect(pg_server.url(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


__all__ = ["PgServer", "pg_server", "pg_url", "start_server", "stop_server"]
