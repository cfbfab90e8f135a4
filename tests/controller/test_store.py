"""The controller's store: schema versions and migrations, transactions, durability. The tests
that take the ``store`` fixture run on SQLite and on PostgreSQL (tests/controller/test_pgstore.py
has PostgreSQL's own); the rest are SQLite's file and migration behaviour."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ztnode.controller.model import new_member, new_network
from ztnode.controller.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    ControllerStore,
    Store,
    StoreError,
)

NWID = 0x1122334455000001
NWID2 = 0x1122334455000002
A1 = 0x0102030405
A2 = 0x0A0B0C0D0E


def net(nwid: int = NWID, **fields: object) -> dict[str, object]:
    n = new_network(nwid, 1000)
    n.update(fields)
    return n


def mem(nwid: int = NWID, addr: int = A1, **fields: object) -> dict[str, object]:
    m = new_member(nwid, addr, 1000)
    m.update(fields)
    return m


@pytest.fixture
def store(controller_store: Store) -> Store:
    """A fresh store on each database (tests/controller/conftest.py)."""
    return controller_store


def test_fresh_store_has_current_schema(store: Store) -> None:
    if isinstance(store, ControllerStore):
        assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    else:
        from ztnode.controller.pgstore import PG_MIGRATIONS

        assert store.schema_version == len(PG_MIGRATIONS)
    assert store.network_ids() == []


def test_file_store_uses_wal_and_full_sync(tmp_path: Path) -> None:
    s = ControllerStore(tmp_path / "c.db")
    try:
        conn = s._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        s.close()


def test_network_roundtrip_and_copies(store: Store) -> None:
    n = net(name="x")
    store.put_network(n)
    got = store.get_network(NWID)
    assert got == n
    assert got is not n
    assert got is not None
    got["name"] = "changed"  # a copy: the store is unaffected
    assert store.get_network(NWID) == n
    assert store.has_network(NWID)
    assert not store.has_network(NWID2)
    assert store.get_network(NWID2) is None


def test_put_network_replaces(store: Store) -> None:
    store.put_network(net(name="a"))
    store.put_network(net(name="b"))
    assert store.network_ids() == [NWID]
    got = store.get_network(NWID)
    assert got is not None and got["name"] == "b"


def test_network_ids_sorted_full_64_bits(store: Store) -> None:
    big = 0xFFEEDDCCBB123456  # above the signed 64-bit range of SQLite integers
    for n in (big, NWID2, NWID):
        store.put_network(net(n))
    assert store.network_ids() == [NWID, NWID2, big]
    assert store.get_network(big) is not None


def test_members(store: Store) -> None:
    store.put_network(net())
    store.put_member(mem(addr=A2, name="two"))
    store.put_member(mem(addr=A1))
    assert store.member_ids(NWID) == [A1, A2]
    assert [m["id"] for m in store.members(NWID)] == ["0102030405", "0a0b0c0d0e"]
    two = store.get_member(NWID, A2)
    assert two is not None and two["name"] == "two"
    assert store.get_member(NWID, 0x1111111111) is None
    assert store.get_member(NWID2, A1) is None


def test_member_of_unknown_network_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        store.put_member(mem(nwid=NWID2))
    assert store.member_ids(NWID2) == []


def test_objects_need_their_keys(store: Store) -> None:
    bad = net()
    bad["id"] = "nothex"
    with pytest.raises(StoreError):
        store.put_network(bad)
    del bad["id"]
    with pytest.raises(StoreError):
        store.put_network(bad)
    store.put_network(net())
    m = mem()
    m["id"] = "123"
    with pytest.raises(StoreError):
        store.put_member(m)


def test_delete_member(store: Store) -> None:
    store.put_network(net())
    store.put_member(mem())
    old = store.delete_member(NWID, A1)
    assert old is not None and old["id"] == "0102030405"
    assert store.delete_member(NWID, A1) is None
    assert store.member_ids(NWID) == []


def test_delete_network_takes_members(store: Store) -> None:
    store.put_network(net())
    store.put_network(net(NWID2))
    store.put_member(mem())
    store.put_member(mem(addr=A2))
    store.put_member(mem(nwid=NWID2))
    old = store.delete_network(NWID)
    assert old is not None and old["id"] == f"{NWID:016x}"
    assert store.network_ids() == [NWID2]
    assert store.member_ids(NWID) == []
    assert store.member_ids(NWID2) == [A1]
    assert store.delete_network(NWID) is None


def test_transaction_rolls_back_everything(store: Store) -> None:
    store.put_network(net(name="before"))
    with pytest.raises(RuntimeError), store.transaction():
        store.put_network(net(name="during"))
        store.put_member(mem())
        store.put_network(net(NWID2))
        raise RuntimeError("crash in the middle")
    got = store.get_network(NWID)
    assert got is not None and got["name"] == "before"
    assert store.member_ids(NWID) == []
    assert store.network_ids() == [NWID]


def test_failed_write_inside_transaction_rolls_back(store: Store) -> None:
    with pytest.raises(StoreError), store.transaction():
        store.put_network(net())
        store.put_member(mem(nwid=NWID2))  # no such network: the whole block is undone
    assert store.network_ids() == []


def test_nested_transaction_is_a_savepoint(store: Store) -> None:
    with store.transaction():
        store.put_network(net())
        with pytest.raises(ValueError), store.transaction():
            store.put_member(mem())
            raise ValueError("inner")
        store.put_member(mem(addr=A2))
    assert store.member_ids(NWID) == [A2]


def test_transaction_commits(store: Store) -> None:
    with store.transaction():
        store.put_network(net())
        store.put_member(mem())
    assert store.member_ids(NWID) == [A1]


def test_reopen_sees_everything_committed(tmp_path: Path) -> None:
    path = tmp_path / "controller.db"
    s = ControllerStore(path)
    s.put_network(net(name="persist"))
    s.put_member(mem(authorized=True))
    with s.transaction():
        s.put_network(net(NWID2))
        s.put_member(mem(nwid=NWID2, addr=A2))
    s.close()
    s2 = ControllerStore(path)
    try:
        assert s2.network_ids() == [NWID, NWID2]
        n = s2.get_network(NWID)
        assert n is not None and n["name"] == "persist"
        m = s2.get_member(NWID, A1)
        assert m is not None and m["authorized"] is True
        assert s2.member_ids(NWID2) == [A2]
    finally:
        s2.close()


def test_uncommitted_transaction_lost_on_reopen(tmp_path: Path) -> None:
    """A crash inside a transaction (here: the connection dies before COMMIT) loses only that
    transaction."""
    path = tmp_path / "controller.db"
    s = ControllerStore(path)
    s.put_network(net(name="kept"))
    s._conn.execute("BEGIN IMMEDIATE")
    s._conn.execute("DELETE FROM networks")
    s._conn.close()  # closing with an open transaction discards it
    s._db = None
    s2 = ControllerStore(path)
    try:
        n = s2.get_network(NWID)
        assert n is not None and n["name"] == "kept"
    finally:
        s2.close()


def test_closed_store_refuses(store: Store) -> None:
    store.close()
    with pytest.raises(StoreError):
        store.network_ids()
    store.close()  # idempotent


def _migrate_v2_add_notes(db: sqlite3.Connection) -> None:
    """A simulated later schema step: a new table and a rewrite of existing records."""
    db.execute("CREATE TABLE notes (nwid TEXT PRIMARY KEY, note TEXT)")
    rows = db.execute("SELECT nwid, json FROM networks").fetchall()
    for nwid, text in rows:
        db.execute("INSERT INTO notes VALUES (?, ?)", (nwid, f"migrated {len(text)}"))


def test_migration_from_older_schema(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = ControllerStore(path, migrations=MIGRATIONS[:1])
    assert old.schema_version == 1
    old.put_network(net(name="old data"))
    old.close()

    upgraded = ControllerStore(path, migrations=(*MIGRATIONS, _migrate_v2_add_notes))
    try:
        assert upgraded.schema_version == len(MIGRATIONS) + 1
        n = upgraded.get_network(NWID)
        assert n is not None and n["name"] == "old data"
        note = upgraded._conn.execute("SELECT note FROM notes").fetchone()[0]
        assert note.startswith("migrated")
    finally:
        upgraded.close()

    # Opening again applies nothing twice.
    again = ControllerStore(path, migrations=(*MIGRATIONS, _migrate_v2_add_notes))
    assert again.schema_version == len(MIGRATIONS) + 1
    again.close()


def test_failed_migration_leaves_old_version(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    ControllerStore(path).close()

    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half (x)")
        raise RuntimeError("migration bug")

    with pytest.raises(RuntimeError):
        ControllerStore(path, migrations=(*MIGRATIONS, broken))
    s = ControllerStore(path)
    try:
        assert s.schema_version == len(MIGRATIONS)
        tables = {r[0] for r in s._conn.execute("SELECT name FROM sqlite_master")}
        assert "half" not in tables
    finally:
        s.close()


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    ControllerStore(path, migrations=(*MIGRATIONS, _migrate_v2_add_notes)).close()
    with pytest.raises(StoreError, match="newer"):
        ControllerStore(path)
