"""A simulation worker that dies (out of memory, killed) ends the command with one line, instead of
leaving `multiprocessing.Pool` waiting forever for the lost task."""

from __future__ import annotations

import os

import pytest

from lensml.simulate.workers import WorkerDiedError, map_in_workers


def _nothing() -> None:
    pass


@pytest.mark.parametrize("ordered", [True, False])
def test_a_dead_worker_raises_instead_of_hanging(ordered):
    with pytest.raises(WorkerDiedError, match="worker process died"):
        list(map_in_workers(os._exit, [3, 3], 2, _nothing, ordered=ordered, start_method="spawn"))


@pytest.mark.parametrize("ordered", [True, False])
def test_results_of_living_workers(ordered):
    out = list(map_in_workers(abs, range(-5, 5), 2, _nothing, ordered=ordered, chunksize=2, start_method="spawn"))
    expected = [abs(i) for i in range(-5, 5)]
    assert (out if ordered else sorted(out)) == (expected if ordered else sorted(expected))
