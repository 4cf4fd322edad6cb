"""`lensml features`: what each convolutional layer of a trained model sees in one image."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.inputs import model_input
from ..features import conv_feature_maps, save_feature_grids
from ..modelfile import load_model
from ..report import report


def draw_features(model_file: str, image: str, out_dir: str, psf: str | None = None, max_maps: int = 64) -> list[Path]:
    net, info = load_model(model_file)
    maps = conv_feature_maps(net, torch.from_numpy(model_input(info, image, psf)))
    paths = save_feature_grids(maps, out_dir, max_maps=max_maps)
    report(f"wrote {len(paths)} feature-map grids ({info.arch}, {len(maps)} convolutional layers) to {out_dir}")
    return paths
