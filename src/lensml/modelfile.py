"""One self-contained, safe-to-load model file (safetensors: tensors plus a JSON header).

The file holds the weights and everything needed to use them: architecture name and
arguments, the images it takes and how they are normalised, the targets and their scaling,
the training settings and split, and the lensml version. Nothing depends on the file's name,
and loading never runs code (no pickle).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from . import __version__
from .errors import BadInputError, MissingFileError
from .io.atomic import atomic_path
from .models import create_model

FORMAT_VERSION = 1
SUFFIX = ".safetensors"
HEADER_KEY = "lensml"


@dataclass
class ModelInfo:
    """What a model file says about its network, besides the weights."""

    arch: str
    arch_kwargs: dict[str, Any]
    task: str
    inputs: list[str]
    norm: str
    targets: list[str]
    target_mean: list[float]
    target_std: list[float]
    training: dict[str, Any] = field(default_factory=dict)
    # Shear: multiplicative bias per target measured on held-out data ({"m": {target: m}, "n": ..., "data": ...});
    # predictions are divided by (1 + m). Lens finders: {"temperature": T, ...}, logits divided by T.
    calibration: dict[str, Any] = field(default_factory=dict)
    # Lens finders: the survey definition of the training data (lensml.surveys), so its files read anywhere.
    survey: dict[str, Any] = field(default_factory=dict)
    # Shear models trained on metacal images (`train --metacal`): applied through metacalibration only.
    metacal: bool = False
    lensml_version: str = __version__
    format: int = FORMAT_VERSION

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.arch_kwargs["image_size"])  # type: ignore[return-value]

    def build(self) -> nn.Module:
        return create_model(self.arch, **self.arch_kwargs)

    def check_image_size(self, shape: tuple[int, ...], what: str) -> None:
        """Refuse images of another size than the network was built for, in one line."""
        if tuple(shape[-2:]) != self.image_size:
            raise BadInputError(f"{what}: images are {shape[-2]}x{shape[-1]} pixels; this {self.arch} model takes "
                                f"{self.image_size[0]}x{self.image_size[1]} (train one on cutouts of this size)")

    def register_survey(self) -> None:
        """Make the training data's survey known, so its band files are recognised without a survey file."""
        if not self.survey:
            return
        from .surveys import register_survey, survey_from_mapping

        register_survey(survey_from_mapping(self.survey, "model file"), "model file", reading=True)


def model_path(path: str | os.PathLike) -> Path:
    """LensNet's `-m` takes a path without extension; accept both forms, and any existing file as it is.
    `pretrained:NAME` names a model that comes with lensml (`lensml models --pretrained`)."""
    from .pretrained import is_pretrained_name, pretrained_path

    if is_pretrained_name(path):
        return pretrained_path(str(path))
    path = Path(path)
    return path if path.suffix == SUFFIX or path.is_file() else path.with_name(path.name + SUFFIX)


def writable_model_path(path: str | os.PathLike) -> Path:
    """`model_path` for a file to create or update: never one of the models that come with lensml,
    named as `pretrained:NAME` or by its path. Every writer of model files goes through here."""
    from .pretrained import is_shipped_file

    resolved = model_path(path)
    if is_shipped_file(resolved):
        raise BadInputError(f"{path} comes with lensml and is read-only; give a path of your own to -m/-o")
    return resolved


def encode_header(info: ModelInfo) -> dict[str, str]:
    return {HEADER_KEY: json.dumps(asdict(info))}


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], header: dict[str, str]) -> None:
    """Write tensors and a string header atomically.

    The bytes are written by Python, not by safetensors' own writer, so a full disk is an OSError
    with its usual message rather than a library-specific error.
    """
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    data = save(clean, metadata=header)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_model(path: str | os.PathLike, model: nn.Module, info: ModelInfo) -> Path:
    path = model_path(path)
    save_tensors(path, model.state_dict(), encode_header(info))
    return path


FLOAT16_MAX = 65504.0


def save_compact(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """A copy of a model file with its floating-point weights stored as float16: half the bytes,
    for shipping trained models. Loading casts them back to the network's float32. Normalisation
    statistics, and any tensor float16 cannot hold to 1e-3 of its largest value, stay float32."""
    src = model_path(source)
    tensors, header = read_tensors(src)
    decode_header(src, header)  # refuse anything but a lensml model

    def compact(name: str, t: torch.Tensor) -> torch.Tensor:
        if not t.is_floating_point() or t.numel() == 0 or "running_" in name:
            return t  # normalisation statistics are few and are divided by: they stay exact
        scale = float(t.abs().max())
        half = t.to(torch.float16)
        if scale > FLOAT16_MAX or float((half.to(t.dtype) - t).abs().max()) > 1e-3 * scale:
            return t
        return half

    dst = writable_model_path(destination)
    save_tensors(dst, {k: compact(k, v) for k, v in tensors.items()}, header)
    return dst


def read_tensors(
    path: Path, what: str = "model", header_only: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read the header and (unless `header_only`) every tensor; damaged or foreign files are a one-line error."""
    if not path.is_file():
        raise MissingFileError(f"{path}: no such {what} file")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {} if header_only else {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise BadInputError(f"{path}: not a readable lensml {what} file ({exc})") from None
    return tensors, header


def decode_header(path: Path, header: dict[str, str]) -> ModelInfo:
    try:
        raw = json.loads(header[HEADER_KEY])
    except (KeyError, ValueError):
        raise BadInputError(f"{path}: a safetensors file, but not a lensml model") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("format"), int):
        raise BadInputError(f"{path}: damaged lensml header")
    if raw["format"] > FORMAT_VERSION:
        raise BadInputError(
            f"{path}: written by lensml {raw.get('lensml_version')} (format {raw['format']}); upgrade lensml to read it"
        )
    try:
        return ModelInfo(**raw)
    except TypeError as exc:
        raise BadInputError(f"{path}: damaged lensml header ({exc})") from None


def read_info(path: str | os.PathLike) -> ModelInfo:
    """The header of a model file, without reading its weights."""
    path = model_path(path)
    return decode_header(path, read_tensors(path, header_only=True)[1])


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Load a model file into an eval-mode network on `device`."""
    path = model_path(path)
    tensors, header = read_tensors(path)
    info = decode_header(path, header)
    try:
        model = info.build()
        model.load_state_dict(tensors)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{path}: weights do not fit architecture {info.arch!r} ({str(exc).splitlines()[0]})") from None
    info.register_survey()
    return model.to(device).eval(), info
