"""Shear: stamps in LensNet's data.json layout, regression of g1, g2, scored by m, c beside HSM."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import BadInputError
from .base import Task

TRAIN = ("arch", "epochs", "batch_size", "lr", "val_fraction", "seed", "augment", "schedule", "device", "patience",
         "precision", "compile")


class ShearTask(Task):
    what = "shear data (a data.json)"
    train_options = frozenset({*TRAIN, "loss", "targets", "calibrate", "metacal", "target", "width"})
    evaluate_options = frozenset({"device", "batch_size", "tta", "hsm", "anacal", "metacal", "json_path", "plot_path"})
    predict_options = frozenset({"device", "batch_size", "tta", "psf", "out_csv", "metacal"})

    def train(self, data: str, model: str, options: Mapping[str, Any], config_file: str | None = None,
              remove: bool = False, progress: bool = True) -> Path:
        from ..workflows.shear_config import build_config
        from ..workflows.shear_train import train_shear

        self.check("train", options)
        return train_shear(data, model, build_config(config_file, dict(options)), remove=remove, progress=progress)

    def evaluate(self, data: str | Sequence[str], models: Sequence[str], options: Mapping[str, Any], progress: bool = True):
        from ..workflows.shear_eval import evaluate_shear

        self.check("evaluate", options, data)
        if len(models) != 1:
            raise BadInputError("shear evaluation takes one model at a time")
        hsm = options.get("hsm", "REGAUSS")
        return evaluate_shear(data, str(models[0]), **{**options, "hsm": None if hsm == "none" else hsm},
                              progress=progress)

    def predict(self, data: str, model: str, options: Mapping[str, Any], progress: bool = True):
        from ..workflows.shear_eval import predict_shear

        self.check("predict", options, data)
        return predict_shear(data, model, **options, progress=progress)

    def calibrate(self, data: str, model: str, device: str = "auto", progress: bool = True) -> dict:
        from ..workflows.calibration import calibrate_from_manifest

        return calibrate_from_manifest(data, model, device=device, progress=progress)
