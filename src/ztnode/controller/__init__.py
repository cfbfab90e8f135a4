"""The network controller a node can host (see docs/architecture.md).

* :mod:`~ztnode.controller.store`: the SQLite database of network and member JSON objects;
* :mod:`~ztnode.controller.pgstore`: the same on PostgreSQL, for several controller machines;
* :mod:`~ztnode.controller.model`: ZeroTierOne's JSON defaults and POST semantics;
* :mod:`~ztnode.controller.configbuild`: a member's signed network config from that JSON;
* :mod:`~ztnode.controller.controller`: request policy and change propagation (sans-I/O);
* ZeroTierOne's controller HTTP routes are an adapter above this layer:
  :mod:`ztnode.transport.controllerapi`.

:func:`open_controller` puts them together the way a node runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from ztnode.controller.controller import Controller
from ztnode.controller.model import ApiError
from ztnode.controller.store import ControllerStore, Store
from ztnode.identity import Identity

DATABASE_NAME: Final = "controller.db"
POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")


def open_store(db: str | Path) -> Store:
    """The database ``db`` names: a ``postgresql://`` URL (PostgreSQL, shared by several
    controller instances) or a file path (SQLite, the default, needing nothing)."""
    text = str(db)
    if text.startswith(POSTGRES_SCHEMES):
        from ztnode.controller.pgstore import PostgresStore

        return PostgresStore(text)
    return ControllerStore(Path(text))


def open_controller(
    identity: Identity,
    home_dir: Path,
    random_bytes: Callable[[int], bytes],
    db: str | None = None,
) -> Controller:
    """The controller for a node whose state lives in ``home_dir``: its database is ``db``
    (see :func:`open_store`) or ``home_dir/controller.db`` (created on first use), its configs
    come from the real builder. Close it with :meth:`Controller.close` when the node stops."""
    from ztnode.controller.configbuild import build_config

    store = open_store(db if db else Path(home_dir) / DATABASE_NAME)
    return Controller(identity, store, random_bytes=random_bytes, config_builder=build_config)


__all__ = [
    "DATABASE_NAME",
    "ApiError",
    "Controller",
    "ControllerStore",
    "Store",
    "open_controller",
    "open_store",
]
