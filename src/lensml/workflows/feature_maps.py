"""`lensml features`: what each convolutional layer of a trained model sees in one image."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.inputs import model_input
from ..features import conv_feature_maps, input_saliency, save_feature_grids, save_saliency
from ..modelfile import load_model
from ..report import report


def draw_features(model_file: str, image: str, out_dir: str, psf: str | None = None, max_maps: int = 64,
                  saliency: bool = False) -> list[Path]:
    """One PNG per convolutional layer; with `saliency`, also saliency.png (input gradients of the output)."""
    net, info = load_model(model_file)
    x = torch.from_numpy(model_input(info, image, psf))
    maps = conv_feature_maps(net, x)
    paths = save_feature_grids(maps, out_dir, max_maps=max_maps)
    if saliency:
        paths.append(save_saliency(x[0].numpy(), input_saliency(net, x), Path(out_dir) / "saliency.png",
                                   f"{Path(image).name}: saliency of {info.arch}'s first output"))
    report(f"wrote {len(maps)} feature-map grids ({info.arch}, one per convolutional layer)"
           + (" and saliency.png" if saliency else "") + f" to {out_dir}")
    return paths
