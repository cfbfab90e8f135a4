"""Busy polling for the stock asyncio loop: after I/O, poll the sockets without sleeping for a
short while before the loop blocks, so the next packet of an exchange finds the process awake.

Why: across two processes, a small round trip is mostly the cost of waking a sleeping process
(twice), not of the work. ``python -m bench.loop_floor`` measured an asyncio UDP ping-pong on
loopback at 59-71 us across two processes against 22 us in one; with each side polling for up
to 200 us before it sleeps, 16 us. The same trade is Linux's ``SO_BUSY_POLL`` /
``net.core.busy_read`` and what DPDK, Seastar and Onload do: latency for CPU time.

The rule, and what it costs:

- A ``select`` that may block first polls (``select(0)``, the inner selector's own call) for at
  most ``spin_us``, and only when the last ``select`` that returned events is more recent than
  any that found nothing while it could wait: traffic is flowing. A poll that finds nothing ends
  the warm spell, so an idle loop, or one woken only by its
  timers, sleeps exactly as without busy polling and costs nothing more.
- While requests and answers keep coming, each wait costs up to ``spin_us`` of CPU: a
  request/response exchange keeps its core busy for as long as it lasts. That is the price,
  which is why it is off unless asked for (``--busy-poll US``, ``ZTNODE_BUSY_POLL``, or a loop
  from :func:`ztnode.transport.eventloop.new_loop`).
- Between polls the process yields its core (``sched_yield``): on a machine with fewer free
  cores than busy processes, the process a packet just woke (often the other end of the
  exchange) runs at once instead of after the poll. Polling pays fully only where each busy
  process has a core to itself.
- Timers stay on time: the poll never runs past the ``select``'s timeout, and a timeout that
  runs out while polling returns as the blocking call would have, with nothing ready.

Only asyncio's own loop takes a selector; uvloop (libuv) cannot poll this way, which is why
choosing busy polling chooses the stock loop (:mod:`ztnode.transport.eventloop`).
"""

from __future__ import annotations

import os
import selectors
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["MAX_SPIN_US", "BusyPollSelector", "check_spin_us"]


def _no_yield() -> None:
    """Where the system has no ``sched_yield``: poll without yielding."""


_sched_yield: Callable[[], None] = getattr(os, "sched_yield", _no_yield)

#: The longest poll accepted: beyond a few milliseconds a process is better off asleep (Linux
#: suggests 50 us for ``busy_read``; exchanges across a LAN take a few hundred).
MAX_SPIN_US: Final = 10_000


def check_spin_us(value: int, setting: str) -> int:
    """``value`` when it is a whole number of microseconds in 0..:data:`MAX_SPIN_US` (0: off);
    otherwise ValueError naming ``setting`` (the switch or variable that gave it)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SPIN_US:
        raise ValueError(
            f"{setting}: {value!r} is not a number of microseconds from 0 (off) to {MAX_SPIN_US}"
        )
    return value


class BusyPollSelector(selectors.BaseSelector):
    """A selector that polls ``inner`` for up to ``spin_us`` before a blocking wait, right after
    a wait that returned events (see the module docstring). Registration is ``inner``'s.

    ``clock`` (seconds, monotonic) and ``yield_cpu`` (between empty polls; default
    ``os.sched_yield``) are injected for tests. The counters say what polling bought:
    ``spins`` polls begun, ``caught`` of them ending with events, ``spun`` seconds spent polling
    in all."""

    def __init__(
        self,
        spin_us: int,
        inner: selectors.BaseSelector | None = None,
        clock: Callable[[], float] = time.perf_counter,
        yield_cpu: Callable[[], None] | None = None,
    ) -> None:
        check_spin_us(spin_us, "busy poll")
        if spin_us == 0:
            raise ValueError("busy poll: 0 us is no busy polling; use the inner selector")
        self._inner = inner if inner is not None else selectors.DefaultSelector()
        self._spin = spin_us / 1e6
        self._clock = clock
        self._yield = yield_cpu if yield_cpu is not None else _sched_yield
        self._warm = False
        self.spin_us = spin_us
        self.spins = 0
        self.caught = 0
        self.spun = 0.0

    # registration: the inner selector's

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    # waiting

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        inner = self._inner
        if self._warm and (timeout is None or timeout > 0):
            clock = self._clock
            yield_cpu = self._yield
            start = clock()
            budget = self._spin if timeout is None or timeout > self._spin else timeout
            end = start + budget
            self.spins += 1
            while True:
                ready = inner.select(0)
                now = clock()
                if ready:
                    self.caught += 1
                    self.spun += now - start
                    return ready
                if now >= end:
                    break
                yield_cpu()  # a process waiting for this core (the other end, often) runs now
            self.spun += now - start
            self._warm = False  # nothing came: sleep from here on until traffic does
            if timeout is not None:
                timeout -= now - start
                if timeout <= 0:
                    return []  # the timeout ran out while polling, as the wait would have
        ready = inner.select(timeout)
        if ready:
            self._warm = True
        elif timeout is None or timeout > 0:
            self._warm = False  # a wait that timed out: quiet
        # An empty zero-timeout check (the loop had callbacks ready) says nothing about traffic:
        # asyncio makes one after most I/O, and it must not end the warm spell.
        return ready

    def stats(self) -> dict[str, float]:
        """The counters (``loop._selector.stats()`` on a loop from ``new_loop``): what polling
        bought, for benchmarks and a program's own reports."""
        return {
            "spin_us": self.spin_us,
            "spins": self.spins,
            "caught": self.caught,
            "spun_seconds": self.spun,
        }
