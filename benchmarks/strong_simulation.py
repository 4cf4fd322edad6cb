"""Strong-lens simulation speed: lensml's batched caustics renderer beside lenstronomy, one core each.

Both render the same scenes (the same draws: deflector SIE + shear, Sersic lights, clumps,
field objects) on the same grid with the same supersampling and PSF; lenstronomy gets one
ImageModel per band and light-component count, built once and reused, and one call per scene
and band. Printed per survey (median of --repeats runs):
  lenstronomy render     - ImageModel.image for every band of every scene
  lensml render          - StrongRenderer.render on batches of --batch-size scenes (draws included)
  lensml simulate strong - the whole command, FITS files and CSV included, 1 worker
then the ratio, the disk space per image and per 100,000 images, and the peak resident memory
(RSS) while rendering (it does not grow with the number of images). Peak RSS only grows within
a process, so run one survey at a time (--survey) for clean memory figures.

    python benchmarks/strong_simulation.py [-n 256] [--lenstronomy-n 32] [--repeats 3] [--survey both]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core for numpy too
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lensml.simulate import strong, surveys  # noqa: E402
from lensml.simulate.strong_files import simulate_strong  # noqa: E402


def lenstronomy_renderer(config: surveys.StrongSimConfig):
    """A function scene -> (bands, H, W) image made with lenstronomy, models cached by shape."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    n, scale = config.image_size, config.pixel_scale
    corner = -(n - 1) / 2 * scale
    numerics = {"supersampling_factor": config.supersampling,
                "supersampling_convolution": bool(config.psf_supersampled)}
    models: dict[tuple, ImageModel] = {}

    def psf(band: int) -> PSF:
        if config.psf_profile == "gaussian":
            return PSF(psf_type="GAUSSIAN", fwhm=config.psf_fwhm[band], pixel_size=scale)
        return PSF(psf_type="PIXEL", kernel_point_source=surveys.psf_image(config, band, scale))

    def render(scene: strong.Scene) -> np.ndarray:
        out = []
        for band in range(config.n_bands):
            kw = strong.lenstronomy_kwargs(config, scene, band)
            key = (band, len(kw["kwargs_source"]), len(kw["kwargs_lens_light"]))
            if key not in models:
                data = ImageData(image_data=np.zeros((n, n)), transform_pix2angle=np.diag([scale, scale]),
                                 ra_at_xy_0=corner, dec_at_xy_0=corner)
                models[key] = ImageModel(data, psf(band), LensModel(kw["lens_model_list"]),
                                         LightModel(kw["source_light_model_list"]),
                                         LightModel(kw["lens_light_model_list"]), kwargs_numerics=numerics)
            out.append(models[key].image(kw["kwargs_lens"], kw["kwargs_source"], kw["kwargs_lens_light"]))
        return np.stack(out)

    return render


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench(survey: str, n: int, n_lt: int, repeats: int, batch_size: int) -> None:
    config = surveys.strong_config(survey)
    scenes = [strong.draw_scene(config, 0, 100000 + i, 0.5) for i in range(n)]
    renderer = strong.StrongRenderer(config)
    lenstronomy = lenstronomy_renderer(config)
    baseline = rss_mib()

    def lensml_render() -> None:
        with strong.render_context():
            for start in range(0, n, batch_size):
                batch = [strong.draw_scene(config, 0, 100000 + i, 0.5) for i in range(start, start + batch_size)]
                renderer.render(strong.stack_scenes(batch))

    rates: dict[str, list[float]] = {}
    lensml_render()  # warm up: allocator, caches
    for _ in range(repeats):
        start = time.perf_counter()
        lensml_render()
        rates.setdefault("lensml render", []).append(n / (time.perf_counter() - start))
    rendering = rss_mib()
    disk = 0.0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            simulate_strong(survey, n, Path(tmp) / "set", seed=0, progress=False, batch_size=batch_size)
            rates.setdefault("lensml simulate strong (1 worker)", []).append(n / (time.perf_counter() - start))
            disk = sum(p.stat().st_size for p in (Path(tmp) / "set").rglob("*") if p.is_file()) / n
    lenstronomy(scenes[0])  # build the models that can be built once
    for _ in range(repeats):
        start = time.perf_counter()
        for scene in scenes[:n_lt]:
            lenstronomy(scene)
        rates.setdefault("lenstronomy render", []).append(n_lt / (time.perf_counter() - start))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{survey}: {config.n_bands} band(s), {config.image_size}x{config.image_size} px, supersampling "
          f"{config.supersampling}, {n} scenes ({n_lt} for lenstronomy), batch {batch_size}, {repeats} repeats, "
          f"torch threads {torch.get_num_threads()} -> 1 while rendering")
    for key, value in med.items():
        print(f"  {key:38s} {value:8.1f} images/s  ({1000.0 / value:6.2f} ms/image)")
    print(f"  ratio lensml render / lenstronomy      {med['lensml render'] / med['lenstronomy render']:8.1f}x")
    print(f"  disk: {disk / 1024:.1f} KiB per image, {disk * 1e5 / 2**30:.2f} GiB per 100,000 images")
    print(f"  memory: peak RSS {rendering:.0f} MiB while rendering, {rendering - baseline:+.0f} MiB over the "
          f"{baseline:.0f} MiB of libraries loaded; one batch at a time, so the same for 100,000 images")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=256)
    parser.add_argument("--lenstronomy-n", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--survey", default="both", choices=("space", "ground", "both"))
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores on this machine; every figure below uses one")
    for survey in ("space", "ground") if args.survey == "both" else (args.survey,):
        bench(survey, args.n, min(args.lenstronomy_n, args.n), args.repeats, args.batch_size)


if __name__ == "__main__":
    main()
