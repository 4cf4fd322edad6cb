"""Keras weights into lensml's networks: kernels transposed, flatten order permuted, BatchNorm carried.

The layers that hold weights are paired in order: Keras' layer order against the order in which
the lensml network registers its Conv2d, Linear and BatchNorm modules (each architecture is written
layer for layer after its Keras original).  Keras orders the parallel branches of a residual block
by their distance from the output, so a module takes the first unused Keras layer of its kind and
shapes among the next few.  Every module must find one, so a file of another architecture is
refused rather than loaded wrong.

- Conv2D kernels are (kh, kw, in, out) in Keras, (out, in, kh, kw) in torch.
- Dense kernels are (in, out); torch's Linear weight is (out, in).  The first Dense after a
  Flatten also reorders its inputs: Keras flattens (H, W, C) feature maps, torch (C, H, W).
- BatchNormalization: gamma, beta, moving mean and variance become weight, bias, running mean and
  variance (a layer without scale or centre keeps 1 or 0).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import BadInputError
from ..io.keras_h5 import KerasLayer

_KINDS = {nn.Conv2d: "conv", nn.Linear: "dense", nn.BatchNorm1d: "batchnorm", nn.BatchNorm2d: "batchnorm"}


def weight_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Conv2d, Linear and BatchNorm, in registration order."""
    return [(name, m) for name, m in model.named_modules() if type(m) in _KINDS]


def flatten_inputs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, int, int]]:
    """Name of each Linear that reads a flattened (C, H, W) feature map -> that shape (dry run)."""
    shapes: list[tuple[int, ...]] = []
    hooks = [m.register_forward_hook(lambda _m, args, _out: shapes.append(tuple(args[0].shape[1:])))
             for m in model.modules() if isinstance(m, nn.Flatten)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    out: dict[str, tuple[int, int, int]] = {}
    pending = iter(shapes)
    waiting = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Flatten):
            waiting = next(pending, None)
        elif isinstance(module, nn.Linear) and waiting is not None:
            if len(waiting) == 3:
                out[name] = waiting
            waiting = None
    return out


def _converted(layer: KerasLayer, module: nn.Module, flat_chw: tuple[int, int, int] | None) -> dict[str, np.ndarray]:
    """The torch state of `module` from one Keras layer's arrays."""
    w = layer.weights
    if layer.kind == "conv":
        state = {"weight": np.transpose(w["kernel"], (3, 2, 0, 1))}
    elif layer.kind == "dense":
        kernel = w["kernel"]
        if flat_chw is not None:
            c, h, wd = flat_chw
            if kernel.shape[0] != c * h * wd:
                raise BadInputError(f"Keras layer {layer.name!r} takes {kernel.shape[0]} inputs, the lensml network "
                                    f"flattens {c}x{h}x{wd} = {c * h * wd}: another image size or architecture")
            kernel = kernel.reshape(h, wd, c, -1).transpose(2, 0, 1, 3).reshape(c * h * wd, -1)
        state = {"weight": kernel.T}
    else:
        channels = module.num_features
        state = {"weight": w.get("gamma", np.ones(channels)), "bias": w.get("beta", np.zeros(channels)),
                 "running_mean": w["moving_mean"], "running_var": w["moving_variance"]}
    if layer.kind != "batchnorm" and module.bias is not None:  # a Keras layer without bias adds nothing
        state["bias"] = w.get("bias", np.zeros(module.bias.shape[0]))
    return state


LOOK_AHEAD = 4  # how far down Keras' order a module's layer may stand (branches listed the other way)


def _fitting_state(layer: KerasLayer, module: nn.Module, flat_chw) -> dict[str, np.ndarray] | None:
    """The module's new state from `layer`, or None where kind or a shape does not fit."""
    if _KINDS[type(module)] != layer.kind:
        return None
    try:
        state = _converted(layer, module, flat_chw)
    except BadInputError:
        return None
    fits = all(getattr(module, k) is not None and tuple(getattr(module, k).shape) == v.shape for k, v in state.items())
    return state if fits else None


def load_keras_weights(model: nn.Module, layers: list[KerasLayer], input_shape: tuple[int, ...]) -> None:
    """Copy the Keras layers' weights into `model` (built for `input_shape` = (C, H, W)), checking each pair."""
    modules = weight_modules(model)
    if len(modules) != len(layers):
        raise BadInputError(f"the Keras model has {len(layers)} layers with weights, the lensml network {len(modules)}: "
                            "another architecture")
    flat = flatten_inputs(model, input_shape)
    unused = list(range(len(layers)))
    for name, module in modules:
        match = None
        for position in unused[:LOOK_AHEAD]:
            state = _fitting_state(layers[position], module, flat.get(name))
            if state is not None:
                match = position
                break
        if match is None:
            layer = layers[unused[0]]
            shapes = ", ".join(f"{k} {v.shape}" for k, v in layer.weights.items())
            raise BadInputError(f"Keras layer {layer.name!r} ({layer.kind}: {shapes}) does not fit {name} "
                                f"({type(module).__name__}): another architecture, image size or band count")
        unused.remove(match)
        for key, value in state.items():
            with torch.no_grad():
                getattr(module, key).copy_(torch.from_numpy(np.ascontiguousarray(value)).to(getattr(module, key).dtype))
