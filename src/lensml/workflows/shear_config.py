"""Settings of `lensml train` for shear, and how LensNet's config.json keys map onto them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import read_config_file, replace_from, require
from ..errors import BadInputError
from ..training import LOSSES, SCHEDULES, settings_checks

# LensNet config key -> lensml setting (None: accepted, nothing to set; see README).
LENSNET_KEYS: dict[str, str | None] = {
    "batch_size": "batch_size",
    "classes": "targets",
    "epochs": "epochs",
    "learning_rate": "lr",
    "loss_function": "loss",
    "random_state": "seed",
    "test_ratio": "val_fraction",
    "image_height": None,  # checked against the stamps, see image_size
    "image_width": None,
    "metrics": None,  # lensml always reports RMSE, m and c
    "mode": None,  # stamps are single-band; grayscale is the only meaningful mode
    "normalize_output": None,  # targets are always standardised, and un-standardised at prediction
}
SHEAR_TARGETS = ("shear", "shape")
LOSS_ALIASES = {"mean_absolute_error": "mae", "mae": "mae", "mean_squared_error": "mse", "mse": "mse"}


@dataclass(frozen=True)
class ShearTrainConfig:
    arch: str = "shear_net"
    epochs: int = 20
    batch_size: int = 32  # small batches find the shear signal in fewer epochs
    lr: float = 1e-3
    loss: str = "mse"
    targets: tuple[str, ...] = ("g1", "g2")
    seed: int = 0
    val_fraction: float = 0.1
    augment: bool = True  # the 8 exact D4 views of each stamp, targets transformed to match
    calibrate: bool = True  # measure m on the validation stamps after training and divide it out
    # train on the noshear metacal images (reconvolution PSF, galaxy recentred, noise-corrected): the
    # model is then applied through metacalibration alone, and its response replaces the calibration
    metacal: bool = False
    # what g1, g2 are trained on: "shear" (the applied g) or "shape" (the sheared galaxy's ellipticity,
    # whose population mean is g); default: "shape" with metacal, else "shear"
    target: str | None = None
    width: int | None = None  # channels of the first convolutions; None: the architecture's own
    schedule: str = "cosine"
    weight_decay: float = 0.0
    patience: int | None = None  # early stopping: epochs without a better validation loss
    precision: str = "fp32"  # automatic mixed precision: bf16, or fp16 with loss scaling (GPU training)
    compile: bool = False  # torch.compile the training step (pays for BatchNorm-heavy networks; slow first batch)
    device: str = "auto"
    image_size: tuple[int, int] | None = None  # expected stamp size; None: take it from the data

    def __post_init__(self) -> None:
        object.__setattr__(self, "loss", LOSS_ALIASES.get(self.loss, self.loss))
        object.__setattr__(self, "targets", tuple(self.targets))
        checks = [
            *settings_checks(self),
            (self.width is None or self.width > 0, f"width must be positive, got {self.width}"),
            (self.loss in LOSSES and self.loss != "bce", f"loss must be mse or mae, got {self.loss!r}"),
            (len(self.targets) > 0, "give at least one target"),
            (len(set(self.targets)) == len(self.targets), f"each target once, got {' '.join(self.targets)}"),
            (0 <= self.val_fraction < 1, f"validation fraction must be in [0, 1), got {self.val_fraction}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
            (self.target in (None, *SHEAR_TARGETS), f"target must be one of {', '.join(SHEAR_TARGETS)}, got {self.target!r}"),
            (not self.metacal or set(self.targets) == {"g1", "g2"}, "--metacal trains on the targets g1 g2 only"),
            (self.learned == "shear" or set(self.targets) == {"g1", "g2"},
             "the shape target replaces g1 and g2: train it with targets g1 g2"),
        ]
        require(checks)

    @property
    def learned(self) -> str:
        """The target in force: the one given, else "shape" with metacal and "shear" without."""
        return self.target or ("shape" if self.metacal else "shear")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "target": self.learned}


def settings_from_file(path: str) -> dict[str, Any]:
    """Read lensml settings, or LensNet's config.json (settings under "default"), from a file."""
    data = read_config_file(path)
    section = data.get("default", data) if isinstance(data.get("default"), dict) else data
    names = {f.name for f in dataclasses.fields(ShearTrainConfig)}
    settings: dict[str, Any] = {}
    for key, value in section.items():
        if key in names:
            settings[key] = value
        elif key in LENSNET_KEYS:
            if LENSNET_KEYS[key]:
                settings[LENSNET_KEYS[key]] = value
        else:
            raise BadInputError(f"{path}: unknown setting {key!r}")
    height, width = section.get("image_height"), section.get("image_width")
    if height and width:
        settings["image_size"] = (int(height), int(width))
    return settings


def build_config(file: str | None, overrides: dict[str, Any]) -> ShearTrainConfig:
    """Defaults, then the config file, then command-line flags."""
    config = ShearTrainConfig()
    if file:
        config = replace_from(config, settings_from_file(file), file)
    return replace_from(config, overrides, "command line")
