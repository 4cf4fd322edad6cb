"""Read any stamp lensml accepts (FITS or 8-bit TIFF/PNG) and write 8-bit TIFF copies."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import BadInputError, MissingFileError
from .atomic import atomic_path
from .fits import read_fits_image

FITS_SUFFIXES = {".fits", ".fit", ".fts", ".fits.gz"}
BITMAP_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg"}


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".fits.gz" if name.endswith(".fits.gz") else path.suffix.lower()


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a stamp as float32: FITS values as they are, 8-bit bitmaps scaled to [0, 1]."""
    path = Path(path)
    suffix = _suffix(path)
    if path.is_dir():
        raise BadInputError(f"{path} is a folder; this reads one image file (a stamp, or a PSF)")
    if suffix in FITS_SUFFIXES:
        data = read_fits_image(path)
    elif suffix in BITMAP_SUFFIXES:
        data = _read_bitmap(path)
    else:
        raise BadInputError(f"{path}: unknown image type {suffix!r} (use FITS or TIFF)")
    if not np.isfinite(data).any():
        raise BadInputError(f"{path}: image holds no finite value")
    return data


def _read_bitmap(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("L") if img.mode not in ("L", "I;16", "F") else img)
    except (UnidentifiedImageError, OSError) as exc:
        raise BadInputError(f"{path}: not a readable image ({exc})") from None
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0 if arr.dtype == np.uint8 else 1.0
    return arr.astype(np.float32) / np.float32(scale)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Min-max scale an image to 0..255, as 8-bit viewers and LensNet's inputs expect."""
    lo, hi = float(np.min(image)), float(np.max(image))
    span = hi - lo if hi > lo else 1.0
    return np.round((image - lo) / span * 255.0).astype(np.uint8)


def write_tif8(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an 8-bit TIFF copy of `image` (rows in array order), atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format="TIFF")
