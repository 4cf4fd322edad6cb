"""Pixel normalisation and the exact symmetries of a shear measurement.

Rotating a stamp by 90 degrees maps a spin-2 quantity (g1, g2) to (-g1, -g2); transposing it
(swapping x and y) maps (g1, g2) to (-g1, g2). The eight elements of the square's symmetry
group (D4) therefore give eight exact training views of every stamp, and averaging a
network's answers over them removes any additive bias the network has in the lattice frame.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

# Targets that are components of a spin-2 field, and which component (1 or 2) they are.
SPIN2_COMPONENT = {"g1": 1, "g2": 2, "e1": 1, "e2": 2}


def normalise(images: np.ndarray | torch.Tensor, method: str) -> np.ndarray | torch.Tensor:
    """Normalise each image (last two axes) on its own, so flux and sky level carry no weight.

    rms: divide by the root-mean-square pixel value (stable at any SNR);
    minmax: scale to [0, 1] (LensNet's 8-bit inputs); none: leave as is.
    Float32 out, a numpy array for a numpy array and a tensor (on its device) for a tensor.
    """
    as_numpy = not isinstance(images, torch.Tensor)
    x = torch.from_numpy(np.asarray(images, dtype=np.float32)) if as_numpy else images.float()
    if method == "rms":
        # squares summed in float64 (no float64 copy of the images is made)
        scale = torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True, dtype=torch.float64)
        scale = (scale / math.sqrt(x.shape[-2] * x.shape[-1])).float()
        x = x / torch.where(scale > 0, scale, torch.ones_like(scale))
    elif method == "minmax":
        lo = x.amin(dim=(-2, -1), keepdim=True)
        span = x.amax(dim=(-2, -1), keepdim=True) - lo
        x = (x - lo) / torch.where(span > 0, span, torch.ones_like(span))
    elif method != "none":
        raise ValueError(f"unknown normalisation {method!r}")
    return x.numpy() if as_numpy else x


def d4_images(images: torch.Tensor, element: int) -> torch.Tensor:
    """Apply D4 element 0..7 to a batch (..., H, W): transpose if element >= 4, then rotate by 90 x element."""
    if element >= 4:
        images = images.transpose(-2, -1)
    return torch.rot90(images, element % 4, dims=(-2, -1))


def d4_target_signs(targets: Sequence[str], element: int) -> torch.Tensor:
    """Sign (+1/-1) that D4 element `element` applies to each target; scalars are unchanged."""
    rotation_sign = -1.0 if element % 4 in (1, 3) else 1.0
    signs = []
    for name in targets:
        component = SPIN2_COMPONENT.get(name)
        if component is None:
            signs.append(1.0)
        elif component == 1:
            signs.append(rotation_sign * (-1.0 if element >= 4 else 1.0))
        else:
            signs.append(rotation_sign)
    return torch.tensor(signs)


def random_d4(images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator, part=None, *,
              names: Sequence[str]):
    """Give each sample of a batch (or of `part` of a global batch, a `training.BatchPart`) its own
    random D4 view, with targets transformed to match."""
    elements = torch.randint(0, 8, (images.shape[0] if part is None else part.total,), generator=generator)
    if part is not None:
        elements = elements[part.start : part.stop]
    out_x, out_y = images.clone(), targets.clone()
    for element in range(1, 8):
        mask = elements == element
        if mask.any():
            out_x[mask] = d4_images(images[mask], element)
            out_y[mask] = targets[mask] * d4_target_signs(names, element).to(targets)
    return out_x, out_y
