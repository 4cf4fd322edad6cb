"""Shared by the benchmark scripts: median times after a warm-up, alone or side by side."""

from __future__ import annotations

import importlib
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType


def timed(step: Callable[[], object], repeats: int) -> float:
    """Median seconds of `repeats` calls of `step`, after one untimed call (caches, page faults, JIT)."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_side_by_side(steps: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each step in each of `repeats` rounds, the steps taking turns within a round (after
    one untimed call each), so that a machine's slow spells fall on all of them alike: compare steps
    by the median of their per-round ratios."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


def median_ratio(slow: list[float], fast: list[float]) -> float:
    """Median over rounds of slow / fast seconds: how many times faster `fast` ran."""
    return statistics.median(s / f for s, f in zip(slow, fast))


def import_other_lensml(package_dir: str, submodule: str) -> ModuleType:
    """`submodule` (e.g. "shear.network_metacal") of another checkout's lensml package (its `src/lensml`
    folder), imported as part of `lensml_before` beside this one, so that one process can time both
    on the same inputs."""
    init = Path(package_dir) / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"{package_dir}: not a lensml package folder (no __init__.py)")
    spec = importlib.util.spec_from_file_location("lensml_before", init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["lensml_before"] = module
    spec.loader.exec_module(module)
    return importlib.import_module(f"lensml_before.{submodule}")
