"""Simulation work spread over processes, failing loudly when one of them dies.

`multiprocessing.Pool` replaces a worker killed mid-task (the kernel's out-of-memory killer, a
`kill -9`) and waits for its lost result forever; a `ProcessPoolExecutor` notices the death and
raises, which becomes one line for the user and a non-zero exit.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import LensmlError


class WorkerDiedError(LensmlError):
    """A worker process ended without finishing its task."""


def map_in_workers(fn: Callable[[Any], Any], items: Iterable[Any], workers: int, initializer: Callable[..., None],
                   initargs: tuple = (), *, ordered: bool = True, chunksize: int = 1,
                   start_method: str | None = None) -> Iterator[Any]:
    """`fn(item)` for each item in `workers` processes, in input order (`ordered`) or as they finish."""
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context(start_method), initializer=initializer,
                               initargs=initargs)
    try:
        if ordered:
            yield from pool.map(fn, items, chunksize=chunksize)
        else:
            yield from (future.result() for future in as_completed([pool.submit(fn, item) for item in items]))
    except BrokenProcessPool:
        raise WorkerDiedError("a worker process died (killed, perhaps for lack of memory): rerun the command, "
                              "with fewer --workers if memory is short") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
