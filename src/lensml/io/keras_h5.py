"""Weights of a Keras model saved as HDF5 (`model.save("x.h5")`, Keras 2 or 3), read with h5py.

Only what an import needs: the layers that hold weights, in the model's layer order, each as a
kind (convolution, dense, batch normalisation) and its arrays by role, plus the input shape the
model was built for.  Nothing is executed: the file is data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInputError, MissingFileError

BATCH_NORM_ROLES = ("gamma", "beta", "moving_mean", "moving_variance")


@dataclass(frozen=True)
class KerasLayer:
    """One Keras layer with weights: `kind` is "conv", "dense" or "batchnorm"; `weights` by role."""

    name: str
    kind: str
    weights: dict[str, np.ndarray]


def _role(weight_name: str) -> str:
    """'conv2d/kernel:0' -> 'kernel'."""
    return weight_name.rsplit("/", 1)[-1].split(":")[0]


def _kind(name: str, weights: dict[str, np.ndarray], path: Path) -> str:
    if "kernel" in weights and weights["kernel"].ndim == 4:
        return "conv"
    if "kernel" in weights and weights["kernel"].ndim == 2:
        return "dense"
    if "moving_mean" in weights:
        return "batchnorm"
    raise BadInputError(f"{path}: Keras layer {name!r} holds weights ({', '.join(weights)}) that no lensml layer takes")


def read_keras_h5(path: str | Path) -> tuple[list[KerasLayer], tuple[int, ...] | None]:
    """The layers with weights, in order, and the input shape (H, W, C) if the file records it."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such Keras file")
    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in group.attrs:
                raise BadInputError(f"{path}: an HDF5 file, but not a Keras model or weights file")
            layers = []
            for raw_name in group.attrs["layer_names"]:
                name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
                names = [w.decode() if isinstance(w, bytes) else str(w) for w in group[name].attrs["weight_names"]]
                if not names:
                    continue
                weights = {_role(w): np.asarray(group[name][w]) for w in names}
                layers.append(KerasLayer(name, _kind(name, weights, path), weights))
            config = f.attrs.get("model_config")
    except OSError as exc:
        raise BadInputError(f"{path}: not a readable HDF5 file ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:  # a layer listed but absent, an attribute missing
        raise BadInputError(f"{path}: a damaged Keras file ({exc})") from None
    return layers, _input_shape(config)


def _input_shape(config) -> tuple[int, ...] | None:
    """(H, W, C) of the model's InputLayer, from the JSON model config (Keras 2 or 3 keys)."""
    if config is None:
        return None
    text = config.decode() if isinstance(config, bytes) else str(config)
    try:
        layers = json.loads(text).get("config", {}).get("layers", [])
        for layer in layers:
            if layer.get("class_name") == "InputLayer":
                shape = layer["config"].get("batch_shape") or layer["config"].get("batch_input_shape")
                if shape and all(isinstance(s, int) and s > 0 for s in shape[1:]):
                    return tuple(shape[1:])
    except (ValueError, AttributeError, KeyError, TypeError):  # a config this reader cannot follow
        return None
    return None
