"""Architectures by name, like timm: a builder function plus what it expects as input.

Every part of lensml (CLI, model files, tests) reaches a network through `create_model`.
Adding an architecture is one function and one `@register_model(...)` decorator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from ..errors import BadInputError


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture and the data it is designed for."""

    name: str
    builder: Callable[..., nn.Module]
    task: str  # "shear" or "lens"
    inputs: tuple[str, ...]  # images stacked as channels, e.g. ("galaxy", "psf")
    norm: str  # pixel normalisation, see lensml.data.transforms
    description: str
    defaults: dict = field(default_factory=dict)  # keyword arguments used when listing


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, task: str, inputs: tuple[str, ...], norm: str, description: str, **defaults):
    """Decorator that adds a builder `f(in_channels, out_features, image_size, **kw) -> nn.Module`."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, builder, task, inputs, norm, description, defaults)
        return builder

    return decorate


def _load_builtin() -> None:
    from . import ensemble, lens_finders, shear  # noqa: F401  (registers on import)


def get_spec(name: str) -> ModelSpec:
    _load_builtin()
    if name not in _REGISTRY:
        raise BadInputError(f"unknown architecture {name!r}; `lensml models` lists: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_models(task: str | None = None) -> list[ModelSpec]:
    _load_builtin()
    return [s for s in sorted(_REGISTRY.values(), key=lambda s: (s.task, s.name)) if task in (None, s.task)]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build architecture `name`; keyword arguments go to its builder."""
    return get_spec(name).builder(**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters plus non-trainable buffers that are state (BatchNorm running stats), as Keras counts."""
    params = sum(p.numel() for p in model.parameters())
    stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    return params + stats
