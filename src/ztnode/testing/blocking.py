"""A whole local world (root, controller, members on 127.0.0.1) for programs and tests that
use blocking sockets.

It lives in the test kit, not beside the blocking sockets, because it is made of
:class:`~ztnode.testing.local.LocalZtWorld`: production code must not depend on the harness.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from ztnode.identity import Identity
from ztnode.sockets.blocking import BlockingNetwork, BlockingNode, LoopThread
from ztnode.testing.local import LocalZtWorld
from ztnode.wire.world import World

__all__ = ["BlockingLocalWorld"]

T = TypeVar("T")


class BlockingLocalWorld:
    """:class:`~ztnode.testing.local.LocalZtWorld` (root/controller and members on 127.0.0.1)
    for threads: every node shares one loop thread; ``members`` and ``networks`` are blocking
    wrappers of the world's."""

    def __init__(
        self,
        base: str | os.PathLike[str],
        *,
        members: int = 2,
        identities: Sequence[Identity] = (),
        network: dict[str, Any] | None = None,
        dns_domain: str | None = None,
    ) -> None:
        self.world = LocalZtWorld(
            base, members=members, identities=identities, network=network, dns_domain=dns_domain
        )
        self._thread = LoopThread("ztnode-local-world")
        self.members: list[BlockingNode] = []
        self.networks: list[BlockingNetwork] = []

    @property
    def network_id(self) -> int:
        return self.world.network_id

    @property
    def planet(self) -> World | None:
        return self.world.planet

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._thread.loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self._thread.run(coro, timeout)

    def call(self, fn: Callable[[], T]) -> T:
        return self._thread.call(fn)

    def start(self, timeout: float = 60.0) -> BlockingLocalWorld:
        self._thread.start()
        try:
            self._thread.run(self.world.start(timeout), timeout + 30.0)
        except BaseException:
            self.stop()
            raise
        self.members = [BlockingNode.adopt(m, self._thread) for m in self.world.members]
        self.networks = [m.wrap(n) for m, n in zip(self.members, self.world.networks, strict=True)]
        return self

    def stop(self) -> None:
        for m in self.members:
            m.detach()
        try:
            with contextlib.suppress(OSError):
                self._thread.run(self.world.stop())
        finally:
            self._thread.stop()

    def __enter__(self) -> BlockingLocalWorld:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
