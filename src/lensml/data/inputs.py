"""The normalised input a model expects, built from the files a user names on the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..io.images import read_image
from ..modelfile import ModelInfo
from .transforms import normalise


def model_input(info: ModelInfo, image: str, psf: str | None) -> np.ndarray:
    """The (1, C, H, W) normalised input a model expects, from the files a user names."""
    if info.task == "lens":
        from .band_norm import normalise_bands

        scene = read_lens_scene(Path(image), info.arch_kwargs["in_channels"])
        info.check_image_size(scene.shape, image)
        return normalise_bands(scene[None], info.norm, lens_mask_value(info))
    stamps = {"galaxy": read_image(image)}
    if "psf" in info.inputs:
        if psf is None:
            raise BadInputError(f"{info.arch} also needs the stamp's PSF image: add --psf PSF.fits")
        stamps["psf"] = read_image(psf)
    for key, stamp in stamps.items():
        if stamp.shape != info.image_size:
            raise BadInputError(f"{key} stamp is {stamp.shape[0]}x{stamp.shape[1]}, the model expects "
                                f"{info.image_size[0]}x{info.image_size[1]}")
    return normalise(np.stack([stamps[k] for k in info.inputs])[None], info.norm)


def read_lens_scene(path: Path, n_bands: int | None = None, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """(bands, H, W) of one scene named by one file: a band file of a survey (its other bands found by
    name), else a FITS cube or multi-extension file holding every band."""
    from ..io.challenge import is_band_file, read_scene_files
    from ..io.cutouts import read_cutout

    if is_band_file(path):
        return read_scene_files(path, n_bands, None if shape is None else shape[1:])
    scene = read_cutout(path, shape)
    if n_bands is not None and scene.shape[0] != n_bands:
        raise BadInputError(f"{path}: {scene.shape[0]} band(s), but the model takes {n_bands}")
    return scene


def lens_mask_value(info: ModelInfo) -> float | None:
    """The mask value of a lens finder's training data: its survey's; none for a cutout folder without a
    survey.yaml; the challenge's 100 for model files from before the survey registry."""
    from ..io.challenge import CHALLENGE_MASK_VALUE
    from .lens_set import CUTOUTS

    if info.survey:
        return info.survey.get("mask_value")
    return None if info.inputs == [CUTOUTS] else CHALLENGE_MASK_VALUE
