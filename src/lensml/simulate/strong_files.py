"""Write a strong-lens set in the lens-finding challenge's layout.

    DIR/Public/Band1/imageEUC_VIS-<ID>.fits                      (space)
    DIR/Public/Band{1,2,3,4}/imageSDSS_{R,I,G,U}-<ID>.fits       (ground)
    DIR/Public/<folder>/<prefix><ID>.fits                        (any survey of the registry)
    DIR/survey.yaml              the survey's definition, so the folder reads without a --survey-file
    DIR/classifications.csv      ID,is_lens,Einstein_area,numb_pix_lensed_image,flux_lensed_image_in_sigma
    DIR/<survey>_image_catalog.csv   (with catalogue=True) '#' comment lines, then ID,no_source
    DIR/simulation.json          seed, settings and versions: the folder's claim

Scenes are rendered in batches of `batch_size` consecutive IDs counted from `first_id`; batch j
always holds the same IDs (the last one is filled up with the IDs after the set, rendered and
dropped), so every image comes out of the same computation whatever `n`, the number of workers
or the sharding, and its file is identical to the byte. Shard K of N (K = 1..N) renders the
batches j with j % N == K - 1 and writes classifications.shard-K-of-N.csv; `merge_shards` checks
that all shards are there and writes classifications.csv. A rerun with the same settings keeps
every file already written (files are written atomically, so an existing file is complete) and
renders only the batches with a missing image; the rows of finished batches wait in DIR/.parts.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..errors import BadInputError, MissingFileError
from ..io.atomic import write_text_atomic
from ..io.fits import write_fits_image
from ..io.tables import write_csv
from ..surveys import FOLDER_SURVEY_FILE, Survey, get_survey, register_survey, survey_from_mapping, survey_yaml
from .record import RECORD_NAME, check_shard, claim_folder, read_record
from .surveys import StrongSimConfig, band_file, band_header, observe, strong_config
from .workers import map_in_workers

LABELS_NAME = "classifications.csv"
PARTS_DIR = ".parts"
COLUMNS = ("ID", "is_lens", "Einstein_area", "numb_pix_lensed_image", "flux_lensed_image_in_sigma")
SHARD_CSV = re.compile(r"^classifications\.shard-(\d+)-of-(\d+)\.csv$")
GUARDED = ("kind", "survey", "survey_definition", "seed", "first_id", "lens_fraction", "batch_size", "config",
           "sources")


def simulate_strong(
    survey: str,
    n: int,
    out_dir: str | os.PathLike,
    seed: int = 0,
    lens_fraction: float = 0.5,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    first_id: int = 100000,
    catalogue: bool = False,
    progress: bool = True,
    batch_size: int = 64,
    device: str = "cpu",
    image_size: int | tuple[int, int] | None = None,
    sources: str | None = None,
) -> Path:
    """Simulate scenes first_id .. first_id + n - 1 (or one shard of them) of a registered survey into `out_dir`.

    `image_size` (N, or (rows, columns)) replaces the survey's usual cutout size.

    `sources` ("hdf", a folder of FITS cutouts or a FITS cube) gives the sources real morphologies
    (lensml.simulate.real_sources); None keeps Sersic sources with clumps.

    `device` renders on a GPU ("cuda", "auto"); images then differ from CPU renders in the last bits.

    Returns the path of the labels written: classifications.csv, or this shard's part. A shard
    writes no catalogue: ask merge_shards(out_dir, catalogue=True) for it.
    """
    if n <= 0:
        raise BadInputError(f"number of images must be positive, got {n}")
    if workers <= 0 or batch_size <= 0:
        raise BadInputError(f"workers and batch size must be positive, got {workers} and {batch_size}")
    if not 0.0 <= lens_fraction <= 1.0:
        raise BadInputError(f"lens fraction must lie in [0, 1], got {lens_fraction}")
    if first_id < 0:
        raise BadInputError(f"first ID must be >= 0, got {first_id}")
    if shard is not None:
        shard = (int(shard[0]), int(shard[1]))
        check_shard(shard)
    from ..device import resolve_device  # the same --device rules as training

    device = str(resolve_device(device))
    spec = get_survey(survey)
    config = strong_config(spec, image_size, config_overrides)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a folder")
    bank = None
    if sources is not None:
        from .real_sources import load_sources

        bank = load_sources(sources)
    record = {**_record(config, spec, n, seed, first_id, lens_fraction, batch_size), "device": device,
              "sources": None if bank is None else {"galaxies": len(bank), "digest": bank.digest},
              "sources_origin": None if bank is None else bank.origin}  # a moved bank still resumes
    claim_folder(out, record, guarded=GUARDED, foreign=("Public", LABELS_NAME))
    write_text_atomic(out / FOLDER_SURVEY_FILE, survey_yaml(dataclasses.replace(spec, image_size=config.shape)))

    batches = [j for j in range(math.ceil(n / batch_size)) if shard is None or j % shard[1] == shard[0] - 1]
    job = _Job(config, spec, str(out), int(seed), float(lens_fraction), int(first_id), int(n), int(batch_size), device,
               bank)
    known = _known_rows(out)
    todo = [j for j in batches if not job.complete(j, known)]
    wanted = [i for j in batches for i in job.ids(j)]
    with tqdm(total=len(wanted), initial=len(wanted) - sum(len(job.ids(j)) for j in todo),
              desc=f"simulate {survey}", unit="image", disable=not progress) as bar:  # closed before any error line
        for rows in _run(job, todo, workers):
            known.update(rows)
            bar.update(len(rows))

    rows = [known[i] for i in wanted]
    if shard is None:
        path = out / LABELS_NAME
        _write_labels(path, rows)
        for stale in out.glob("classifications.shard-*-of-*.csv"):
            stale.unlink()
        if catalogue:
            write_catalogue(out, config.survey, rows, record)
    else:
        path = out / f"classifications.shard-{shard[0]}-of-{shard[1]}.csv"
        _write_labels(path, rows)
    for j in batches:
        (out / PARTS_DIR / f"batch-{j}.csv").unlink(missing_ok=True)
    _remove_if_empty(out / PARTS_DIR)
    return path


def merge_shards(out_dir: str | os.PathLike, catalogue: bool = False) -> Path:
    """Check that every shard of a sharded run has finished; write classifications.csv from their parts."""
    out = Path(out_dir)
    record = read_record(out, "strong")
    parts: dict[int, Path] = {}
    totals = set()
    for path in out.iterdir() if out.is_dir() else []:
        match = SHARD_CSV.match(path.name)
        if match:
            parts[int(match.group(1))] = path
            totals.add(int(match.group(2)))
    if not parts:
        raise MissingFileError(f"{out}: no classifications.shard-K-of-N.csv files to merge")
    if len(totals) != 1:
        raise BadInputError(f"{out}: shard files of different N ({sorted(totals)}); remove the stale ones")
    total = totals.pop()
    missing = [k for k in range(1, total + 1) if k not in parts]
    if missing:
        raise BadInputError(f"{out}: shard(s) {', '.join(map(str, missing))} of {total} have not finished")
    rows: dict[int, list[str]] = {}
    for path in parts.values():
        rows.update(_read_rows(path))
    first, n = int(record["first_id"]), int(record["n"])
    expected = range(first, first + n)
    absent = [i for i in expected if i not in rows]
    if absent:
        raise BadInputError(f"{out}: {len(absent)} of {n} IDs have no label (first: {absent[0]}); rerun their shard")
    source = str(out / RECORD_NAME)
    spec = register_survey(survey_from_mapping(record["survey_definition"], source), source)
    lost = [i for i in expected for b in range(spec.n_bands) if not (out / band_file(spec, b, i)).is_file()]
    if lost:
        raise BadInputError(f"{out}: {len(lost)} image file(s) missing (first: ID {lost[0]}); rerun their shard")
    ordered = [rows[i] for i in expected]
    path = out / LABELS_NAME
    _write_labels(path, ordered)
    if catalogue:
        write_catalogue(out, spec.name, ordered, record)
    for part in parts.values():
        part.unlink()
    return path


def write_catalogue(out: Path, survey: str, rows: Iterable[list[str]], record: Mapping[str, Any]) -> Path:
    """The test-set catalogue: '#' lines describing the columns, then ID,no_source (= 1 - is_lens)."""
    lines = [
        f"# lensml strong-lens simulation, {survey} survey, seed {record['seed']}, lensml {record['lensml']}",
        "# ID: image ID; its bands are Public/Band<k>/image*-<ID>.fits",
        "# no_source: 1 if the image holds no strongly lensed source (a non-lens), 0 for a lens "
        "(under min_lensed_pixels, also 1 for a lens whose arcs cover too few pixels)",
        "ID,no_source",
    ]
    lines += [f"{row[0]},{1 - int(row[1])}" for row in rows]
    path = out / f"{survey}_image_catalog.csv"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


# --- records and labels ----------------------------------------------------------------------


def _record(config: StrongSimConfig, survey: Survey, n: int, seed: int, first_id: int, lens_fraction: float,
            batch_size: int) -> dict[str, Any]:
    import caustics
    import torch

    return {
        "kind": "strong", "survey": config.survey, "survey_definition": survey.to_dict(), "seed": int(seed),
        "n": int(n), "first_id": int(first_id), "lens_fraction": float(lens_fraction), "batch_size": int(batch_size),
        "config": config.to_dict(),
        "lensml": __version__, "caustics": caustics.__version__, "torch": torch.__version__,
        "numpy": np.__version__,
    }


def _row(config: StrongSimConfig, scene: Any, source: np.ndarray) -> list[str]:
    """The labels of one scene; see docs/strong_simulation.md for the definitions."""
    if not scene.is_lens:
        return [str(scene.image_id), "0", "0", "0", "0"]
    sigma = config.noise_sigma[config.reference_band] * scene.noise_factor
    source = np.asarray(source, dtype=np.float64)
    above = source > sigma
    area = math.pi * scene.theta_e**2
    label = "1" if above.sum() >= config.min_lensed_pixels else "0"  # arcs too faint to see: not a lens
    return [str(scene.image_id), label, f"{area:.6g}", str(int(above.sum())), f"{source[above].sum() / sigma:.6g}"]


def _write_labels(path: Path, rows: list[list[str]]) -> None:
    write_csv(path, COLUMNS, rows)


def _read_rows(path: Path) -> dict[int, list[str]]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(header) != COLUMNS:
            raise BadInputError(f"{path}: expected columns {','.join(COLUMNS)}")
        return {int(row[0]): row for row in reader if row}


def _known_rows(out: Path) -> dict[int, list[str]]:
    """Labels of scenes finished by earlier runs, from the final CSV, shard parts and batch parts."""
    known: dict[int, list[str]] = {}
    sources = [out / LABELS_NAME, *sorted(out.glob("classifications.shard-*-of-*.csv")),
               *sorted((out / PARTS_DIR).glob("batch-*.csv"))]
    for path in sources:
        if path.is_file():
            known.update(_read_rows(path))
    return known


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


# --- rendering -------------------------------------------------------------------------------


class _Job:
    """What a worker needs to render and write batch j; picklable, and the renderer built once per process."""

    def __init__(self, config: StrongSimConfig, survey: Survey, out: str, seed: int, lens_fraction: float,
                 first_id: int, n: int, batch_size: int, device: str, bank: Any = None):
        self.config, self.survey, self.out, self.seed, self.lens_fraction = config, survey, Path(out), seed, lens_fraction
        self.first_id, self.n, self.batch_size, self.device, self.bank = first_id, n, batch_size, device, bank
        self._renderers: dict[float, Any] = {}  # one per seeing (config.psf_jitter), built on first use

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_renderers": {}}

    def ids(self, j: int) -> list[int]:
        start = self.first_id + j * self.batch_size
        return list(range(start, min(start + self.batch_size, self.first_id + self.n)))

    def paths(self, image_id: int) -> list[Path]:
        return [self.out / band_file(self.survey, b, image_id) for b in range(self.config.n_bands)]

    def complete(self, j: int, known: Mapping[int, list[str]]) -> bool:
        return all(i in known and all(p.is_file() for p in self.paths(i)) for i in self.ids(j))

    def render(self, j: int) -> dict[int, list[str]]:
        from .strong import draw_scene

        start = self.first_id + j * self.batch_size
        scenes = [draw_scene(self.config, self.seed, i, self.lens_fraction)
                  for i in range(start, start + self.batch_size)]
        clean, source = self._render(scenes)
        rows: dict[int, list[str]] = {}
        for index, scene in enumerate(scenes[: len(self.ids(j))]):
            paths = self.paths(scene.image_id)
            if not all(p.is_file() for p in paths):
                image = self.config.crop(observe(self.config, clean[index], scene.noise_factor, scene.noise_seed,
                                                 scene.mask))
                seen = self.config.with_seeing(scene.seeing)
                for b, path in enumerate(paths):
                    if not path.is_file():
                        write_fits_image(path, image[b], {**band_header(seen, b), "IMAGEID": scene.image_id})
            rows[scene.image_id] = _row(self.config, scene, self.config.crop(source[index]))
        _write_labels(self.out / PARTS_DIR / f"batch-{j}.csv", list(rows.values()))
        return rows

    def _render(self, scenes: list) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free scenes and their lensed sources alone, each rendered with its own seeing."""
        from .strong import StrongRenderer, render_context, stack_scenes

        clean = np.zeros((len(scenes), self.config.n_bands, self.config.image_size, self.config.image_size),
                         dtype=np.float32)
        source = np.zeros((len(scenes), self.config.image_size, self.config.image_size), dtype=np.float32)
        for seeing in sorted({scene.seeing for scene in scenes}):
            if seeing not in self._renderers:
                self._renderers[seeing] = StrongRenderer(self.config.with_seeing(seeing), self.device)
            renderer = self._renderers[seeing]
            rows = [i for i, scene in enumerate(scenes) if scene.seeing == seeing]
            group = [scenes[i] for i in rows]
            with render_context():
                if self.bank is None:
                    images, alone = renderer.render(stack_scenes(group))
                else:
                    from .real_sources import detach_source, pick_stamps, render_real_sources

                    group, totals = zip(*(detach_source(scene, self.config) for scene in group))
                    images, alone = renderer.render(stack_scenes(group))
                    picks = pick_stamps(self.bank, self.seed, [scene.image_id for scene in group])
                    real, real_alone = render_real_sources(renderer, group, list(totals), self.bank, picks)
                    images, alone = images + real, alone + real_alone
            clean[rows], source[rows] = images.cpu().numpy(), alone.cpu().numpy()
        return clean, source


_JOB: dict[str, _Job] = {}


def _init_worker(job: _Job) -> None:
    _JOB["job"] = job


def _render_in_worker(j: int) -> dict[int, list[str]]:
    return _JOB["job"].render(j)


def _run(job: _Job, batches: list[int], workers: int) -> Iterable[dict[int, list[str]]]:
    if not batches:
        return
    if workers == 1 or len(batches) == 1:
        for j in batches:
            yield job.render(j)
        return
    # not a fork of this process: a forked child of a process that has run torch can hang on its
    # thread pools; a fork server with the renderer's modules imported (else spawn) starts them fast
    yield from map_in_workers(_render_in_worker, batches, min(workers, len(batches)), _init_worker, (job,),
                              ordered=False, start_method="spawn", preload=(__name__, "lensml.simulate.strong"))
