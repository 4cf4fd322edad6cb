"""The Python API: what the `lensml` command does, as functions that return paths, arrays and dicts.

Every function takes the command's options as keyword arguments, chooses the task (shear or
lens finding) from its input as the command does, and stays quiet unless `verbose=True`
(progress bars follow `progress`). Mistakes raise `lensml.LensmlError` with the one-line message
the command would print.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .report import quiet

PathLike = str | os.PathLike


def simulate_weak(n: int, out: PathLike, *, seed: int = 0, workers: int = 1, preset: str = "lensnet",
                  progress: bool = False, verbose: bool = False, **settings: Any) -> Path:
    """Draw `n` galaxy + PSF stamp pairs with GalSim into `out` (LensNet's layout); returns its data.json.

    `settings` are those of `lensml simulate weak --config` (e.g. ``e_int_sigma=0.2, snr=(20, 100)``).
    """
    from .config import replace_from
    from .simulate.weak import preset as weak_preset
    from .simulate.weak_files import simulate_weak as run

    config = replace_from(weak_preset(preset), settings, "simulate_weak")
    with quiet(not verbose):
        return run(config, n, out, seed=seed, workers=workers, progress=progress)


def simulate_strong(survey: str, n: int, out: PathLike, *, seed: int = 0, image_size: int | None = None,
                    lens_fraction: float = 0.5, workers: int = 1, device: str = "cpu", progress: bool = False,
                    verbose: bool = False, **settings: Any) -> Path:
    """Draw `n` lensed and non-lensed scenes of a registered survey into `out` (challenge layout).

    Returns the labels file written (classifications.csv). `settings` override the survey's
    simulation preset (`lensml.simulate.surveys.StrongSimConfig` fields, e.g. ``theta_e=(0.5, 5)``).
    """
    from .simulate.strong_files import simulate_strong as run

    with quiet(not verbose):
        return run(survey, n, out, seed=seed, lens_fraction=lens_fraction, workers=workers, device=device,
                   image_size=image_size, config_overrides=settings or None, progress=progress)


def train(data: PathLike, model: PathLike, *, config_file: PathLike | None = None, remove: bool = False,
          progress: bool = False, verbose: bool = False, **options: Any) -> Path:
    """Train a network on a data.json (shear) or a lens-finding folder; returns the model file.

    Options are the command's (``arch, epochs, batch_size, lr, val_fraction, seed, augment, device``;
    shear: ``loss, targets, calibrate``; lens finding: ``norm``). Rerunning goes on from the checkpoint.
    """
    from .tasks import given, task_for_input

    with quiet(not verbose):
        return task_for_input(data).train(str(data), str(model), given(options),
                                          config_file=None if config_file is None else str(config_file),
                                          remove=remove, progress=progress)


def evaluate(data: PathLike | Sequence[PathLike], model: PathLike | Sequence[PathLike], *, progress: bool = False,
             verbose: bool = False, **options: Any) -> dict | list[dict]:
    """Score model(s) on the items of `data` they did not train on.

    Shear: a dict of RMSE, m, c (with errors) and the same under "hsm". Lens finding: a dict per
    model of AUC, TPR0, TPR10, TPR/FPR at 0.5 (a list when several models are given). Options:
    ``device, batch_size, tta, json_path, plot_path`` (``tta``: True for the 8 views, the default, False
    or 1, 2, 4 views); shear also ``hsm``; lens finding also ``prevalence, min_lensed_pixels``.
    Shear `data` may be several data.json sets, scored as one.
    """
    from .tasks import given, task_for_inputs

    models = [model] if isinstance(model, (str, os.PathLike)) else list(model)
    inputs = [str(data)] if isinstance(data, (str, os.PathLike)) else [str(d) for d in data]
    with quiet(not verbose):
        results = task_for_inputs(inputs).evaluate(inputs[0] if len(inputs) == 1 else inputs,
                                                   [str(m) for m in models], given(options), progress=progress)
    return results[0] if isinstance(results, list) and isinstance(model, (str, os.PathLike)) else results


def predict(data: PathLike, model: PathLike, *, progress: bool = False, verbose: bool = False,
            **options: Any) -> np.ndarray:
    """Predictions of a model: (N, targets) shears, or (N,) lens probabilities, for a set or one image.

    Options: ``device, batch_size, out_csv, tta`` (views, as for `evaluate`); shear: ``psf``; lens finding:
    ``workers, shard``.
    """
    from .tasks import given, task_for_model

    with quiet(not verbose):
        return task_for_model(model).predict(str(data), str(model), given(options), progress=progress)


def calibrate(data: PathLike, model: PathLike, *, device: str = "auto", progress: bool = False,
              verbose: bool = False) -> dict:
    """Measure a shear model's multiplicative bias on an independent set and store it in the model file."""
    from .tasks import task_named

    with quiet(not verbose):
        return task_named("shear").calibrate(str(data), str(model), device=device, progress=progress)


def load_model(path: PathLike, device: str = "cpu"):
    """(network in eval mode, ModelInfo) from a model file; loading never runs code."""
    from .modelfile import load_model as load

    return load(path, device)
