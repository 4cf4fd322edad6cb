"""A PNG grid of lenses and non-lenses from a lens-finding folder, to see what a set looks like.

Each band is stretched on its own with ZScale (astropy's `ZScaleInterval`, the challenge tools'
normalisation), so faint arcs show beside bright lens galaxies. Scenes of several bands are shown
as an RGB composite of the survey's preview bands (the registry's `rgb_bands`; Ground: I, R, G),
else as the first band in grey; masked pixels are left out of the stretch and drawn black.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .data.band_norm import normalise_bands
from .data.lens_set import CUTOUTS, scene_source
from .errors import BadInputError
from .io.atomic import atomic_path
from .surveys import get_survey


def preview_grid(
    data_dir: str | os.PathLike, out_png: str | os.PathLike, n_lenses: int = 8, n_nonlenses: int = 8,
    columns: int = 8, dpi: int = 100,
) -> Path:
    """Draw the first `n_lenses` lenses and `n_nonlenses` non-lenses (by ID) of `data_dir` into `out_png`."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend and figures alone

    root = Path(data_dir)
    if n_lenses < 0 or n_nonlenses < 0 or n_lenses + n_nonlenses == 0 or columns <= 0:
        raise BadInputError("preview: ask for at least one image and a positive number of columns")
    source = scene_source(root)
    survey = source.survey
    labels = dict(zip(source.keys, source.labels(source.keys, need=True).tolist()))
    rgb = None if survey == CUTOUTS else get_survey(survey).rgb_indices()
    lenses = [i for i in source.keys if labels[i] == 1][:n_lenses]
    others = [i for i in source.keys if labels[i] == 0][:n_nonlenses]
    chosen = [(i, 1) for i in lenses] + [(i, 0) for i in others]
    if not chosen:
        raise BadInputError(f"{root}: no labelled images to show")
    rows = -(-len(chosen) // columns)
    cols = min(columns, len(chosen))
    height = 1.85 * rows + 0.35
    fig = Figure(figsize=(1.6 * cols, height))
    axes = fig.subplots(rows, cols, squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.4 / height, wspace=0.04,
                        hspace=0.25 * 1.6 / 1.85)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (image_id, label) in zip(axes.ravel(), chosen):
        ax.imshow(display_image(source.read(image_id), rgb, source.mask_value), origin="lower",
                  interpolation="nearest", cmap="gray")
        ax.set_title(f"{image_id} {'lens' if label else 'non-lens'}", fontsize=7,
                     color="tab:red" if label else "black")
    rgb_names = "" if rgb is None else ", RGB = " + ", ".join(get_survey(survey).rgb_bands)
    fig.suptitle(f"{root.resolve().name} ({survey}): ZScale per band{rgb_names}", fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    out = Path(out_png)
    with atomic_path(out) as tmp:
        _compact_png(buffer, tmp)
    return out


def _compact_png(buffer: io.BytesIO, path: Path) -> None:
    """matplotlib writes RGBA; a 256-colour palette keeps noisy grids at a third of the size."""
    from PIL import Image

    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, format="PNG", optimize=True)


def display_image(scene: np.ndarray, rgb: tuple[int, int, int] | None = None,
                  mask_value: float | None = None) -> np.ndarray:
    """A 2-D grey image (the first band) or an RGB image of bands `rgb`, in [0, 1] with ZScale per band."""
    stretched = normalise_bands(scene[None], "zscale", mask_value)[0]  # masked pixels come out as 0
    return stretched[0] if rgb is None else np.stack([stretched[b] for b in rgb], axis=-1)
