"""A challenge-layout folder as arrays for a model: normalised scenes (packed cache), IDs, labels."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import MissingFileError
from ..io.cache import packed_array
from ..io.challenge import IMAGE_SIZE, LABEL_FILE, band_path, detect_survey, get_survey, label_file, labels_for, list_ids, read_scene
from .band_norm import normalise_bands

CACHE_CHUNK = 256  # scenes read and normalised at a time while building the cache


@dataclass(frozen=True)
class ChallengeSet:
    root: Path
    survey: str
    ids: np.ndarray  # (N,) int
    labels: np.ndarray | None  # (N,) 0/1, or None for unlabelled data
    images: np.ndarray  # (N, bands, 101, 101) float32, normalised, memory-mapped
    sha256: str  # IDs, labels and file sizes: recognises the set later, also after a copy


def is_challenge_folder(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "Public").is_dir()


def load_challenge_set(
    root: str | Path, norm: str, need_labels: bool = True, cache_dir: Path | None = None, progress: bool = True,
    complete: bool = False,
) -> ChallengeSet:
    """Read (or reuse the packed cache of) every scene in a challenge folder, normalised per band.

    With `complete`, every row of a classifications.csv must have its image (a test catalogue lists
    all the challenge's IDs, so it never has to).
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"{root}: no such folder")
    survey = detect_survey(root)
    bands = len(get_survey(survey).bands)
    ids = np.asarray(list_ids(root, survey), dtype=np.int64)
    labels = folder_labels(root, ids, need_labels, complete)
    files = [band_path(root, survey, b, int(i)) for i in ids for b in range(bands)]

    def fill(array: np.ndarray) -> None:
        for start in tqdm(range(0, len(ids), CACHE_CHUNK), desc=f"cache {survey} ({norm})", unit="chunk",
                          disable=not progress, leave=False):
            scenes = np.stack([read_scene(root, survey, int(i)) for i in ids[start : start + CACHE_CHUNK]])
            array[start : start + len(scenes)] = normalise_bands(scenes, norm)

    images = packed_array(f"{survey}_{norm}", root, files, {"norm": norm, "survey": survey},
                          (len(ids), bands, IMAGE_SIZE, IMAGE_SIZE), fill, cache_dir)
    digest = hashlib.sha256(ids.tobytes())  # content identity: survives copying, unlike the cache fingerprint
    digest.update(np.array([f.stat().st_size for f in files], dtype=np.int64).tobytes())
    if labels is not None:
        digest.update(labels.astype(np.int64).tobytes())
    return ChallengeSet(root, survey, ids, labels, images, digest.hexdigest())


def folder_labels(root: Path, ids: np.ndarray, need: bool, complete: bool = False) -> np.ndarray | None:
    """is_lens for `ids` from the folder's label file; None when there is none and labels are not needed."""
    if not need:
        try:
            label_file(root)
        except MissingFileError:
            return None
    every_row = complete and label_file(root).name == LABEL_FILE
    return labels_for(root, ids, require_images=every_row).astype(np.int64)
