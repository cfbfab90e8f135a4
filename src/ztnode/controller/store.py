"""The controller's database: ZeroTierOne's network and member JSON objects in one SQLite file.

ZeroTierOne's FileDB keeps one JSON file per network and per member under ``controller.d``; a
crash between writing two of them (or in the middle of one) can lose or tear an edit. Here the
same JSON objects live as text in two SQLite tables, so a multi-object change (a network and all
of its members deleted, a member authorised and given an IP) commits as one transaction, and an
acknowledged write survives a crash: the database runs in WAL mode with ``synchronous=FULL``,
which makes every commit durable before it returns.

The objects stay opaque JSON because they are the API's currency (tools read and write them
verbatim) and ZeroTierOne's own fields grow between versions; only the keys are columns. The
schema carries a version number, and :data:`MIGRATIONS` brings an older file up to date at open,
each step in its own transaction, so an interrupted upgrade leaves a consistent older version.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Final, Protocol

JsonObject = dict[str, Any]
Migration = Callable[[sqlite3.Connection], None]

_ADDRESS_MASK: Final = (1 << 40) - 1
_NWID_MASK: Final = (1 << 64) - 1


class StoreError(Exception):
    """The database cannot be used: written by a newer ztnode, or an object lacks its keys."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now (a PostgreSQL server down or unreachable); nothing
    was written. Callers answer "unavailable" and try again later; the store reconnects."""


class Store(Protocol):
    """What the controller needs of its database; :class:`ControllerStore` (SQLite, one file)
    and :class:`~ztnode.controller.pgstore.PostgresStore` (several machines) provide it."""

    path: str

    @property
    def schema_version(self) -> int: ...

    def close(self) -> None: ...

    def transaction(self) -> AbstractContextManager[None]: ...

    def network_ids(self) -> list[int]: ...

    def get_network(self, nwid: int) -> JsonObject | None: ...

    def has_network(self, nwid: int) -> bool: ...

    def put_network(self, obj: JsonObject) -> None: ...

    def delete_network(self, nwid: int) -> JsonObject | None: ...

    def member_ids(self, nwid: int) -> list[int]: ...

    def members(self, nwid: int) -> list[JsonObject]: ...

    def get_member(self, nwid: int, address: int) -> JsonObject | None: ...

    def put_member(self, obj: JsonObject) -> None: ...

    def delete_member(self, nwid: int, address: int) -> JsonObject | None: ...


def _migrate_v1(db: sqlite3.Connection) -> None:
    """The first schema: networks keyed by nwid, members by (nwid, address), both as JSON.

    Keys are fixed-width lowercase hex text rather than integers because SQLite integers are
    signed 64-bit and network ids use all 64 bits. Members reference their network with a
    cascading delete, so removing a network can never leave orphans behind.
    """
    db.execute(
        "CREATE TABLE networks ("
        " nwid TEXT PRIMARY KEY NOT NULL CHECK (length(nwid) = 16),"
        " json TEXT NOT NULL)"
    )
    db.execute(
        "CREATE TABLE members ("
        " nwid TEXT NOT NULL REFERENCES networks(nwid) ON DELETE CASCADE,"
        " address TEXT NOT NULL CHECK (length(address) = 10),"
        " json TEXT NOT NULL,"
        " PRIMARY KEY (nwid, address))"
    )


# Applied in order: MIGRATIONS[i] takes the schema from version i to version i + 1.
MIGRATIONS: Final[tuple[Migration, ...]] = (_migrate_v1,)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def nwid_key(nwid: int) -> str:
    return f"{nwid & _NWID_MASK:016x}"


def address_key(address: int) -> str:
    return f"{address & _ADDRESS_MASK:010x}"


def _hex_field(obj: JsonObject, name: str, width: int) -> str:
    """The key of an object as stored: its ``name`` field, which must be ``width`` hex digits."""
    value = obj.get(name)
    if not isinstance(value, str) or len(value) != width:
        raise StoreError(f"object needs a {width}-digit hex {name!r}, has {value!r:.40}")
    try:
        int(value, 16)
    except ValueError:
        raise StoreError(f"object needs a {width}-digit hex {name!r}, has {value!r:.40}") from None
    return value.lower()


def object_keys(obj: JsonObject, *, member: bool) -> tuple[str, str]:
    """The stored keys of a network (``(nwid, "")``) or a member (``(nwid, address)``), checked."""
    if not member:
        return _hex_field(obj, "id", 16), ""
    return _hex_field(obj, "nwid", 16), _hex_field(obj, "id", 10)


def _dump(obj: JsonObject) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def _load(text: str) -> JsonObject:
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise StoreError("stored record is not a JSON object")
    return obj


class ControllerStore:
    """Networks and members, each a ZeroTierOne JSON object, durable and transactional.

    Every method is one transaction unless called inside :meth:`transaction`, which groups
    several writes into one all-or-nothing commit (nested blocks become savepoints, so an inner
    failure that the caller catches undoes only the inner block). Objects handed out are fresh
    copies: changing them changes nothing stored until they are put back.

    ``path`` is a file (created if missing) or ``":memory:"`` for tests. ``migrations`` exists
    so that tests can simulate an upgrade from an older schema; normal callers leave it alone.
    """

    def __init__(self, path: str | Path, *, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.path = str(path)
        self._migrations = tuple(migrations)
        # One connection shared by the event loop and any executor thread, serialised here.
        self._lock = threading.RLock()
        self._depth = 0
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False
        )
        try:
            self._configure()
            self._upgrade()
        except BaseException:
            self._db.close()
            self._db = None
            raise

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the controller store is closed")
        return self._db

    def _configure(self) -> None:
        db = self._conn
        if self.path != ":memory:":
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise StoreError(f"cannot put {self.path} in WAL mode (got {mode!r})")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=5000")

    def _upgrade(self) -> None:
        """Create the version table if needed, then apply each missing migration in its own
        transaction (the version bump commits with the step it records)."""
        db = self._conn
        with self.transaction():
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            if db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 0:
                db.execute("INSERT INTO schema_version (version) VALUES (0)")
        version = self.schema_version
        if version > len(self._migrations):
            raise StoreError(
                f"{self.path} has schema version {version}; this ztnode knows only up to "
                f"{len(self._migrations)} (written by a newer version?)"
            )
        for step in range(version, len(self._migrations)):
            with self.transaction():
                self._migrations[step](db)
                db.execute("UPDATE schema_version SET version = ?", (step + 1,))

    @property
    def schema_version(self) -> int:
        row = self._conn.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row is not None else 0

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> ControllerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together when the block ends, or none do if it raises.

        ``BEGIN IMMEDIATE`` takes the write lock up front, so a read-then-write sequence inside
        the block cannot be invalidated by another writer (another process on the same file).
        """
        with self._lock:
            db = self._conn
            outer = self._depth == 0
            savepoint = f"sp{self._depth + 1}"
            db.execute("BEGIN IMMEDIATE" if outer else f"SAVEPOINT {savepoint}")
            self._depth += 1
            try:
                yield
            except BaseException:
                if outer:
                    db.execute("ROLLBACK")
                else:
                    db.execute(f"ROLLBACK TO {savepoint}")
                    db.execute(f"RELEASE {savepoint}")
                raise
            else:
                db.execute("COMMIT" if outer else f"RELEASE {savepoint}")
            finally:
                self._depth -= 1

    # --- networks ----------------------------------------------------------------------------

    def network_ids(self) -> list[int]:
        with self._lock:
            rows = self._conn.execute("SELECT nwid FROM networks ORDER BY nwid").fetchall()
        return [int(r[0], 16) for r in rows]

    def get_network(self, nwid: int) -> JsonObject | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT json FROM networks WHERE nwid = ?", (nwid_key(nwid),)
            ).fetchone()
        return _load(row[0]) if row is not None else None

    def has_network(self, nwid: int) -> bool:
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM networks WHERE nwid = ?", (nwid_key(nwid),)
            ).fetchone()
        return row is not None

    def put_network(self, obj: JsonObject) -> None:
        """Insert or replace a network, keyed by its ``id`` field (16 hex digits)."""
        key = _hex_field(obj, "id", 16)
        text = _dump(obj)
        with self.transaction():
            self._conn.execute(
                "INSERT INTO networks (nwid, json) VALUES (?, ?)"
                " ON CONFLICT (nwid) DO UPDATE SET json = excluded.json",
                (key, text),
            )

    def delete_network(self, nwid: int) -> JsonObject | None:
        """Remove a network and all of its members; the old network object, or ``None``."""
        key = nwid_key(nwid)
        with self.transaction():
            old = self.get_network(nwid)
            if old is not None:
                self._conn.execute("DELETE FROM members WHERE nwid = ?", (key,))
                self._conn.execute("DELETE FROM networks WHERE nwid = ?", (key,))
        return old

    # --- members -----------------------------------------------------------------------------

    def member_ids(self, nwid: int) -> list[int]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT address FROM members WHERE nwid = ? ORDER BY address", (nwid_key(nwid),)
            ).fetchall()
        return [int(r[0], 16) for r in rows]

    def members(self, nwid: int) -> list[JsonObject]:
        """Every member object of a network, in address order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT json FROM members WHERE nwid = ? ORDER BY address", (nwid_key(nwid),)
            ).fetchall()
        return [_load(r[0]) for r in rows]

    def get_member(self, nwid: int, address: int) -> JsonObject | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT json FROM members WHERE nwid = ? AND address = ?",
                (nwid_key(nwid), address_key(address)),
            ).fetchone()
        return _load(row[0]) if row is not None else None

    def put_member(self, obj: JsonObject) -> None:
        """Insert or replace a member, keyed by its ``nwid`` (16 hex) and ``id`` (10 hex)
        fields. Its network must exist (:class:`StoreError` otherwise)."""
        nwid = _hex_field(obj, "nwid", 16)
        address = _hex_field(obj, "id", 10)
        text = _dump(obj)
        with self.transaction():
            try:
                self._conn.execute(
                    "INSERT INTO members (nwid, address, json) VALUES (?, ?, ?)"
                    " ON CONFLICT (nwid, address) DO UPDATE SET json = excluded.json",
                    (nwid, address, text),
                )
            except sqlite3.IntegrityError as e:
                raise StoreError(f"member {address} of unknown network {nwid}: {e}") from None

    def delete_member(self, nwid: int, address: int) -> JsonObject | None:
        """Remove one member; the old member object, or ``None`` if there was none."""
        with self.transaction():
            old = self.get_member(nwid, address)
            if old is not None:
                self._conn.execute(
                    "DELETE FROM members WHERE nwid = ? AND address = ?",
                    (nwid_key(nwid), address_key(address)),
                )
        return old


__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "ControllerStore",
    "JsonObject",
    "Migration",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "address_key",
    "nwid_key",
    "object_keys",
]
