"""The Lens Finding Challenge 1.0 layout: band files under Public/BandK, labels in a CSV beside them.

    DIR/Public/Band1/imageEUC_VIS-<ID>.fits                  space: one band (VIS), 0.1"/px
    DIR/Public/Band1..4/imageSDSS_{R,I,G,U}-<ID>.fits        ground: R, I, G, U, 0.2"/px
    DIR/Public/<folder>/<prefix><ID>.fits                    any survey of the registry (lensml.surveys)
    DIR/classifications.csv                                  ID, is_lens [, Einstein_area, ...]
    DIR/<name>_image_catalog.csv                             '#' comments, ID, no_source
    DIR/survey.yaml                                          optional: the folder's own survey definition

Scenes are stacked in the survey's band order (ground: R, I, G, U). The survey registry drives
every function, so a survey is one entry there (or one YAML file), not a code path. Cutouts may be
of any size, taken from the files; all bands and scenes of a set must share it.

Labels and images are matched by ID. An image without a label is always an error where labels
are needed; a label without an image is only an error when asked for (`labels_for(...,
require_images=True)`), since a test catalogue lists all 100,000 IDs and a folder may hold a part.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import BadInputError, MissingFileError
from ..surveys import Band, Survey, folder_survey, get_survey, survey_names
from .fits import read_fits_image

CHALLENGE_MASK_VALUE = 100.0  # the challenge's ground pixels flagged as bad carry exactly this value
LABEL_FILE = "classifications.csv"
CATALOGUE_GLOB = "*_image_catalog.csv"
OPTIONAL_COLUMNS = ("Einstein_area", "numb_pix_lensed_image", "flux_lensed_image_in_sigma")


def masked_pixels(image: np.ndarray, mask_value: float | None = CHALLENGE_MASK_VALUE) -> np.ndarray:
    """Pixels that carry no measurement: the survey's mask value, or not finite. Same shape, bool."""
    image = np.asarray(image)
    bad = ~np.isfinite(image)
    return bad if mask_value is None else bad | (image == mask_value)


def _band_ids(folder: Path, band: Band) -> set[int]:
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: no such folder; a challenge folder needs one per band")
    with os.scandir(folder) as entries:
        ids = (band.match_id(entry.name) for entry in entries)
        return {i for i in ids if i is not None}


def _holds_band(folder: Path, band: Band) -> bool:
    if not folder.is_dir():
        return False
    with os.scandir(folder) as entries:
        return any(band.match_id(entry.name) is not None for entry in entries)


def detect_survey(root: str | os.PathLike) -> str:
    """The registered survey whose band files the folder holds (its own survey.yaml is registered first).

    A folder may match several surveys (a user's survey may name the challenge's files for its first
    band): the survey with the most bands whose folders all hold its files wins.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"{root}: no such folder")
    public = root / "Public"
    if not public.is_dir():
        raise MissingFileError(f"{root}: no Public folder; name the folder that holds Public/")
    folder_survey(root)
    found = [name for name in survey_names()
             if all(_holds_band(public / b.folder, b) for b in get_survey(name).bands)]
    if not found:
        expected = ", ".join(f"{get_survey(s).bands[0].folder}/{get_survey(s).bands[0].prefix}<ID>.fits"
                             for s in survey_names())
        raise BadInputError(f"{public}: holds no band files of a known survey ({expected}); "
                            "describe yours with --survey-file or a survey.yaml beside Public/")
    most = max(get_survey(s).n_bands for s in found)
    found = [s for s in found if get_survey(s).n_bands == most]
    if len(found) > 1:
        raise BadInputError(f"{public}: holds files of several surveys ({', '.join(found)}); keep one per folder")
    return found[0]


def list_ids(root: str | os.PathLike, survey: str) -> list[int]:
    """Sorted IDs of the scenes in `root`; every ID must have a file in every band."""
    root, spec = Path(root), get_survey(survey)
    per_band = [_band_ids(root / "Public" / band.folder, band) for band in spec.bands]
    every = set().union(*per_band)
    if not every:
        raise BadInputError(f"{root / 'Public'}: holds no {survey} images ({spec.bands[0].prefix}<ID>.fits)")
    for band, ids in zip(spec.bands, per_band):
        missing = every - ids
        if missing:
            first = min(missing)
            raise BadInputError(f"{root}: image {first} has no {band.name} file Public/{band.folder}/"
                                f"{band.filename(first)} ({len(missing)} IDs lack one); add it or remove "
                                "the image's other band files")
    return sorted(every)


def band_path(root: str | os.PathLike, survey: str, band_index: int, image_id: int) -> Path:
    bands = get_survey(survey).bands
    if not 0 <= band_index < len(bands):
        raise BadInputError(f"{survey} has bands 0..{len(bands) - 1}, not {band_index}")
    band = bands[band_index]
    return Path(root) / "Public" / band.folder / band.filename(image_id)


def stack_bands(paths: Iterable[Path], shape: tuple[int, int] | None = None) -> np.ndarray:
    """The (bands, H, W) float32 scene of one band file per band; all bands, and `shape` if given, must agree."""
    paths = list(paths)
    images = [read_fits_image(path) for path in paths]
    want = tuple(shape) if shape is not None else images[0].shape
    for path, image in zip(paths, images):
        if image.ndim != 2 or image.shape != want:
            raise BadInputError(f"{path}: image is {'x'.join(map(str, image.shape))} pixels, the set's are "
                                f"{want[0]}x{want[1]}; every band and scene of a set must have one size")
    return np.stack(images)


def read_scene(root: str | os.PathLike, survey: str, image_id: int,
               shape: tuple[int, int] | None = None) -> np.ndarray:
    """The (bands, H, W) float32 scene of one ID, bands in the survey's order."""
    n_bands = get_survey(survey).n_bands
    return stack_bands([band_path(root, survey, b, image_id) for b in range(n_bands)], shape)


def _band_matches(path: Path) -> list[tuple[Survey, Band, int]]:
    """(survey, band, ID) of every registered survey band whose file name this is."""
    matches = []
    for name in survey_names():
        survey = get_survey(name)
        for band in survey.bands:
            image_id = band.match_id(path.name)
            if image_id is not None:
                matches.append((survey, band, image_id))
    return matches


def is_band_file(path: str | os.PathLike) -> bool:
    """Whether a file's name is a band file of a registered survey."""
    return bool(_band_matches(Path(path)))


def read_scene_files(path: str | os.PathLike, n_bands: int | None = None,
                     shape: tuple[int, int] | None = None) -> np.ndarray:
    """The (bands, H, W) scene that one band file belongs to, for predicting on a single scene.

    The other bands are looked up in their Public/<folder> folders, or beside the file when the
    scene's files were copied into one folder. A file whose name is no survey's band file is read
    as a one-band scene. With `n_bands`, the scene must have that many bands; a survey with that
    many bands is preferred when the name fits several.
    """
    path = Path(path)
    matches = _band_matches(path)
    if matches:
        fitting = [m for m in matches if n_bands in (None, m[0].n_bands)]
        if not fitting:
            survey = matches[0][0]
            raise BadInputError(f"{path}: a {survey.name} band file ({survey.n_bands} band(s)), "
                                f"but the model takes {n_bands}")
        survey, band, image_id = fitting[0]
        in_layout = path.parent.name == band.folder
        return stack_bands([(path.parent.parent / b.folder if in_layout else path.parent) / b.filename(image_id)
                            for b in survey.bands], shape)
    if n_bands not in (None, 1):
        raise BadInputError(f"{path}: not a band file of a known survey; the model takes {n_bands} bands "
                            "(name one band file of a scene, or give a FITS cube)")
    return stack_bands([path], shape)


@dataclass(frozen=True)
class LabelTable:
    """The labels of a challenge folder, in file order. `extra` holds the optional columns present."""

    path: Path
    ids: np.ndarray  # int64
    is_lens: np.ndarray  # int64, 0 or 1
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # float64, NaN where empty

    def as_dict(self) -> dict[int, int]:
        return dict(zip(self.ids.tolist(), self.is_lens.tolist()))


def label_file(root: str | os.PathLike) -> Path:
    """classifications.csv in `root`, else its one *_image_catalog.csv."""
    root = Path(root)
    path = root / LABEL_FILE
    if path.is_file():
        return path
    catalogues = sorted(root.glob(CATALOGUE_GLOB))
    if len(catalogues) > 1:
        raise BadInputError(f"{root}: several {CATALOGUE_GLOB} files ({', '.join(p.name for p in catalogues)}); "
                            "keep one")
    if not catalogues:
        raise MissingFileError(f"{root}: no {LABEL_FILE} or {CATALOGUE_GLOB} to take labels from; "
                               "put the challenge's label file beside Public/")
    return catalogues[0]


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) of a CSV whose '#' lines are comments."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read ({exc})") from None
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1)
                if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        raise BadInputError(f"{path}: no header line; expected ID and is_lens (or no_source) columns")
    rows = list(csv.reader([line for _, line in numbered], skipinitialspace=True))
    cells = [[c.strip() for c in row] for row in rows]
    return cells[0], [(n, row) for (n, _), row in zip(numbered[1:], cells[1:])]


def _as_int(value: str, path: Path, line: int, column: str) -> int:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise BadInputError(f"{path}, line {line}: {column} = {value!r} is not an integer")
    return int(number)


def _as_float(value: str, path: Path, line: int, column: str) -> float:
    if value == "":
        return float("nan")
    try:
        return float(value)
    except ValueError:
        raise BadInputError(f"{path}, line {line}: {column} = {value!r} is not a number") from None


def read_label_table(root: str | os.PathLike) -> LabelTable:
    """Labels from classifications.csv (ID, is_lens) or a test catalogue (ID, no_source: is_lens = 1 - no_source).

    `root` is a challenge folder or the CSV file itself; the form is told by its columns.
    """
    root = Path(root)
    path = root if root.is_file() else label_file(root)
    header, rows = _csv_rows(path)
    label = "is_lens" if "is_lens" in header else "no_source" if "no_source" in header else None
    if "ID" not in header or label is None:
        needs = [c for c in ("ID",) if c not in header] + ([] if label else ["is_lens (or no_source)"])
        raise BadInputError(f"{path}: no column {' or '.join(needs)}; found {', '.join(header) or 'none'}")
    col = {name: header.index(name) for name in ("ID", label, *OPTIONAL_COLUMNS) if name in header}
    ids, labels = np.empty(len(rows), np.int64), np.empty(len(rows), np.int64)
    extra = {name: np.empty(len(rows)) for name in OPTIONAL_COLUMNS if name in col}
    seen: dict[int, int] = {}
    for k, (line, row) in enumerate(rows):
        if len(row) != len(header):
            raise BadInputError(f"{path}, line {line}: {len(row)} values for {len(header)} columns")
        ids[k] = _as_int(row[col["ID"]], path, line, "ID")
        labels[k] = _as_int(row[col[label]], path, line, label)
        if labels[k] not in (0, 1):
            raise BadInputError(f"{path}, line {line}: {label} = {row[col[label]]!r}; it must be 0 or 1")
        if ids[k] in seen:
            raise BadInputError(f"{path}, line {line}: ID {ids[k]} already given on line {seen[int(ids[k])]}")
        seen[int(ids[k])] = line
        for name, values in extra.items():
            values[k] = _as_float(row[col[name]], path, line, name)
    is_lens = 1 - labels if label == "no_source" else labels
    return LabelTable(path, ids, is_lens, extra)


def read_labels(root: str | os.PathLike) -> dict[int, int]:
    """ID -> is_lens (1 lens, 0 not) of a challenge folder; see `read_label_table`."""
    return read_label_table(root).as_dict()


def labels_for(root: str | os.PathLike, ids: Iterable[int], require_images: bool = False) -> np.ndarray:
    """is_lens for each of `ids`, in their order; every ID needs a label.

    With `require_images`, a label whose ID is not among `ids` is an error too (a folder that
    should hold every labelled scene).
    """
    table = read_label_table(root)
    wanted = np.asarray(list(ids), dtype=np.int64)
    order = np.argsort(table.ids, kind="stable")
    sorted_ids = table.ids[order]
    pos = np.clip(np.searchsorted(sorted_ids, wanted), 0, max(len(sorted_ids) - 1, 0))
    found = (sorted_ids[pos] == wanted) if len(sorted_ids) else np.zeros(len(wanted), bool)
    if not found.all():
        missing = wanted[~found]
        raise BadInputError(f"{table.path}: image {missing.min()} has no label ({len(missing)} of {len(wanted)} "
                            "images lack one); add their rows or remove their files")
    if require_images:
        orphans = np.setdiff1d(table.ids, wanted)
        if len(orphans):
            raise BadInputError(f"{table.path}: ID {orphans.min()} has a label but no image ({len(orphans)} such IDs); "
                                "add the images or remove their rows")
    return table.is_lens[order][pos]
