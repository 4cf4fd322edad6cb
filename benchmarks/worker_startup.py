"""Start-up of `simulate strong`'s worker processes: spawned, or forked from a preloading fork server.

Each timed run is a fresh Python process (as each `lensml simulate` command is) that starts
--workers workers and has each import the renderer's modules (torch, caustics), the work a
worker does before its first scene. "spawn" imports them in every worker; "fork server" imports
them once in a server that forks the workers. The two take turns in each repeat; printed: the
median seconds of each and the median of the per-repeat ratios.

    python benchmarks/worker_startup.py [--workers 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _timing import median_ratio, timed_side_by_side

RENDERER = "lensml.simulate.strong"
CHILD = """
import sys
from lensml.simulate.workers import map_in_workers
def _import_renderer(i):
    import importlib
    importlib.import_module({renderer!r})
    return i
def _nothing():
    pass
if __name__ == "__main__":
    workers, preload = int(sys.argv[1]), sys.argv[2] == "preload"
    done = list(map_in_workers(_import_renderer, range(workers), workers, _nothing, start_method="spawn",
                               preload=({renderer!r},) if preload else ()))
    assert done == list(range(workers))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        child = Path(folder) / "start_workers.py"  # a file: spawned workers re-import their main module
        child.write_text(CHILD.format(renderer=RENDERER))

        def run(mode: str):
            return lambda: subprocess.run([sys.executable, str(child), str(args.workers), mode], check=True)

        times = timed_side_by_side({"spawn": run("spawn"), "fork server": run("preload")}, args.repeats)
    for name, seconds in times.items():
        print(f"{name:>12}: {statistics.median(seconds):.2f} s to {args.workers} workers ready (median of {args.repeats})")
    print(f"fork server / spawn: {median_ratio(times['spawn'], times['fork server']):.2f}x as fast")


if __name__ == "__main__":
    main()
