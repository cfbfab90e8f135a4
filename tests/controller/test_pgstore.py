"""The controller on PostgreSQL: what only a shared database has to get right.

Several instances open the same database (one migrates), hear each other's committed writes
(and nothing of a rolled-back one), survive the server dropping their connection, and an
instance killed with SIGKILL inside a transaction leaves nothing of it behind. Two controllers
on one database: a member served by A is authorised through B, and A pushes it its config.
The generic store behaviour runs on both databases in tests/controller/test_store.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.controller.test_controller import CTL, M1, META, T0, StubBuilder
from tests.controller.test_store import A1, A2, NWID, NWID2, mem, net
from ztnode.controller.controller import Controller
from ztnode.controller.store import StoreError, StoreUnavailable
from ztnode.testing.world import seeded_random_bytes

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]


def _pg() -> Any:
    from ztnode.controller import pgstore

    return pgstore


@pytest.fixture
def stores(pg_url: str) -> Iterator[list[Any]]:
    """Stores opened by the test, closed after it."""
    opened: list[Any] = []
    yield opened
    for s in opened:
        s.close()


def _open(stores: list[Any], url: str, **kw: Any) -> Any:
    s = _pg().PostgresStore(url, **kw)
    stores.append(s)
    return s


def test_a_second_instance_sees_what_the_first_committed(pg_url: str, stores: list[Any]) -> None:
    a, b = _open(stores, pg_url), _open(stores, pg_url)
    a.put_network(net(name="shared"))
    a.put_member(mem(authorized=True))
    got = b.get_network(NWID)
    assert got is not None and got["name"] == "shared"
    m = b.get_member(NWID, A1)
    assert m is not None and m["authorized"] is True
    assert b.schema_version == a.schema_version == len(_pg().PG_MIGRATIONS)


def test_instances_opening_at_once_migrate_once(pg_url: str, stores: list[Any]) -> None:
    errors: list[BaseException] = []
    lock = threading.Lock()

    def open_one() -> None:
        try:
            s = _pg().PostgresStore(pg_url)
        except BaseException as e:  # reported below
            errors.append(e)
            return
        with lock:
            stores.append(s)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(stores) == 6
    assert {s.schema_version for s in stores} == {len(_pg().PG_MIGRATIONS)}


def test_migration_from_an_older_schema_and_newer_refused(pg_url: str, stores: list[Any]) -> None:
    pg = _pg()
    old = _open(stores, pg_url, migrations=pg.PG_MIGRATIONS[:1])
    old.put_network(net(name="old data"))

    def v2(cur: Any) -> None:
        cur.execute("CREATE TABLE notes (nwid text PRIMARY KEY, note text)")
        cur.execute("INSERT INTO notes SELECT nwid, 'migrated ' || (json->>'name') FROM networks")

    new = _open(stores, pg_url, migrations=(*pg.PG_MIGRATIONS, v2))
    assert new.schema_version == len(pg.PG_MIGRATIONS) + 1
    with new._cursor() as cur:
        cur.execute("SELECT note FROM notes")
        assert cur.fetchone()[0] == "migrated old data"
    with pytest.raises(StoreError, match="newer"):
        pg.PostgresStore(pg_url)  # knows one version fewer than the database has


def test_committed_writes_are_heard_by_the_other_instances_rolled_back_ones_by_none(
    pg_url: str, stores: list[Any]
) -> None:
    a, b = _open(stores, pg_url), _open(stores, pg_url)
    heard: list[tuple[int, int | None]] = []
    stop = threading.Event()
    thread = a.listen(lambda n, m: heard.append((n, m)), stop)
    try:
        time.sleep(0.5)  # LISTEN is in place before the writes (the thread connects first)
        a.put_network(net(NWID2))  # A's own write: A's caller knows already, not told again
        b.put_network(net())
        with pytest.raises(RuntimeError), b.transaction():
            b.put_member(mem(addr=A2))
            raise RuntimeError("rolled back")
        b.put_member(mem(addr=A1))
        b.delete_member(NWID, A1)
        deadline = time.monotonic() + 10
        while len(heard) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert heard == [(NWID, None), (NWID, A1), (NWID, A1)]


def test_parse_change_refuses_malformed_payloads() -> None:
    parse = _pg().parse_change
    assert parse("n 1122334455000001 i1") == (NWID, None, "i1")
    assert parse(f"m {NWID2:016x} {A2:010x} i2") == (NWID2, A2, "i2")
    for bad in ("", "n", "n 1", "x 1 i", "n zz i", "m 1 i", "m 1 2 3 4"):
        assert parse(bad) is None


def test_a_lost_connection_is_unavailable_then_reconnects(
    pg_url: str, pg_server: Any, stores: list[Any]
) -> None:
    import psycopg

    clock = [100.0]
    s = _open(stores, pg_url, clock=lambda: clock[0])
    s.put_network(net())
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    with pytest.raises(StoreUnavailable):
        s.network_ids()  # the dead connection is found out
    assert s.network_ids() == [NWID]  # first retry is immediate: the server is up
    # A server that stays away: retries wait for the backoff, without touching the network.
    s._conn.close()
    s.url = pg_server.url("no_such_database")
    with pytest.raises(StoreUnavailable):
        s.network_ids()
    with pytest.raises(StoreUnavailable, match="retrying"):
        s.network_ids()
    clock[0] += 1.0
    s.url = pg_url
    assert s.network_ids() == [NWID]


_KILLED_WRITER = """
import sys, time
from ztnode.controller.pgstore import PostgresStore
from ztnode.controller.model import new_member, new_network
s = PostgresStore(sys.argv[1])
nwid = 0x1122334455000001
s.put_network(new_network(nwid, 1000))
print("acknowledged", flush=True)
with s.transaction():
    s.put_network(new_network(nwid + 1, 1000))
    for i in range(50):
        s.put_member(new_member(nwid, 0x0100000000 + i, 1000))
    print("inside", flush=True)
    time.sleep(60)
"""


def test_an_instance_killed_mid_transaction_leaves_nothing_of_it(
    pg_url: str, stores: list[Any]
) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, pg_url],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "acknowledged"
        assert proc.stdout.readline().strip() == "inside"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    s = _open(stores, pg_url)
    # The server notices the dead client and rolls its transaction back.
    deadline = time.monotonic() + 10
    while s.network_ids() != [NWID] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert s.network_ids() == [NWID]
    assert s.member_ids(NWID) == []


def test_a_member_authorised_through_b_gets_its_config_from_a(
    pg_url: str, stores: list[Any]
) -> None:
    """Two controller instances (the same identity, one database): the member asked A, an
    operator authorises it through B, A hears it and pushes the config."""
    builder = StubBuilder()
    a = Controller(
        CTL, _open(stores, pg_url), random_bytes=seeded_random_bytes(1), config_builder=builder
    )
    b = Controller(
        CTL, _open(stores, pg_url), random_bytes=seeded_random_bytes(2), config_builder=builder
    )
    nwid = int(b.create_network({"name": "shared"}, T0)["id"], 16)
    denied = a.handle_request(M1.public(), nwid, META, T0 + 1, ("192.0.2.1", 9993))
    assert denied is not None and denied.config is None
    b.update_member(nwid, M1.address, {"authorized": True}, T0 + 2)
    assert a.pending_pushes(T0 + 3) == []  # A has not heard yet
    a.note_remote_change(nwid, M1.address, T0 + 3)  # what A's listener does on the notification
    pushes = a.pending_pushes(T0 + 4)
    assert [p.member for p in pushes] == [M1.address]
    assert pushes[0].config.network_id == nwid
    # Deauthorised through B: A revokes the member at those it serves.
    b.update_member(nwid, M1.address, {"authorized": False}, T0 + 5)
    a.note_remote_change(nwid, M1.address, T0 + 6)
    revoked = a.pending_revocations(T0 + 7)
    assert revoked and all(r.revocation.target == M1.address for r in revoked)


def test_a_running_node_pushes_what_another_instance_changed(
    tmp_path: Path, pg_url: str, stores: list[Any]
) -> None:
    """The node's wiring, end to end on loopback: a root whose controller keeps its database
    in PostgreSQL serves a member; a second controller instance (same identity, same database)
    gives the member a new address; the root hears the change and pushes it, and the member
    takes the address."""
    import asyncio

    from tests.helpers.data import test_identities
    from ztnode.controller.configbuild import build_config
    from ztnode.testing.local import LocalZtWorld

    ids = test_identities()[:2]

    async def go() -> None:
        async with LocalZtWorld(tmp_path, members=1, identities=ids, controller_db=pg_url) as w:
            (net,) = w.networks
            member = w.members[0]
            other = Controller(
                ids[0], _open(stores, pg_url), random_bytes=os.urandom, config_builder=build_config
            )
            now = int(time.time() * 1000)
            other.update_member(
                w.network_id, int(member.address, 16), {"ipAssignments": ["10.147.17.99"]}, now
            )
            deadline = time.monotonic() + 15
            while net.address(4) != "10.147.17.99" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert net.address(4) == "10.147.17.99", net.addresses

    asyncio.run(go())


def test_the_api_says_the_database_is_unavailable_and_recovers(
    pg_url: str, pg_server: Any, stores: list[Any]
) -> None:
    """The database away: the controller API answers 503 and says databaseReady false, having
    written nothing; back, it serves again (the store reconnects after its backoff)."""
    from tests.controller.test_api import Harness

    clock = [0.0]
    store = _open(stores, pg_url, clock=lambda: clock[0])
    h = Harness(store)
    nwid = h.create({"name": "before"})
    store._conn.close()
    store.url = pg_server.url("no_such_database")  # as if the server were unreachable
    status, out = h.call("POST", f"/controller/network/{nwid}", {"name": "during"})
    assert status == 503 and "unavailable" in str(out)
    assert h.ok("GET", "/controller")["databaseReady"] is False
    clock[0] += 60
    store.url = pg_url
    assert h.ok("GET", "/controller")["databaseReady"] is True
    assert h.ok("GET", f"/controller/network/{nwid}")["name"] == "before"


def test_where_members_are_is_shared_with_the_other_instances(
    pg_url: str, stores: list[Any]
) -> None:
    """A records where it served a member (bounded: not again within SEEN_RECORD_INTERVAL at
    the same address); B is told to greet it there; A, which serves it, is not."""
    from ztnode.controller.controller import SEEN_RECORD_INTERVAL

    builder = StubBuilder()
    sa, sb = _open(stores, pg_url), _open(stores, pg_url)
    a = Controller(CTL, sa, random_bytes=seeded_random_bytes(1), config_builder=builder)
    b = Controller(CTL, sb, random_bytes=seeded_random_bytes(2), config_builder=builder)
    nwid = int(b.create_network({"name": "shared"}, T0)["id"], 16)
    b.update_member(nwid, M1.address, {"authorized": True}, T0 + 1)
    a.handle_request(M1.public(), nwid, META, T0 + 2, ("192.0.2.7", 9993))
    assert sb.recently_seen(0, 10) == [
        (nwid, M1.address, M1.public().to_string(), "192.0.2.7/9993")
    ]
    assert sa.recently_seen(0, 10) == []  # its own records are not news to A
    assert b.members_to_contact(T0 + 3) == [(M1.public(), ("192.0.2.7", 9993))]
    assert a.members_to_contact(T0 + 3) == []
    # Asking again soon from the same place writes nothing; from elsewhere it does at once.
    a.handle_request(M1.public(), nwid, META, T0 + 10_000, ("192.0.2.7", 9993))
    with sa._cursor() as cur:
        cur.execute("SELECT seen FROM member_seen")
        assert cur.fetchone()[0] == T0 + 2
    a.handle_request(M1.public(), nwid, META, T0 + 20_000, ("192.0.2.8", 9993))
    assert sb.recently_seen(0, 10)[0][3] == "192.0.2.8/9993"
    assert SEEN_RECORD_INTERVAL > 20_000
    # A member deleted takes its record with it.
    b.delete_member(nwid, M1.address, T0 + 30_000)
    assert sb.recently_seen(0, 10) == []
