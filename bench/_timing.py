"""Timing helpers: medians of repeated batches, so one noisy batch does not skew a figure."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def per_call_us(fn: Callable[[], object], calls: int, repeat: int = 7) -> float:
    """Median over ``repeat`` batches of the mean cost of one call, in microseconds."""
    fn()  # warm caches and lazy state
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter_ns() - t0) / calls / 1000)
    return statistics.median(samples)


def once_ms(fn: Callable[[], object], runs: int) -> list[float]:
    """Wall time of each of ``runs`` single calls, in milliseconds."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out
