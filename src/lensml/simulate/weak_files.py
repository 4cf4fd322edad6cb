"""Write a weak-lensing set in LensNet's layout: gal_<i>.fits, psf_<i>.fits, data.json.

`simulation.json` beside them records the seed, the settings and the versions. A rerun with
the same settings keeps the stamps already written (each file is written atomically, so an
existing file is complete) and draws only the missing ones.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import galsim
from tqdm import tqdm

from .. import __version__
from ..errors import BadInputError, MissingFileError
from ..io.fits import write_fits_image
from ..io.images import write_tif8
from ..io.manifest import write_manifest
from .record import check_shard, claim_folder, read_record
from .weak import PairDesign, WeakSimConfig, WeakStampRenderer, draw_pair_params, draw_params
from .workers import map_in_workers

SHARD_MANIFEST = "data.shard-{k}-of-{n}.json"
ENTRY_ORDER = ("galaxy", "psf", "e1", "e2", "g1", "g2")


def simulate_weak(
    config: WeakSimConfig,
    n: int,
    out_dir: str | os.PathLike,
    seed: int = 0,
    workers: int = 1,
    tif: bool = False,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    pairs: PairDesign | None = None,
) -> Path:
    """Simulate `n` stamps into `out_dir` and return the path of its data.json.

    With `pairs`, the stamps follow the paired ring design (n a multiple of 2 x ring); data.json
    entries then also hold `base`, `pair`, `ring`, `sign` and `component`.

    With `shard=(K, N)` only stamps i with i % N == K - 1 are drawn, and their entries go to
    data.shard-K-of-N.json; `merge_weak_shards` then checks the shards and writes data.json.
    """
    if n <= 0:
        raise BadInputError(f"number of stamps must be positive, got {n}")
    if workers <= 0:
        raise BadInputError(f"workers must be positive, got {workers}")
    if shard is not None:
        check_shard(shard)
    if pairs is not None and n % pairs.stamps_per_galaxy:
        raise BadInputError(f"a paired design with ring {pairs.ring} needs a multiple of {pairs.stamps_per_galaxy} "
                            f"stamps, got {n}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a folder")
    record = {"kind": "weak", "seed": int(seed), "n": int(n), "tif": bool(tif), "config": config.to_dict(),
              "pairs": None if pairs is None else dataclasses.asdict(pairs),
              "lensml": __version__, "galsim": galsim.__version__}
    claim_folder(out, record, guarded=("kind", "seed", "config", "tif", "pairs"), foreign=("data.json",))

    indices = range(n) if shard is None else range(shard[0] - 1, n, shard[1])
    task = (config, str(out), int(seed), bool(tif), pairs)
    entries: list[dict[str, Any]] = []
    with tqdm(total=len(indices), desc="simulate weak", unit="stamp", disable=not progress) as bar:
        if workers == 1:
            _init_worker(*task)
            for i in indices:
                entries.append(_make_stamp(i))
                bar.update()
        else:
            chunk = max(1, min(64, len(indices) // (workers * 8)))
            for entry in map_in_workers(_make_stamp, indices, workers, _init_worker, task, chunksize=chunk):
                entries.append(entry)
                bar.update()
    manifest = out / ("data.json" if shard is None else SHARD_MANIFEST.format(k=shard[0], n=shard[1]))
    write_manifest(manifest, entries)
    return manifest


def merge_weak_shards(out_dir: str | os.PathLike) -> Path:
    """Check that the shard manifests of a weak set cover every stamp once; write data.json in index order."""
    out = Path(out_dir)
    record = read_record(out, "weak")
    n = int(record["n"])
    parts = sorted(out.glob(SHARD_MANIFEST.format(k="*", n="*")))
    if not parts:
        raise MissingFileError(f"{out}: no {SHARD_MANIFEST.format(k='K', n='N')} to merge")
    entries: dict[int, dict[str, Any]] = {}
    for part in parts:
        for entry in json.loads(part.read_text()):
            entries[int(entry["galaxy"].split("_")[1].split(".")[0])] = entry
    missing = sorted(set(range(n)) - set(entries))
    if missing:
        raise BadInputError(f"{out}: stamps {missing[0]}.. ({len(missing)} in all) are in no finished shard; "
                            "run the missing shards first")
    for entry in entries.values():
        if not all((out / entry[key]).is_file() for key in ("galaxy", "psf")):
            raise BadInputError(f"{out}: {entry['galaxy']} is listed but its files are missing; rerun its shard")
    manifest = out / "data.json"
    write_manifest(manifest, [entries[i] for i in range(n)])
    return manifest


_STATE: dict[str, Any] = {}


def _init_worker(config: WeakSimConfig, out: str, seed: int, tif: bool, pairs: PairDesign | None = None) -> None:
    _STATE.update(renderer=WeakStampRenderer(config), out=Path(out), seed=seed, tif=tif, pairs=pairs)


def _make_stamp(index: int) -> dict[str, Any]:
    renderer: WeakStampRenderer = _STATE["renderer"]
    out: Path = _STATE["out"]
    pairs = _STATE["pairs"]
    if pairs is None:
        params = draw_params(renderer.config, _STATE["seed"], index, renderer.psf_hlr)
    else:
        params = draw_pair_params(renderer.config, pairs, _STATE["seed"], index, renderer.psf_hlr)
    entry: dict[str, Any] = {"galaxy": f"gal_{index}.fits", "psf": f"psf_{index}.fits"}
    entry.update({k: params[k] for k in ENTRY_ORDER[2:]})
    entry.update({k: v for k, v in params.items() if k not in entry and k != "noise_seed"})
    if renderer.config.noise:  # for estimators that need it (metacal's noise correction, AnaCal)
        entry["noise_sigma"] = renderer.noise_sigma(params)
    paths = [out / entry["galaxy"], out / entry["psf"]]
    if _STATE["tif"]:
        entry["galaxy_tif"], entry["psf_tif"] = f"gal_{index}.tif", f"psf_{index}.tif"
        paths += [out / entry["galaxy_tif"], out / entry["psf_tif"]]
    if all(p.is_file() for p in paths):
        return entry  # written by an earlier, interrupted run of the same simulation
    gal, psf = renderer.render(params)
    header = {"PIXSCALE": (renderer.config.pixel_scale, "arcsec / pixel")}
    write_fits_image(paths[0], gal, {**header, "OBJECT": "galaxy", "G1": params["g1"], "G2": params["g2"]})
    write_fits_image(paths[1], psf, {**header, "OBJECT": "psf", "E1": params["e1"], "E2": params["e2"]})
    if _STATE["tif"]:
        write_tif8(paths[2], gal)
        write_tif8(paths[3], psf)
    return entry
