"""The controller's database on PostgreSQL: several controller machines, one set of networks.

ZeroTier Central keeps its controllers on PostgreSQL so that several machines serve the same
networks and the loss of one loses nothing. This store keeps the very objects
:class:`~ztnode.controller.store.ControllerStore` keeps (ZeroTierOne's network and member JSON,
as ``jsonb`` so operators can query them), with the same interface and semantics:

- every write is transactional; :meth:`PostgresStore.transaction` groups several into one commit
  (nested blocks are savepoints), and a commit acknowledged is durable (PostgreSQL's WAL);
- the schema is versioned; :data:`PG_MIGRATIONS` bring an older database up to date at open,
  under an advisory lock, so two instances starting at once never both migrate;
- each committed write sends a notification on :data:`CHANNEL` (``NOTIFY``, delivered on commit
  only, so a rolled-back write tells no one): :meth:`PostgresStore.listen` lets every instance
  hear what the others changed and push it to the members connected to it;
- a lost connection is survived: calls raise :class:`StoreUnavailable` (the API answers 503,
  members keep the configs they have) and the next call after a backoff reconnects.

psycopg 3 is an optional dependency (``pip install 'ztnode[postgres]'``).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from ztnode.controller.store import (
    JsonObject,
    StoreError,
    StoreUnavailable,
    address_key,
    nwid_key,
    object_keys,
)

PgMigration = Callable[[Any], None]

#: The notification channel: payload ``n <nwid> <instance>`` (a network) or
#: ``m <nwid> <address> <instance>`` (a member), ``instance`` the writer's.
CHANNEL: Final = "ztnode_controller"
# Any constant: the advisory lock that serialises schema upgrades across instances.
_MIGRATION_LOCK: Final = 0x7A74_6E6F_6465
# Reconnection backoff: first retry after this, doubling up to the cap.
BACKOFF_MIN_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0


def _pg_migrate_v1(cur: Any) -> None:
    """The first schema: the same two tables as SQLite's, the objects as ``jsonb``; members
    reference their network with a cascading delete."""
    cur.execute(
        "CREATE TABLE networks ("
        " nwid text PRIMARY KEY CHECK (length(nwid) = 16),"
        " json jsonb NOT NULL)"
    )
    cur.execute(
        "CREATE TABLE members ("
        " nwid text NOT NULL REFERENCES networks(nwid) ON DELETE CASCADE,"
        " address text NOT NULL CHECK (length(address) = 10),"
        " json jsonb NOT NULL,"
        " PRIMARY KEY (nwid, address))"
    )


def _pg_migrate_v2(cur: Any) -> None:
    """Where each member was last seen and by which instance: not part of the member's object
    (no revision, no notification), so that the other instances can reach members they have
    never served and so take over from an instance that dies."""
    cur.execute(
        "CREATE TABLE member_seen ("
        " nwid text NOT NULL,"
        " address text NOT NULL,"
        " physical text NOT NULL,"
        " seen bigint NOT NULL,"
        " instance text NOT NULL,"
        " PRIMARY KEY (nwid, address),"
        " FOREIGN KEY (nwid, address) REFERENCES members(nwid, address) ON DELETE CASCADE)"
    )
    cur.execute("CREATE INDEX member_seen_by_time ON member_seen (seen)")


PG_MIGRATIONS: Final[tuple[PgMigration, ...]] = (_pg_migrate_v1, _pg_migrate_v2)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as e:
        raise StoreError(
            "a PostgreSQL controller database needs psycopg 3: pip install 'ztnode[postgres]'"
        ) from e
    return psycopg


class PostgresStore:
    """Networks and members in PostgreSQL, interchangeable with ``ControllerStore``.

    One connection, serialised by a lock (the event loop and the controller's answering thread
    share it). ``url`` is a libpq connection string or URL.
    """

    def __init__(
        self,
        url: str,
        *,
        migrations: Sequence[PgMigration] = PG_MIGRATIONS,
        connect_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.path = _redacted(url)
        #: This instance among those sharing the database (for :meth:`recently_seen`).
        self.instance = secrets.token_hex(8)
        self._pg = _psycopg()
        self._migrations = tuple(migrations)
        self._timeout = connect_timeout
        self._clock = clock
        self._lock = threading.RLock()
        self._conn: Any = None
        self._closed = False
        self._backoff = 0.0
        self._retry_at = 0.0
        self._tx: list[Any] = []
        self._connect()
        self._upgrade()

    # --- connection --------------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            self._conn = self._pg.connect(
                self.url, autocommit=True, connect_timeout=max(1, int(self._timeout))
            )
        except self._pg.OperationalError as e:
            raise StoreUnavailable(f"PostgreSQL at {self.path} is unavailable: {e}") from None
        self._backoff = 0.0

    def _db(self) -> Any:
        """The live connection, reconnecting after a loss once the backoff has passed."""
        if self._closed:
            raise StoreError("the controller store is closed")
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        now = self._clock()
        if now < self._retry_at:
            raise StoreUnavailable(f"PostgreSQL at {self.path} is unavailable (retrying)")
        try:
            self._connect()
        except StoreUnavailable:
            self._backoff = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, self._backoff * 2))
            self._retry_at = now + self._backoff
            raise
        return self._conn

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        with self._lock:
            db = self._db()
            try:
                with db.cursor() as cur:
                    yield cur
            except self._pg.OperationalError as e:
                if self._tx:
                    raise  # the transaction's own handler turns it into StoreUnavailable
                self._drop()
                raise StoreUnavailable(f"PostgreSQL at {self.path}: {e}") from None

    def _drop(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
        finally:
            self._conn = None

    def _upgrade(self) -> None:
        with self.transaction(), self._cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            cur.execute("SELECT version FROM schema_version")
            row = cur.fetchone()
            if row is None:
                cur.execute("INSERT INTO schema_version (version) VALUES (0)")
                version = 0
            else:
                version = int(row[0])
            if version > len(self._migrations):
                raise StoreError(
                    f"{self.path} has schema version {version}; this ztnode knows only up to "
                    f"{len(self._migrations)} (written by a newer version?)"
                )
            for step in range(version, len(self._migrations)):
                self._migrations[step](cur)
                cur.execute("UPDATE schema_version SET version = %s", (step + 1,))

    @property
    def schema_version(self) -> int:
        with self._cursor() as cur:
            cur.execute("SELECT version FROM schema_version")
            row = cur.fetchone()
        return int(row[0]) if row is not None else 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together when the block ends, or none do if it raises
        (nested blocks are savepoints). A connection lost inside raises StoreUnavailable and
        nothing of the block is committed."""
        with self._lock:
            db = self._db()
            try:
                with db.transaction() as tx:
                    self._tx.append(tx)
                    try:
                        yield
                    finally:
                        self._tx.pop()
            except self._pg.OperationalError as e:
                if not self._tx:
                    self._drop()
                raise StoreUnavailable(f"PostgreSQL at {self.path}: {e}") from None

    def _notify(self, cur: Any, payload: str) -> None:
        cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{payload} {self.instance}"))

    # --- networks ----------------------------------------------------------------------------

    def network_ids(self) -> list[int]:
        with self._cursor() as cur:
            cur.execute("SELECT nwid FROM networks ORDER BY nwid")
            return [int(r[0], 16) for r in cur.fetchall()]

    def get_network(self, nwid: int) -> JsonObject | None:
        with self._cursor() as cur:
            cur.execute("SELECT json FROM networks WHERE nwid = %s", (nwid_key(nwid),))
            row = cur.fetchone()
        return _as_object(row[0]) if row is not None else None

    def has_network(self, nwid: int) -> bool:
        with self._cursor() as cur:
            cur.execute("SELECT 1 FROM networks WHERE nwid = %s", (nwid_key(nwid),))
            return cur.fetchone() is not None

    def put_network(self, obj: JsonObject) -> None:
        """Insert or replace a network, keyed by its ``id`` field (16 hex digits)."""
        key, _ = object_keys(obj, member=False)
        with self.transaction(), self._cursor() as cur:
            cur.execute(
                "INSERT INTO networks (nwid, json) VALUES (%s, %s)"
                " ON CONFLICT (nwid) DO UPDATE SET json = excluded.json",
                (key, self._jsonb(obj)),
            )
            self._notify(cur, f"n {key}")

    def delete_network(self, nwid: int) -> JsonObject | None:
        """Remove a network and all of its members; the old network object, or ``None``."""
        key = nwid_key(nwid)
        with self.transaction(), self._cursor() as cur:
            cur.execute("DELETE FROM networks WHERE nwid = %s RETURNING json", (key,))
            row = cur.fetchone()
            if row is not None:
                self._notify(cur, f"n {key}")
        return _as_object(row[0]) if row is not None else None

    # --- members -----------------------------------------------------------------------------

    def member_ids(self, nwid: int) -> list[int]:
        with self._cursor() as cur:
            cur.execute(
                "SELECT address FROM members WHERE nwid = %s ORDER BY address", (nwid_key(nwid),)
            )
            return [int(r[0], 16) for r in cur.fetchall()]

    def members(self, nwid: int) -> list[JsonObject]:
        """Every member object of a network, in address order."""
        with self._cursor() as cur:
            cur.execute(
                "SELECT json FROM members WHERE nwid = %s ORDER BY address", (nwid_key(nwid),)
            )
            return [_as_object(r[0]) for r in cur.fetchall()]

    def get_member(self, nwid: int, address: int) -> JsonObject | None:
        with self._cursor() as cur:
            cur.execute(
                "SELECT json FROM members WHERE nwid = %s AND address = %s",
                (nwid_key(nwid), address_key(address)),
            )
            row = cur.fetchone()
        return _as_object(row[0]) if row is not None else None

    def put_member(self, obj: JsonObject) -> None:
        """Insert or replace a member, keyed by its ``nwid`` and ``id`` fields. Its network
        must exist (:class:`StoreError` otherwise)."""
        nwid, address = object_keys(obj, member=True)
        try:
            with self.transaction(), self._cursor() as cur:
                cur.execute(
                    "INSERT INTO members (nwid, address, json) VALUES (%s, %s, %s)"
                    " ON CONFLICT (nwid, address) DO UPDATE SET json = excluded.json",
                    (nwid, address, self._jsonb(obj)),
                )
                self._notify(cur, f"m {nwid} {address}")
        except self._pg.errors.ForeignKeyViolation as e:
            raise StoreError(f"member {address} of unknown network {nwid}: {e}") from None

    def delete_member(self, nwid: int, address: int) -> JsonObject | None:
        """Remove one member; the old member object, or ``None`` if there was none."""
        nk, ak = nwid_key(nwid), address_key(address)
        with self.transaction(), self._cursor() as cur:
            cur.execute(
                "DELETE FROM members WHERE nwid = %s AND address = %s RETURNING json", (nk, ak)
            )
            row = cur.fetchone()
            if row is not None:
                self._notify(cur, f"m {nk} {ak}")
        return _as_object(row[0]) if row is not None else None

    # --- where members are (for instances taking over from one another) ----------------------

    def record_seen(self, nwid: int, address: int, physical: str, now: int) -> None:
        """This instance served the member now, at ``physical`` (``ip/port``)."""
        with self._cursor() as cur:
            cur.execute(
                "INSERT INTO member_seen (nwid, address, physical, seen, instance)"
                " SELECT %s, %s, %s, %s, %s WHERE EXISTS"
                " (SELECT 1 FROM members WHERE nwid = %s AND address = %s)"
                " ON CONFLICT (nwid, address) DO UPDATE SET physical = excluded.physical,"
                " seen = excluded.seen, instance = excluded.instance",
                (
                    nwid_key(nwid), address_key(address), physical, now, self.instance,
                    nwid_key(nwid), address_key(address),
                ),
            )  # fmt: skip

    def recently_seen(self, since: int, limit: int) -> list[tuple[int, int, str, str]]:
        """``(nwid, address, identity, physical)`` of members other instances served since
        ``since`` (ms), newest first, at most ``limit``."""
        with self._cursor() as cur:
            cur.execute(
                "SELECT s.nwid, s.address, m.json->>'identity', s.physical"
                " FROM member_seen s JOIN members m USING (nwid, address)"
                " WHERE s.seen >= %s AND s.instance <> %s ORDER BY s.seen DESC LIMIT %s",
                (since, self.instance, limit),
            )
            rows = cur.fetchall()
        return [(int(n, 16), int(a, 16), str(i or ""), str(p)) for n, a, i, p in rows]

    def _jsonb(self, obj: JsonObject) -> Any:
        from psycopg.types.json import Jsonb

        return Jsonb(obj)

    # --- changes from other instances ---------------------------------------------------------

    def listen(
        self, on_change: Callable[[int, int | None], None], stop: threading.Event
    ) -> threading.Thread:
        """Call ``on_change(nwid, address or None)`` for every write another instance commits
        (this one's own writes are its caller's business already), until ``stop`` is set; a
        thread of its own with its own connection, reconnecting with backoff. Returns the
        started thread."""
        thread = threading.Thread(
            target=self._listen_loop, args=(on_change, stop), name="ztnode-pg-listen", daemon=True
        )
        thread.start()
        return thread

    def _listen_loop(
        self, on_change: Callable[[int, int | None], None], stop: threading.Event
    ) -> None:
        backoff = BACKOFF_MIN_S
        while not stop.is_set():
            try:
                with self._pg.connect(
                    self.url, autocommit=True, connect_timeout=max(1, int(self._timeout))
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    backoff = BACKOFF_MIN_S
                    while not stop.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=64):
                            change = parse_change(note.payload)
                            if change is not None and change[2] != self.instance:
                                on_change(change[0], change[1])
            except self._pg.OperationalError:
                stop.wait(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)


def parse_change(payload: str) -> tuple[int, int | None, str] | None:
    """``(nwid, address or None, writer instance)`` from a notification payload; None if
    malformed."""
    parts = payload.split()
    try:
        if len(parts) == 3 and parts[0] == "n":
            return int(parts[1], 16), None, parts[2]
        if len(parts) == 4 and parts[0] == "m":
            return int(parts[1], 16), int(parts[2], 16), parts[3]
    except ValueError:
        return None
    return None


def _as_object(value: Any) -> JsonObject:
    if not isinstance(value, dict):
        raise StoreError("stored record is not a JSON object")
    return value


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url


__all__ = ["CHANNEL", "PG_MIGRATIONS", "PostgresStore", "parse_change"]
