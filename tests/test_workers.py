"""Simulation workers: a worker that dies (out of memory, killed) ends the command with one line
instead of leaving `multiprocessing.Pool` waiting forever; errors keep their own type."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from textwrap import dedent

import pytest

from lensml.errors import BadInputError
from lensml.simulate.workers import WorkerDiedError, map_in_workers

_STATE: dict[str, object] = {}
# plain spawned workers, and workers forked from a server that has imported the renderer's modules
POOLS = [{"start_method": "spawn"}, {"start_method": "spawn", "preload": ("lensml.simulate.strong",)}]


def _nothing() -> None:
    pass


def _remember(offset: int, folder: str) -> None:
    _STATE.update(offset=offset, folder=folder)


def _refuse() -> None:
    raise BadInputError("bad settings")


def _shifted(i: int) -> int:
    """i + offset; item 0 finishes only once items 1-5 have (another worker takes them meanwhile)."""
    folder = Path(_STATE["folder"])
    if i:
        (folder / str(i)).touch()
    else:  # no race: the test's own hang limit (120 s) fails it first; this bound only ends a stray worker
        give_up = time.monotonic() + 600
        while len(list(folder.iterdir())) < 5 and time.monotonic() < give_up:
            time.sleep(0.01)
    return i + _STATE["offset"]


def _has_caustics(i: int) -> bool:
    return "caustics" in sys.modules


def _complain(i: int) -> int:
    raise BadInputError(f"item {i} is bad")


def _within(seconds: float, work):
    """The result of work(), or a test failure if it takes longer than `seconds` (a hang)."""
    box: dict[str, object] = {}

    def run():
        try:
            box["value"] = work()
        except BaseException as error:  # handed to the test thread
            box["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("ordered", [True, False])
def test_a_dead_worker_raises_instead_of_hanging(ordered, pool):
    with pytest.raises(WorkerDiedError, match="worker process ended unexpectedly"):
        _within(120, lambda: list(map_in_workers(os._exit, [3, 3], 2, _nothing, ordered=ordered, **pool)))


def test_preloaded_modules_are_imported_before_the_workers_start():
    # this module does not import caustics, so a worker has it only from the fork server's preload
    plain, preloaded = (_within(120, lambda: list(map_in_workers(_has_caustics, range(2), 2, _nothing, **pool)))
                        for pool in POOLS)
    assert plain == [False, False] and preloaded == [True, True]


def test_order_and_the_initializer_arguments(tmp_path):
    def run(ordered):
        folder = tmp_path / str(ordered)
        folder.mkdir()
        return list(map_in_workers(_shifted, range(6), 2, _remember, (100, str(folder)), ordered=ordered,
                                   start_method="spawn"))
    assert _within(120, lambda: run(True)) == list(range(100, 106))
    unordered = _within(120, lambda: run(False))
    assert sorted(unordered) == list(range(100, 106)) and unordered[-1] == 100  # as they finished


def test_a_preload_that_fails_to_import_is_one_clear_error(tmp_path):
    # in a fresh process: a process has one fork server, started with the first preload it is given
    (tmp_path / "broken_module.py").write_text("raise RuntimeError('broken at import')\n")
    script = tmp_path / "start.py"
    script.write_text(dedent(f"""
        from lensml.simulate.workers import WorkerDiedError, map_in_workers
        if __name__ == "__main__":
            try:
                list(map_in_workers(abs, [1, -2], 2, print, preload=("broken_module",)))
            except WorkerDiedError as error:
                print("refused:", error)
    """))
    # cwd: the fork server finds modules on its default path (the current folder), not the caller's sys.path
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "refused: the worker processes could not start" in done.stdout, done.stdout + done.stderr[-2000:]


@pytest.mark.parametrize("pool", POOLS)
def test_errors_in_tasks_and_set_up_keep_their_type(pool):
    with pytest.raises(BadInputError, match="item"):
        _within(120, lambda: list(map_in_workers(_complain, range(4), 2, _nothing, **pool)))
    with pytest.raises(BadInputError, match="bad settings"):
        _within(120, lambda: list(map_in_workers(_complain, range(4), 2, _refuse, **pool)))


def test_unordered_maps_take_no_chunks():
    with pytest.raises(ValueError):
        list(map_in_workers(abs, [1], 1, _nothing, ordered=False, chunksize=4))
