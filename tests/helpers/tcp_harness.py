"""The TCP pair harness: two TCBs joined by a link with scripted loss, delay and reordering, under a
virtual clock (moved here from tests/tcp/test_harness.py so tests share it without importing a test
module)."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ztnode.netstack.tcp import (
    Segment,
    TcpConfig,
    TcpConnection,
    TcpEvent,
    TcpState,
)

Filter = Callable[[str, Segment], bool]


@dataclass
class LinkParams:
    loss: float = 0.0
    dup: float = 0.0
    delay_ms: int = 10
    jitter_ms: int = 0  # uniform extra delay: reorders when larger than the spacing


@dataclass
class Pair:
    """Client ``a`` and server ``b`` joined by a fake link. ``drop`` filters by direction
    ("a>b" or "b>a") and segment, for scripted losses."""

    a_config: TcpConfig = field(default_factory=TcpConfig)
    b_config: TcpConfig = field(default_factory=TcpConfig)
    link: LinkParams = field(default_factory=LinkParams)
    seed: int = 1
    a_isn: int = 1000
    b_isn: int = 900_000
    drop: Filter | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.now = 0
        self.a = TcpConnection(self.a_config, isn=lambda: self.a_isn)
        self.b = TcpConnection(self.b_config, isn=lambda: self.b_isn)
        self._heap: list[tuple[int, int, str, Segment]] = []
        self._counter = itertools.count()
        self.log: list[tuple[int, str, Segment]] = []
        self.events: dict[str, list[TcpEvent]] = {"a": [], "b": []}
        self.sent = {"a>b": 0, "b>a": 0}
        self.dropped = {"a>b": 0, "b>a": 0}

    # --- driving ------------------------------------------------------------------------
    def conn(self, name: str) -> TcpConnection:
        return self.a if name == "a" else self.b

    def flush(self) -> None:
        for src, dst in (("a", "b"), ("b", "a")):
            direction = f"{src}>{dst}"
            for seg in self.conn(src).segments_to_send(self.now):
                self.log.append((self.now, direction, seg))
                self.sent[direction] += 1
                if self.drop is not None and self.drop(direction, seg):
                    self.dropped[direction] += 1
                    continue
                if self.rng.random() < self.link.loss:
                    self.dropped[direction] += 1
                    continue
                copies = 2 if self.rng.random() < self.link.dup else 1
                for _ in range(copies):
                    t = self.now + self.link.delay_ms
                    if self.link.jitter_ms:
                        t += self.rng.randrange(self.link.jitter_ms + 1)
                    heapq.heappush(self._heap, (t, next(self._counter), dst, seg))
        for name in ("a", "b"):
            c = self.conn(name)
            while (ev := c.next_event()) is not None:
                self.events[name].append(ev)

    def next_time(self) -> int | None:
        times = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
        if self._heap:
            times.append(self._heap[0][0])
        return min(times) if times else None

    def step(self) -> bool:
        """Advance to the next delivery or deadline and process it; False when idle."""
        self.flush()
        t = self.next_time()
        if t is None:
            return False
        self.now = max(self.now, t)
        while self._heap and self._heap[0][0] <= self.now:
            _, _, dst, seg = heapq.heappop(self._heap)
            self.conn(dst).receive_segment(seg, self.now)
        for c in (self.a, self.b):
            timer = c.get_timer()
            if timer is not None and timer <= self.now:
                c.handle_timer(self.now)
        self.flush()
        return True

    def run(
        self,
        until: Callable[[], bool] | None = None,
        max_time: int = 600_000,
        max_steps: int = 200_000,
        on_step: Callable[[], None] | None = None,
    ) -> None:
        """Step until ``until()`` holds (asserted) or, with no condition, until idle."""
        start = self.now
        for _ in range(max_steps):
            if on_step is not None:
                on_step()
            if until is not None and until():
                return
            if not self.step():
                break
            if self.now - start > max_time:
                break
        if until is not None:
            assert until(), (
                f"condition not met by t={self.now} (a={self.a.state.name}, b={self.b.state.name})"
            )

    def handshake(self) -> None:
        self.b.listen()
        self.a.connect(self.now)
        self.run(
            lambda: self.a.state is TcpState.ESTABLISHED and self.b.state is TcpState.ESTABLISHED
        )

    def segments(self, direction: str) -> list[Segment]:
        return [s for _, d, s in self.log if d == direction]


def a_in_time_wait(msl_ms: int) -> Pair:
    """A pair whose ``a`` closed first and now waits in TIME-WAIT (``b`` closed too)."""
    cfg = TcpConfig(msl_ms=msl_ms)
    p = Pair(a_config=cfg, b_config=cfg)
    p.handshake()
    p.a.close(p.now)
    p.run(lambda: p.a.state is TcpState.FIN_WAIT_2)
    p.b.close(p.now)
    p.run(lambda: p.a.state is TcpState.TIME_WAIT)
    return p


def transfer(pair: Pair, src: str, data: bytes, max_time: int = 3_600_000) -> bytes:
    """Send ``data`` from ``src`` to the other end, reading as it arrives; returns what arrived."""
    sender = pair.conn(src)
    receiver = pair.conn("b" if src == "a" else "a")
    view = memoryview(data)
    pos = 0
    got = bytearray()

    def pump() -> None:
        nonlocal pos
        if pos < len(data):
            pos += sender.send(view[pos : pos + (1 << 20)])
        got.extend(receiver.recv())

    pair.run(lambda: len(got) >= len(data), max_time=max_time, max_steps=5_000_000, on_step=pump)
    return bytes(got)


# ---------------------------------------------------------------------------------------------
# Self-tests of the harness (they double as smoke tests of the connection)
# ---------------------------------------------------------------------------------------------


def drop_nth_data(direction: str, which: set[int]) -> tuple[list[Segment], Filter]:
    seen: dict[int, int] = {}
    dropped: list[Segment] = []

    def f(d: str, s: Segment) -> bool:
        if d != direction or not s.payload:
            return False
        n = seen.setdefault(s.seq, len(seen))
        if n in which and all(x.seq != s.seq for x in dropped):
            dropped.append(s)
            return True
        return False

    return dropped, f
