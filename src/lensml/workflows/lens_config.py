"""Settings of `lensml train` for lens finding on a challenge-layout folder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import read_config_file, replace_from, require
from ..data.band_norm import METHODS as NORMS
from ..training import SCHEDULES, settings_checks


@dataclass(frozen=True)
class LensTrainConfig:
    arch: str = "cmu_deeplens"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3  # Adam, as in LEXACTUM
    seed: int = 0
    val_fraction: float = 0.2
    augment: bool = False
    norm: str = "asinh"  # zscale (LEXACTUM's) saturates arcs on bright deflectors
    schedule: str = "constant"
    weight_decay: float = 0.0
    patience: int | None = None  # early stopping: epochs without a better validation loss
    precision: str = "fp32"  # automatic mixed precision: bf16, or fp16 with loss scaling (GPU training)
    compile: bool = False  # torch.compile the training step (pays for BatchNorm-heavy networks; slow first batch)
    device: str = "auto"

    def __post_init__(self) -> None:
        checks = [
            *settings_checks(self),
            (0 < self.val_fraction < 1, f"validation fraction must be in (0, 1), got {self.val_fraction}"),
            (self.norm in NORMS, f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
        ]
        require(checks)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_lens_config(file: str | None, overrides: dict[str, Any]) -> LensTrainConfig:
    """Defaults, then the settings file, then command-line flags."""
    config = LensTrainConfig()
    if file:
        config = replace_from(config, read_config_file(file), file)
    names = {f.name for f in dataclasses.fields(LensTrainConfig)}
    return replace_from(config, {k: v for k, v in overrides.items() if k in names}, "command line")
