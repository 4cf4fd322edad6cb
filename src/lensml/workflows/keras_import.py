"""`lensml import-keras`: a Keras `.h5` model (LEXACTUM's lens finders, LensNet's VGG19) as a lensml model file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInputError
from ..io.keras_h5 import read_keras_h5
from ..modelfile import ModelInfo, save_model, writable_model_path
from ..models import get_spec
from ..models.keras_import import load_keras_weights
from ..report import report


def import_keras(h5_path: str, arch: str, out: str, config_path: str | None = None, survey: str | None = None,
                 image_size: tuple[int, int] | None = None) -> Path:
    """Build `arch` for the Keras model's input, copy its weights, write a lensml model file."""
    spec = get_spec(arch)
    layers, input_shape = read_keras_h5(h5_path)
    if image_size is not None:
        channels = input_shape[-1] if input_shape else _first_conv_channels(layers, h5_path)
        input_shape = (*image_size, channels)
    if input_shape is None or len(input_shape) != 3:
        raise BadInputError(f"{h5_path}: the file records no (height, width, channels) input; give --image-size H W")
    height, width, channels = input_shape
    out_features = _last_dense_width(layers, h5_path)
    if spec.task == "lens":
        info = _lens_info(spec, channels, (height, width), out_features, survey, h5_path)
    else:
        if survey:
            raise BadInputError("--survey applies to lens finders, not to shear networks")
        info = _shear_info(spec, channels, (height, width), out_features, config_path, h5_path)
    try:
        net = info.build()
    except ValueError as exc:  # cutouts too small for the architecture's pooling
        raise BadInputError(f"{h5_path}: {exc}") from None
    load_keras_weights(net, layers, (channels, height, width))
    info.training = {"imported_from": str(Path(h5_path).name), "keras_layers": len(layers)}
    path = save_model(writable_model_path(out), net, info)
    report(f"imported {len(layers)} Keras layers into {arch} ({height}x{width}x{channels}); wrote {path}")
    return path


def _first_conv_channels(layers, h5_path: str) -> int:
    conv = next((layer for layer in layers if layer.kind == "conv"), None)
    if conv is None:
        raise BadInputError(f"{h5_path}: no convolution to read the band count from")
    return int(conv.weights["kernel"].shape[2])


def _last_dense_width(layers, h5_path: str) -> int:
    dense = [layer for layer in layers if layer.kind == "dense"]
    if not dense:
        raise BadInputError(f"{h5_path}: no dense output layer")
    return int(dense[-1].weights["kernel"].shape[1])


def _lens_info(spec, bands: int, size: tuple[int, int], out_features: int, survey: str | None,
               h5_path: str) -> ModelInfo:
    """A lens finder reads its survey's files: --survey, or space (1 band) / ground (4 bands)."""
    from ..surveys import get_survey

    if out_features != 1:
        raise BadInputError(f"{h5_path}: a lens finder has one output; this model has {out_features}")
    name = survey or {1: "space", 4: "ground"}.get(bands)
    if name is None:
        raise BadInputError(f"{h5_path}: {bands} bands; name the survey with --survey")
    registered = get_survey(name)
    if registered.n_bands != bands:
        raise BadInputError(f"{h5_path}: {bands} band(s), but survey {name} has {registered.n_bands}")
    return ModelInfo(arch=spec.name, arch_kwargs={"in_channels": bands, "out_features": 1, "image_size": list(size)},
                     task="lens", inputs=[name], norm=spec.norm, targets=["is_lens"], target_mean=[0.0],
                     target_std=[1.0], survey=registered.to_dict())


def _shear_info(spec, channels: int, size: tuple[int, int], out_features: int, config_path: str | None,
                h5_path: str) -> ModelInfo:
    """LensNet's targets (`classes`) and output scaling from its config.json, under the model's file name."""
    settings = _lensnet_settings(config_path, Path(h5_path).stem)
    targets = list(settings.get("classes", ["g1", "g2"][:out_features]))
    if len(targets) != out_features:
        raise BadInputError(f"{h5_path}: {out_features} outputs, but the config names {len(targets)} targets")
    low, high = _output_scaling(settings, targets, Path(h5_path).stem, config_path)
    return ModelInfo(arch=spec.name, arch_kwargs={"in_channels": channels, "out_features": out_features,
                                                  "image_size": list(size)},
                     task="shear", inputs=list(spec.inputs), norm=spec.norm, targets=targets,
                     target_mean=low, target_std=[h - lo for lo, h in zip(low, high)])


def _lensnet_settings(config_path: str | None, model_name: str) -> dict[str, Any]:
    if config_path is None:
        return {}
    from ..config import read_config_file

    data = read_config_file(config_path)
    settings = dict(data.get("default", {})) if isinstance(data.get("default"), dict) else {}
    if isinstance(data.get(model_name), dict):
        settings["scaling"] = data[model_name]
    return settings


def _output_scaling(settings: dict[str, Any], targets: list[str], model_name: str,
                    config_path: str | None) -> tuple[list[float], list[float]]:
    """(min, max) per target: the network's [0, 1] output maps back to [min, max] (LensNet's normalize_output).

    Read from config[model_name] as {"min": [...], "max": [...]} in target order, or {target: [min, max]};
    without normalize_output the output is already in target units (min 0, max 1).
    """
    if not settings.get("normalize_output"):
        return [0.0] * len(targets), [1.0] * len(targets)
    scaling = settings.get("scaling")
    try:
        if isinstance(scaling, dict) and "min" in scaling and "max" in scaling:
            low, high = [float(v) for v in scaling["min"]], [float(v) for v in scaling["max"]]
        elif isinstance(scaling, dict):
            low, high = [float(scaling[t][0]) for t in targets], [float(scaling[t][1]) for t in targets]
        else:
            raise KeyError(model_name)
    except (KeyError, TypeError, ValueError, IndexError):
        raise BadInputError(f"{config_path}: normalize_output is on, but there are no min and max of "
                            f"{', '.join(targets)} under {model_name!r}") from None
    if len(low) != len(targets) or len(high) != len(targets) or not np.all(np.array(high) > np.array(low)):
        raise BadInputError(f"{config_path}: the min and max under {model_name!r} must give max > min for each of "
                            f"{', '.join(targets)}")
    return low, high
