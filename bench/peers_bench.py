"""A root with many peers: memory per peer and the CPU their keepalives cost.
``python -m bench --only peers``.

One ztnode root (the node measured) and ``N`` leaf nodes, all sans-I/O cores in this process,
on an in-memory network under a virtual clock. The driver is event-driven (a heap of deliveries
and a heap of node timers, re-read only for the node just called), so a thousand participants
cost what their packets and timers cost, not a scan of every node per step as the tests' fake
network does.

Leaves use identities made without the proof of work: the root defers identity validation (as
``NodeService`` always does) and this harness answers "valid". Generating 1 000 real identities
would take minutes and measures nothing here; the root's handling of a new identity is otherwise
exactly the real one (HELLO, key agreement, OK, peer table).

- **memory per peer**: the bytes reachable from the root's ``Node`` object (a walk over the
  garbage collector's referents, stopping at types, modules, functions and code) once every leaf
  is known, minus the same walk before any leaf started, divided by ``N``. Everything the root
  keeps for a peer counts: the peer, its paths, keys, replay window, the path table entries.
- **keepalive CPU**: the wall time spent inside the root's calls (receive, timers, output) over
  :data:`KEEPALIVE_MINUTES` of virtual time once all are online, as a share of that virtual
  time: what a real root spends per second on the same traffic (single-threaded, so wall time in
  its calls is its CPU time).
"""

from __future__ import annotations

import gc
import heapq
import itertools
import random
import sys
import time
import types
from typing import Any

from ztnode.core.node import Node, NodeConfig
from ztnode.crypto import c25519_generate
from ztnode.identity import Identity
from ztnode.testing.local import generate_identities
from ztnode.testing.world import START_MS, WORLD_ID, address_for, seeded_random_bytes
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import Root, World, WorldType

Addr = tuple[str, int]

#: Virtual time over which the keepalive CPU is measured.
KEEPALIVE_MINUTES = 10
#: One-way delay of every datagram on the in-memory network.
LATENCY_MS = 1
#: Bound on the driver's steps for one run (each step one delivery or one timer).
MAX_STEPS = 20_000_000

_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType)


class _Driver:
    """Deliveries and timers in two heaps; a node's timer is re-read only after it was called."""

    def __init__(self) -> None:
        self.now = START_MS
        self.parts: list[Any] = []
        self.owner: dict[Addr, int] = {}
        self.timer_at: list[int | None] = []
        self._deliveries: list[tuple[int, int, Addr, Addr, bytes]] = []
        self._timers: list[tuple[int, int, int]] = []
        self._seq = itertools.count()
        self.delivered = 0

    def attach(self, part: Any, addr: Addr) -> None:
        idx = len(self.parts)
        self.parts.append(part)
        self.timer_at.append(None)
        self.owner[addr] = idx
        self._after(idx)

    def _after(self, idx: int) -> None:
        part = self.parts[idx]
        now = self.now
        for out in part.datagrams_to_send(now):
            heapq.heappush(
                self._deliveries, (now + LATENCY_MS, next(self._seq), out[1], out[0], bytes(out[2]))
            )
        while part.next_event() is not None:
            pass
        t = part.get_timer()
        if t is not None and t != self.timer_at[idx]:
            self.timer_at[idx] = t
            heapq.heappush(self._timers, (max(t, now), next(self._seq), idx))

    def run_until(self, deadline: int) -> None:
        deliveries, timers = self._deliveries, self._timers
        for _ in range(MAX_STEPS):
            while timers and self.timer_at[timers[0][2]] is None:
                heapq.heappop(timers)
            nd = deliveries[0][0] if deliveries else None
            nt = timers[0][0] if timers else None
            nxt = nd if nt is None or (nd is not None and nd <= nt) else nt
            if nxt is None or nxt > deadline:
                break
            self.now = max(self.now, nxt)
            if nd is not None and nd == nxt:
                _, _, dst, src, data = heapq.heappop(deliveries)
                idx = self.owner.get(dst)
                if idx is None:
                    continue
                self.delivered += 1
                self.parts[idx].receive_datagram(data, dst, src, self.now)
            else:
                _, _, idx = heapq.heappop(timers)
                self.timer_at[idx] = None
                self.parts[idx].handle_timer(self.now)
            self._after(idx)
        else:
            raise RuntimeError(f"more than {MAX_STEPS} steps before {deadline}")
        self.now = max(self.now, deadline)


class _TimedRoot:
    """The root under measurement: every call timed, every deferred identity declared valid."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.busy = 0.0

    def _validate(self, now: int) -> None:
        for ident in self.node.identities_to_validate():
            self.node.identity_validated(ident, True, now)

    def receive_datagram(self, data: bytes, local: Addr, remote: Addr, now: int) -> None:
        t0 = time.perf_counter()
        self.node.receive_datagram(data, local, remote, now)
        self._validate(now)
        self.busy += time.perf_counter() - t0

    def handle_timer(self, now: int) -> None:
        t0 = time.perf_counter()
        self.node.handle_timer(now)
        self._validate(now)
        self.busy += time.perf_counter() - t0

    def datagrams_to_send(self, now: int) -> list[Any]:
        t0 = time.perf_counter()
        out = self.node.datagrams_to_send(now)
        self.busy += time.perf_counter() - t0
        return out

    def get_timer(self) -> int | None:
        return self.node.get_timer()

    def next_event(self) -> Any:
        return self.node.next_event()


class _Leaf:
    """A leaf node as the driver sees it (the same five calls as the root)."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def receive_datagram(self, data: bytes, local: Addr, remote: Addr, now: int) -> None:
        self.node.receive_datagram(data, local, remote, now)

    def handle_timer(self, now: int) -> None:
        self.node.handle_timer(now)

    def datagrams_to_send(self, now: int) -> list[Any]:
        return self.node.datagrams_to_send(now)

    def get_timer(self) -> int | None:
        return self.node.get_timer()

    def next_event(self) -> Any:
        return self.node.next_event()


def _unproven_identity(rng: random.Random) -> Identity:
    """A key pair under a random non-reserved address, without the proof of work."""
    pub, priv = c25519_generate(rng.randbytes)
    while True:
        address = rng.getrandbits(40)
        if address >> 32 not in (0x00, 0xFF):
            return Identity(address, pub, priv)


def _reachable_bytes(root: object) -> int:
    seen: set[int] = set()
    total = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SKIP):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def _run(count: int) -> list[dict[str, Any]]:
    import asyncio

    root_identity = asyncio.run(generate_identities(1))[0]
    rng = random.Random(16)
    pub, priv = c25519_generate(rng.randbytes)
    root_addr = address_for(0)
    planet = World.make(
        WorldType.PLANET,
        WORLD_ID,
        START_MS,
        pub,
        (Root(root_identity.public(), (InetAddress.parse(f"{root_addr[0]}/{root_addr[1]}"),)),),
        priv,
    )
    quiet = NodeConfig(identity_validation_interval=0)
    root = Node(
        root_identity,
        planet,
        now=START_MS,
        random_bytes=seeded_random_bytes(1),
        local_addresses=[root_addr],
        config=NodeConfig(identity_validation_interval=0, defer_identity_validation=True),
    )
    driver = _Driver()
    timed = _TimedRoot(root)
    driver.attach(timed, root_addr)
    driver.run_until(START_MS + 1000)
    gc.collect()
    before = _reachable_bytes(root)
    leaves = []
    t_start = time.perf_counter()
    for i in range(count):
        a = address_for(i + 1)
        leaf = Node(
            _unproven_identity(rng),
            planet,
            now=driver.now,
            random_bytes=seeded_random_bytes(1000 + i),
            local_addresses=[a],
            config=quiet,
        )
        leaves.append(leaf)
        driver.attach(_Leaf(leaf), a)
    driver.run_until(driver.now + 30_000)
    online = sum(1 for leaf in leaves if leaf.online)
    known = len(root.peers)
    setup_s = time.perf_counter() - t_start
    gc.collect()
    after = _reachable_bytes(root)
    busy0, delivered0, now0 = timed.busy, driver.delivered, driver.now
    driver.run_until(driver.now + KEEPALIVE_MINUTES * 60_000)
    virtual_s = (driver.now - now0) / 1000
    root_share = (timed.busy - busy0) / virtual_s
    packets = driver.delivered - delivered0
    return [
        {"what": "leaves online / peers the root knows", "value": f"{online} / {known}"},
        {
            "what": "root memory per peer (reachable from its Node)",
            "value": f"{(after - before) / max(known, 1) / 1024:.2f} KB",
        },
        {
            "what": f"root CPU for keepalives ({KEEPALIVE_MINUTES} virtual minutes, {count} peers)",
            "value": f"{root_share * 100:.3f} % of one core",
        },
        {
            "what": "datagrams on the network per virtual second (all nodes)",
            "value": f"{packets / virtual_s:.1f}",
        },
        {"what": "setup: leaves started and online (wall)", "value": f"{setup_s:.1f} s"},
    ]


def rows(quick: bool) -> list[dict[str, Any]]:
    return _run(100 if quick else 1000)
