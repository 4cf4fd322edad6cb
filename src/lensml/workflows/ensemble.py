"""`lensml ensemble`: lens finders of one survey, bands and cutout size combined into one model file."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BadInputError
from ..modelfile import ModelInfo, load_model, model_path, save_model, writable_model_path
from ..report import report


def make_ensemble(model_files: Sequence[str], out: str) -> Path:
    """Write a committee of `model_files`: the mean of their calibrated probabilities.

    Members must take the same bands, cutout size and normalisation. The committee's training
    record holds the union of its members' training items, so evaluation never scores a scene
    any member trained on.
    """
    if len(model_files) < 2:
        raise BadInputError("an ensemble needs at least two models")
    if any(model_path(f).resolve() == model_path(out).resolve() for f in model_files):
        raise BadInputError(f"-o {out} is one of the members; write the committee to a file of its own")
    nets, infos = zip(*(load_model(f) for f in model_files))
    first = infos[0]
    for path, info in zip(model_files, infos):
        if info.task != "lens":
            raise BadInputError(f"{path} is a {info.task} model; ensembles combine lens finders")
        for what, mine, theirs in (("bands", info.arch_kwargs["in_channels"], first.arch_kwargs["in_channels"]),
                                   ("cutout size", info.image_size, first.image_size), ("normalisation", info.norm, first.norm),
                                   ("survey", info.survey.get("name"), first.survey.get("name"))):
            if mine != theirs:
                raise BadInputError(f"{path}: {what} {mine} differs from {model_files[0]}'s ({theirs}); "
                                    "an ensemble's members take the same scenes")
        if "train_digests" not in info.training:
            raise BadInputError(f"{path}: no record of its training scenes (an old model file); retrain it to "
                                "use it in an ensemble")
    members = [{"arch": i.arch, "arch_kwargs": i.arch_kwargs, "temperature": float(i.calibration.get("temperature", 1.0)),
                "file": Path(f).name, "epochs": i.training.get("epochs_done")} for f, i in zip(model_files, infos)]
    trained = np.unique(np.concatenate([np.frombuffer(base64.b64decode(i.training["train_digests"]), dtype=np.uint64)
                                        for i in infos]))
    info = ModelInfo(
        arch="lens_ensemble", arch_kwargs={"members": members, "in_channels": first.arch_kwargs["in_channels"],
                                           "out_features": 1, "image_size": list(first.image_size)},
        task="lens", inputs=list(first.inputs), norm=first.norm, targets=["is_lens"], target_mean=[0.0],
        target_std=[1.0], survey=first.survey,
        training={"members": [m["file"] for m in members], "train_digests": base64.b64encode(trained.tobytes()).decode(),
                  "epochs_done": None, "seconds": sum(i.training.get("seconds", 0.0) for i in infos)},
    )
    net = info.build()
    for member, trained_net in zip(net.members, nets):
        member.load_state_dict(trained_net.state_dict())
    path = save_model(writable_model_path(out), net, info)
    report(f"wrote {path}: a committee of {len(members)} ({', '.join(m['arch'] for m in members)})")
    return path
