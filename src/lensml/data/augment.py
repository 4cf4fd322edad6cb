"""Lens-finding augmentation in torch, batched and seeded (LEXACTUM's set, without imgaug).

Each of six operations is applied to each image independently with probability 1/2: horizontal
flip, vertical flip, rotation by 90/180/270 degrees, translation up to 10% of the side, scaling by
0.75 to 1.1, shear up to 20 degrees. They are composed into one affine map per image and applied
with a single `grid_sample`; pixels that come from outside the image are zero.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from ..training import BatchPart

MAX_SHIFT = 0.10  # fraction of the image side
SCALE_RANGE = (0.75, 1.1)
MAX_SHEAR_DEG = 20.0


def random_affine(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) matrices mapping output to input coordinates in grid_sample's [-1, 1] frame."""
    def coin() -> torch.Tensor:
        return torch.rand(n, generator=generator) < 0.5

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    eye = torch.eye(2).expand(n, 2, 2).clone()
    flip_x = torch.where(coin(), -1.0, 1.0)
    flip_y = torch.where(coin(), -1.0, 1.0)
    flips = eye * torch.stack([flip_x, flip_y], dim=1)[:, :, None]
    quarter = torch.randint(1, 4, (n,), generator=generator) * torch.where(coin(), 1, 0)
    angle = quarter.float() * (math.pi / 2)
    cos, sin = torch.cos(angle).round(), torch.sin(angle).round()
    rotation = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    zoom = torch.where(coin(), uniform(*SCALE_RANGE), torch.ones(n))
    shear = torch.where(coin(), uniform(-MAX_SHEAR_DEG, MAX_SHEAR_DEG), torch.zeros(n))
    shear_m = eye.clone()
    shear_m[:, 0, 1] = torch.tan(torch.deg2rad(shear))
    shift = torch.where(coin()[:, None], torch.stack([uniform(-1, 1), uniform(-1, 1)], 1) * 2 * MAX_SHIFT,
                        torch.zeros(n, 2))
    # output -> input: undo the zoom (a zoom of s samples the input at x / s), then shear, rotate, flip.
    linear = flips @ rotation @ shear_m / zoom[:, None, None]
    return torch.cat([linear, -shift[:, :, None]], dim=2)


def apply_affine(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample (N, C, H, W) through (N, 2, 3) output-to-input maps; outside pixels are zero."""
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def augment_batch(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, part: BatchPart | None = None):
    """Randomly augment a batch (N, C, H, W), or `part` of a global batch; labels pass through unchanged."""
    theta = random_affine(images.shape[0] if part is None else part.total, generator)
    if part is not None:
        theta = theta[part.start : part.stop]
    return apply_affine(images, theta), labels
