"""A user's own cutouts: a folder of FITS files, one scene per file, with a CSV of labels.

    DIR/<name>.fits      one scene: a cube (bands, H, W) in its first image HDU, or one 2-D
                         image HDU per band (multi-extension FITS), bands in HDU order
    DIR/labels.csv       file, is_lens (other columns are ignored); needed to train and evaluate
    DIR/survey.yaml      optional: the survey (band names, mask value); else bands are unnamed

No folder or file-name convention is needed; every scene of a folder must have the same bands
and size.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from ..errors import BadInputError, MissingFileError

LABELS_NAME = "labels.csv"
SUFFIXES = (".fits", ".fit", ".fits.gz", ".fz")


def _is_fits_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(SUFFIXES)


def is_cutout_folder(path: str | os.PathLike) -> bool:
    """A folder of FITS cutouts: FITS files directly inside, no challenge layout (Public/) and no data.json."""
    path = Path(path)
    if not path.is_dir() or (path / "Public").is_dir() or (path / "data.json").is_file():
        return False
    with os.scandir(path) as entries:
        return any(entry.is_file() and _is_fits_name(entry.name) for entry in entries)


def list_cutouts(root: str | os.PathLike) -> list[str]:
    """File names of the cutouts in `root`, sorted."""
    root = Path(root)
    with os.scandir(root) as entries:
        names = sorted(e.name for e in entries if e.is_file() and _is_fits_name(e.name))
    if not names:
        raise BadInputError(f"{root}: holds no FITS cutouts (*.fits)")
    return names


def read_cutout(path: str | os.PathLike, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """(bands, H, W) float32 of one cutout file: a cube, or one 2-D image HDU per band."""
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{path} is a folder; this reads one cutout file (a cube, or one band file of a scene)")
    if not path.is_file():
        raise MissingFileError(f"{path}: no such cutout")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(path, memmap=False) as hdus:
                images = [np.asarray(h.data, dtype=np.float32) for h in hdus
                          if getattr(h, "is_image", False) and h.data is not None]
    except (OSError, ValueError, TypeError) as exc:
        raise BadInputError(f"{path}: not a readable FITS file ({exc})") from None
    if not images:
        raise BadInputError(f"{path}: FITS file holds no image")
    if images[0].ndim == 3:
        scene = images[0]
    elif all(image.ndim == 2 for image in images) and len({image.shape for image in images}) == 1:
        scene = np.stack(images)
    else:
        shapes = ", ".join("x".join(map(str, image.shape)) for image in images)
        raise BadInputError(f"{path}: image HDUs of shapes {shapes}; give a (bands, H, W) cube or one 2-D "
                            "image of the same size per band")
    if shape is not None and scene.shape != tuple(shape):
        raise BadInputError(f"{path}: cutout is {'x'.join(map(str, scene.shape))} (bands x H x W), the set's are "
                            f"{'x'.join(map(str, shape))}; every cutout of a set must have the same bands and size")
    return scene


def read_cutout_labels(root: str | os.PathLike, names: list[str], need: bool = True) -> np.ndarray | None:
    """is_lens per cutout (in the order of `names`) from DIR/labels.csv; None when absent and not needed."""
    path = Path(root) / LABELS_NAME
    if not path.is_file():
        if need:
            raise MissingFileError(f"{path}: no such file; list each cutout as file,is_lens (1 lens, 0 not)")
        return None
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [r for r in csv.reader(handle, skipinitialspace=True) if r and not r[0].startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read ({exc})") from None
    header = [c.strip() for c in rows[0]] if rows else []
    if "file" not in header or "is_lens" not in header:
        raise BadInputError(f"{path}: needs columns file and is_lens; found {', '.join(header) or 'none'}")
    col_file, col_label = header.index("file"), header.index("is_lens")
    labels: dict[str, int] = {}
    for line, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise BadInputError(f"{path}, row {line}: {len(row)} values for {len(header)} columns")
        value = row[col_label].strip()
        if value not in ("0", "1"):
            raise BadInputError(f"{path}, row {line}: is_lens = {value!r}; it must be 0 or 1")
        labels[row[col_file].strip()] = int(value)
    missing = [n for n in names if n not in labels]
    if missing:
        raise BadInputError(f"{path}: cutout {missing[0]} has no label ({len(missing)} of {len(names)} lack one); "
                            "add their rows or remove the files")
    return np.array([labels[n] for n in names], dtype=np.int64)
