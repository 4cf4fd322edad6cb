"""Checkpoint files: the last weights, optimiser state and TrainState of a run, for resuming it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from .errors import BadInputError
from .modelfile import read_tensors, save_tensors
from .training import TrainState


def checkpoint_path(model_file: Path) -> Path:
    return model_file.with_name(model_file.name.removesuffix(".safetensors") + ".ckpt.safetensors")


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainState, extra: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for pid, values in opt["state"].items():
        for key, value in values.items():
            tensors[f"optim.{pid}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    # Unset fields are left out: a run that never needed them stays readable by earlier versions.
    saved_state = {key: value for key, value in asdict(state).items() if value is not None}
    header = {"lensml_checkpoint": json.dumps({"state": saved_state, "param_groups": opt["param_groups"], **extra})}
    save_tensors(path, tensors, header)


def checkpoint_record(path: Path) -> dict:
    """The checkpoint's record (architecture, data digest, split) without its tensors: what a resume
    checks first, so a checkpoint of another model or data set is named as such, not as damaged."""
    _, header = read_tensors(path, what="checkpoint", header_only=True)
    try:
        return json.loads(header["lensml_checkpoint"])
    except (KeyError, ValueError) as exc:
        raise BadInputError(f"{path}: damaged checkpoint ({exc}); rerun with -r to start again") from None


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[TrainState, dict]:
    tensors, header = read_tensors(path, what="checkpoint")
    try:
        meta = json.loads(header["lensml_checkpoint"])
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        opt_state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                opt_state.setdefault(int(pid), {})[name] = value
        optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
        state = TrainState(**meta["state"])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise BadInputError(f"{path}: damaged checkpoint ({str(exc).splitlines()[0]}); rerun with -r to start again") from None
    return state, meta
