"""Shared by the benchmark scripts: the median time of a step after a warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(step: Callable[[], object], repeats: int) -> float:
    """Median seconds of `repeats` calls of `step`, after one untimed call (caches, page faults, JIT)."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
