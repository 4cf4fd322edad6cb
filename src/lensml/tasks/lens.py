"""Lens finding: challenge-layout or cutout folders of any survey, binary classification, ROC scoring."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import BadInputError
from .base import Task
from .shear import TRAIN


class LensTask(Task):
    what = "lens finding (a challenge-layout or cutout folder)"
    train_options = frozenset({*TRAIN, "norm"})
    evaluate_options = frozenset({"device", "batch_size", "tta", "json_path", "plot_path", "prevalence",
                                  "min_lensed_pixels"})
    predict_options = frozenset({"device", "batch_size", "tta", "out_csv", "workers", "shard"})

    def train(self, data: str, model: str, options: Mapping[str, Any], config_file: str | None = None,
              remove: bool = False, progress: bool = True) -> Path:
        from ..workflows.lens_config import build_lens_config
        from ..workflows.lens_train import train_lens

        self.check("train", options)
        return train_lens(data, model, build_lens_config(config_file, dict(options)), remove=remove, progress=progress)

    def evaluate(self, data: str | Sequence[str], models: Sequence[str], options: Mapping[str, Any],
                 progress: bool = True):
        from ..workflows.lens_eval import evaluate_lens

        self.check("evaluate", options, data)
        if not isinstance(data, str):
            if len(data) != 1:
                raise BadInputError(f"{data[1]}: lens finders are scored on one folder at a time")
            data = data[0]
        return evaluate_lens(data, [str(m) for m in models], **options, progress=progress)

    def predict(self, data: str, model: str, options: Mapping[str, Any], progress: bool = True):
        from ..simulate.record import parse_shard
        from ..workflows.lens_predict import predict_lens

        self.check("predict", options, data)
        options = dict(options)
        if isinstance(options.get("shard"), str):
            options["shard"] = parse_shard(options["shard"])
        return predict_lens(data, model, **options, progress=progress)
