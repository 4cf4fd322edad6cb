"""Simulation work spread over processes, failing loudly when one of them dies.

`multiprocessing.Pool` replaces a worker killed mid-task (the kernel's out-of-memory killer, a
`kill -9`) and waits for its lost result forever; a `ProcessPoolExecutor` notices the death and
raises, which becomes one line for the user and a non-zero exit. An error in a worker's set-up is
kept and raised by its first task, so it reaches the user as itself.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any

from ..errors import LensmlError

_SETUP_ERROR: list[Exception] = []  # per worker process


class WorkerDiedError(LensmlError):
    """A worker process ended without finishing its task."""


def _set_up(initializer: Callable[..., None], initargs: tuple) -> None:
    try:
        initializer(*initargs)
    except Exception as error:  # raised again by the first task, where the caller sees it
        _SETUP_ERROR.append(error)


def _task(fn: Callable[[Any], Any], item: Any) -> Any:
    if _SETUP_ERROR:
        raise _SETUP_ERROR[0]
    return fn(item)


def _context(start_method: str | None, preload: Sequence[str]) -> mp.context.BaseContext:
    """With `preload`, a fork server that imports those modules once and forks each worker from itself.

    Spawned workers each import torch and caustics again: on 2 cores 7.4 s until 2 workers are
    ready and 14 s for 4, against under 3 s from a fork server (`benchmarks/worker_startup.py`).
    The fork server has only imported them (no torch thread pool has run in it), so forking from it
    is safe where forking the caller is not. A process has one fork server: the first preload wins.
    """
    if preload and "forkserver" in mp.get_all_start_methods():
        context = mp.get_context("forkserver")
        context.set_forkserver_preload(list(preload))
        return context
    return mp.get_context(start_method)


def map_in_workers(fn: Callable[[Any], Any], items: Iterable[Any], workers: int, initializer: Callable[..., None],
                   initargs: tuple = (), *, ordered: bool = True, chunksize: int = 1,
                   start_method: str | None = None, preload: Sequence[str] = ()) -> Iterator[Any]:
    """`fn(item)` for each item in `workers` processes, in input order (`ordered`, `chunksize` items per
    task) or as they finish. All items are queued at once: a few hundred bytes each. `preload`: modules
    a fork server imports once for all workers (`start_method` where the platform has no fork server)."""
    if not ordered and chunksize != 1:
        raise ValueError("chunksize applies to ordered maps only")
    pool = ProcessPoolExecutor(workers, mp_context=_context(start_method, preload), initializer=_set_up,
                               initargs=(initializer, initargs))
    task = partial(_task, fn)
    finished = False
    try:
        if ordered:
            yield from pool.map(task, items, chunksize=chunksize)
        else:
            yield from (future.result() for future in as_completed([pool.submit(task, item) for item in items]))
        finished = True
    except BrokenProcessPool:
        raise WorkerDiedError("a worker process ended unexpectedly (killed, perhaps for lack of memory; any "
                              "message above says more): rerun the command, with fewer --workers if memory is "
                              "short") from None
    except EOFError:  # the fork server died while starting (a preloaded module failed to import)
        raise WorkerDiedError("the worker processes could not start (any message above says why); rerun "
                              "with --workers 1") from None
    finally:
        running = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
        pool.shutdown(wait=finished, cancel_futures=True)
        if not finished:  # an error, Ctrl-C or a caller that stopped early: no waiting for running tasks
            for process in running:
                process.terminate()
