"""Images per second into a model: lensml's packed cache against reading the FITS files each epoch.

Draws the same random batches three ways and times them (median of --repeats passes):
  - FITS, astropy: every band file opened with astropy, then ZScale (what a plain script does);
  - FITS, lensml: the same files through lensml's direct reader of plain FITS cutouts, then ZScale;
  - packed cache: rows gathered from the memory-mapped, already normalised cache (what training does).
The files and the cache are read once before timing, so both come from the page cache (warm), as
in every epoch after the first on a machine with the memory for them.

    python benchmarks/loading.py --folder DIR [--batch 64] [--batches 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from _timing import timed
from lensml.data.band_norm import normalise_bands
from lensml.data.lens_set import load_lens_set
from lensml.io import challenge
from lensml.io.fits import _first_image
from lensml.training import ArraySplit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True, help="a challenge-layout folder")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = load_lens_set(args.folder, "zscale")
    rng = np.random.default_rng(0)
    batches = [rng.choice(data.n, args.batch, replace=False) for _ in range(args.batches)]
    n = args.batch * args.batches
    split = ArraySplit(data.images, data.labels.astype(np.float32)[:, None], np.arange(data.n))

    def from_files():
        for rows in batches:
            scenes = np.stack([challenge.read_scene(data.root, data.survey, int(data.keys[r])) for r in rows])
            torch.from_numpy(normalise_bands(scenes, "zscale"))

    def from_cache():
        for _ in split.batches(batches):  # as the training loop gathers them
            pass

    lensml_reader = challenge.read_fits_image
    challenge.read_fits_image = lambda path: _first_image(Path(path))
    astropy_files = timed(from_files, args.repeats)
    challenge.read_fits_image = lensml_reader
    lensml_files = timed(from_files, args.repeats)
    cache = timed(from_cache, args.repeats)
    bands = data.images.shape[1]
    print(f"{data.root} ({data.survey}, {bands} band(s), {data.n} scenes), {args.batches} batches of "
          f"{args.batch}, torch {torch.__version__}")
    print(f"{'path':>18} {'images/s':>10} {'vs astropy':>11}")
    for name, seconds in (("FITS, astropy", astropy_files), ("FITS, lensml", lensml_files), ("packed cache", cache)):
        print(f"{name:>18} {n / seconds:>10.0f} {astropy_files / seconds:>10.1f}x")
    print(f"packed cache = {lensml_files / cache:.0f}x lensml's own FITS path")


if __name__ == "__main__":
    main()
