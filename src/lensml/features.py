"""Feature maps of every convolutional layer of a network, for one input, as PNG grids."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .io.atomic import atomic_path


@torch.inference_mode()
def conv_feature_maps(model: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Run `x` (1, C, H, W) through `model`; return {layer: (channels, h, w)} for each Conv2d, in order.

    Layers are labelled with their module path, kernel and channels, e.g. "0.3 (conv 3x3, 16->32)".
    Each map is copied as it is made: an activation working in place would overwrite it next.
    """
    maps: dict[str, np.ndarray] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            k = "x".join(map(str, module.kernel_size))
            label = f"{name} (conv {k}, {module.in_channels}->{module.out_channels})"
            hooks.append(module.register_forward_hook(
                lambda _m, _i, out, label=label: maps.__setitem__(label, out[0].detach().float().cpu().numpy().copy())))
    try:
        model.eval()(x)
    finally:
        for hook in hooks:
            hook.remove()
    return maps


def save_feature_grids(maps: dict[str, np.ndarray], out_dir: str | os.PathLike, max_maps: int = 64) -> list[Path]:
    """One PNG per layer: its first `max_maps` channels on a square grid, titled with the layer's name and shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    written = []
    for order, (name, fmap) in enumerate(maps.items()):
        shown = fmap[:max_maps]
        cols = math.ceil(math.sqrt(len(shown)))
        rows = math.ceil(len(shown) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.5), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, channel in zip(axes.flat, shown):
            ax.imshow(channel, cmap="viridis", origin="lower", interpolation="nearest")
        more = f", first {len(shown)} shown" if len(fmap) > len(shown) else ""
        fig.suptitle(f"{name}: {fmap.shape[0]} x {fmap.shape[1]} x {fmap.shape[2]}{more}")
        fig.tight_layout()
        path = out / f"{order:02d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name.split(' ')[0])}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def input_saliency(model: nn.Module, x: torch.Tensor, output: int = 0) -> np.ndarray:
    """|d output / d input| per pixel of one input (1, C, H, W): which pixels move the answer (Simonyan et al. 2014).

    For a lens finder the output is the logit; returns (C, H, W).
    """
    model.eval()
    x = x.detach().clone().float().requires_grad_(True)
    with torch.enable_grad():
        model(x)[0, output].backward()
    return x.grad[0].abs().cpu().numpy()


def save_saliency(image: np.ndarray, saliency: np.ndarray, path: str | os.PathLike, title: str) -> Path:
    """One PNG: each band of the (normalised) input beside its saliency map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bands = image.shape[0]
    fig, axes = plt.subplots(2, bands, figsize=(max(2.6 * bands, 4.5), 5.4), squeeze=False)
    for b in range(bands):
        axes[0, b].imshow(image[b], cmap="gray", origin="lower", interpolation="nearest")
        axes[1, b].imshow(saliency[b], cmap="inferno", origin="lower", interpolation="nearest")
        axes[0, b].set_title(f"band {b + 1}", fontsize=8)
        for ax in axes[:, b]:
            ax.axis("off")
    axes[1, 0].set_title("|d logit / d pixel|", fontsize=8)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return out
