"""A lens-finding folder as arrays for a model: normalised scenes (packed cache), keys, labels.

Two layouts are read: the Lens Finding Challenge's (``Public/<band folder>/<prefix><ID>.fits``
of any registered survey, `io.challenge`) and a folder of one FITS file per scene (`io.cutouts`).
The cutout size comes from the files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import BadInputError, MissingFileError
from ..io import challenge, cutouts
from ..io.cache import packed_array
from ..surveys import folder_survey, get_survey
from .band_norm import normalise_bands

CACHE_CHUNK = 256  # scenes read and normalised at a time while building the cache
CUTOUTS = "cutouts"  # the survey name of a cutout folder without a survey.yaml


@dataclass(frozen=True)
class SceneSource:
    """Where a folder's scenes are and how to read one: keys are IDs (challenge) or file names (cutouts)."""

    root: Path
    survey: str
    key_name: str  # "ID" or "file"
    keys: list
    mask_value: float | None

    @property
    def is_challenge(self) -> bool:
        return self.key_name == "ID"

    def files(self, key) -> list[Path]:
        if self.is_challenge:
            n = get_survey(self.survey).n_bands
            return [challenge.band_path(self.root, self.survey, b, int(key)) for b in range(n)]
        return [self.root / key]

    def read(self, key, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """(bands, H, W) of one scene; with `shape` (bands, H, W), it must have that shape."""
        if self.is_challenge:
            scene = challenge.read_scene(self.root, self.survey, int(key), None if shape is None else shape[1:])
            if shape is not None and scene.shape[0] != shape[0]:
                raise BadInputError(f"{self.root}: scene {key} has {scene.shape[0]} bands, not {shape[0]}")
            return scene
        return cutouts.read_cutout(self.root / key, shape)

    def labels(self, keys: list, need: bool, complete: bool = False) -> np.ndarray | None:
        if self.is_challenge:
            return challenge_labels(self.root, np.asarray(keys, dtype=np.int64), need, complete)
        return cutouts.read_cutout_labels(self.root, list(keys), need)


def is_lens_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "Public").is_dir() or cutouts.is_cutout_folder(path)


def scene_source(root: str | Path) -> SceneSource:
    """The scenes of a challenge-layout folder or a cutout folder."""
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"{root}: no such folder")
    if (root / "Public").is_dir():
        survey = challenge.detect_survey(root)
        return SceneSource(root, survey, "ID", challenge.list_ids(root, survey), get_survey(survey).mask_value)
    if not cutouts.is_cutout_folder(root):
        raise BadInputError(f"{root}: neither a challenge folder (Public/) nor a folder of FITS cutouts")
    spec = folder_survey(root)
    names = cutouts.list_cutouts(root)
    if spec is not None:
        bands = cutouts.read_cutout(root / names[0]).shape[0]
        if bands != spec.n_bands:
            raise BadInputError(f"{root / names[0]}: {bands} band(s), but {root}/survey.yaml describes "
                                f"{spec.n_bands} ({', '.join(spec.band_names)})")
    return SceneSource(root, spec.name if spec else CUTOUTS, "file", names, spec.mask_value if spec else None)


@dataclass(frozen=True)
class LensSet:
    root: Path
    survey: str
    keys: list  # IDs (challenge layout) or file names (cutout folder)
    labels: np.ndarray | None  # (N,) 0/1, or None for unlabelled data
    images: np.ndarray  # (N, bands, H, W) float32, normalised, memory-mapped
    sha256: str  # keys, labels and file sizes: recognises the set later, also after a copy

    @property
    def n(self) -> int:
        return len(self.keys)


def load_lens_set(
    root: str | Path, norm: str, need_labels: bool = True, cache_dir: Path | None = None, progress: bool = True,
    complete: bool = False,
) -> LensSet:
    """Read (or reuse the packed cache of) every scene in a folder, normalised per band.

    With `complete`, every row of a classifications.csv must have its image (a test catalogue lists
    all the challenge's IDs, so it never has to).
    """
    source = scene_source(root)
    keys = source.keys
    labels = source.labels(keys, need_labels, complete)
    shape = source.read(keys[0]).shape
    files = [f for key in keys for f in source.files(key)]

    def fill(array: np.ndarray) -> None:
        for start in tqdm(range(0, len(keys), CACHE_CHUNK), desc=f"cache {source.survey} ({norm})", unit="chunk",
                          disable=not progress, leave=False):
            scenes = np.stack([source.read(k, shape) for k in keys[start : start + CACHE_CHUNK]])
            array[start : start + len(scenes)] = normalise_bands(scenes, norm, source.mask_value)

    images = packed_array(f"{source.survey}_{norm}", source.root, files,
                          {"norm": norm, "survey": source.survey, "mask_value": source.mask_value},
                          (len(keys), *shape), fill, cache_dir)
    named = np.asarray(keys, dtype=np.int64).tobytes() if source.is_challenge else "\n".join(keys).encode()
    digest = hashlib.sha256(named)  # content identity: survives copying, unlike the cache fingerprint
    digest.update(np.array([f.stat().st_size for f in files], dtype=np.int64).tobytes())
    if labels is not None:
        digest.update(labels.astype(np.int64).tobytes())
    return LensSet(source.root, source.survey, keys, labels, images, digest.hexdigest())


def challenge_labels(root: Path, ids: np.ndarray, need: bool, complete: bool = False) -> np.ndarray | None:
    """is_lens for `ids` from the folder's label file; None when there is none and labels are not needed."""
    if not need:
        try:
            challenge.label_file(root)
        except MissingFileError:
            return None
    every_row = complete and challenge.label_file(root).name == challenge.LABEL_FILE
    return challenge.labels_for(root, ids, require_images=every_row).astype(np.int64)


def check_data_fits(info, shape: tuple[int, ...], survey: str, what: str, model: str) -> None:
    """Refuse scenes (bands, H, W) a lens finder was not trained for: another band count, size or survey."""
    n_bands = info.arch_kwargs["in_channels"]
    if shape[0] != n_bands:
        raise BadInputError(f"{model} takes {n_bands} band(s); {what} has {shape[0]}")
    trained = info.survey.get("name")
    if trained and survey != CUTOUTS and survey != trained:
        theirs = get_survey(survey).band_names
        if list(theirs) != [b["name"] for b in info.survey["bands"]]:
            raise BadInputError(f"{model} was trained on {trained} ({', '.join(b['name'] for b in info.survey['bands'])}); "
                                f"{what} is {survey} ({', '.join(theirs)}): other bands")
    info.check_image_size(shape, what)
