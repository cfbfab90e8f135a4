"""The controller's tests run on both databases: ``controller_store`` is a fresh SQLite store
and a fresh PostgreSQL one (a database of its own on the session's throwaway server)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ztnode.controller.store import ControllerStore, Store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def controller_store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "sqlite":
        store: Store = ControllerStore(":memory:")
    else:
        from ztnode.controller.pgstore import PostgresStore

        store = PostgresStore(request.getfixturevalue("pg_url"))
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def h(controller_store: Store) -> Any:
    """The controller API harness (tests/controller/test_api.py) on each database."""
    from tests.controller.test_api import Harness

    return Harness(controller_store)
