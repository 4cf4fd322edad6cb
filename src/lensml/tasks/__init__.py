"""One Task per job, chosen once from the input (or the model file): shear or lens finding.

A Task owns what differs between the jobs: which files it reads, its training settings and
targets, how it scores and predicts. The CLI and the Python API pick a Task and call it; neither
holds a `shear or lens` branch nor checks which option belongs to which job: a Task refuses, in
one line, the options that are not its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..data.lens_set import is_lens_folder
from ..errors import BadInputError, MissingFileError
from ..modelfile import read_info
from .base import Task
from .lens import LensTask
from .shear import ShearTask

TASKS: dict[str, Task] = {"shear": ShearTask(), "lens": LensTask()}


def task_named(name: str) -> Task:
    return TASKS[name]


def task_for_input(path: str | Path) -> Task:
    """The lens task for a challenge-layout or cutout folder, the shear task for a data.json or its folder."""
    p = Path(path)
    if is_lens_folder(p):
        return TASKS["lens"]
    if p.suffix.lower() == ".json" or (p / "data.json").is_file():
        return TASKS["shear"]
    if not p.exists():
        raise MissingFileError(f"{p}: no such file or folder")
    raise BadInputError(f"{p}: neither a data.json (shear) nor a challenge-layout or cutout folder (lens finding)")


def task_for_inputs(paths: Sequence[str | Path]) -> Task:
    """The one task that every input belongs to (several inputs are scored together)."""
    tasks = [task_for_input(p) for p in paths]
    for path, task in zip(paths, tasks):
        if task is not tasks[0]:
            raise BadInputError(f"{path}: {task.what}, but {paths[0]} is {tasks[0].what}; score them apart")
    return tasks[0]


def task_for_model(model_file: str | Path) -> Task:
    """The task a model file was trained for."""
    return TASKS[read_info(model_file).task]


def given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options a user set (None means left alone)."""
    return {k: v for k, v in options.items() if v is not None}


__all__ = ["Task", "TASKS", "given", "task_for_input", "task_for_model", "task_named"]
