"""Metacalibrated shear network speed: galaxies per second, side by side with AnaCal, on CPU.

Draws `--batch` noisy 64x64 stamps (0.2"/px, exponential galaxies, truncated Moffat PSF) once with
GalSim, then times on the same stamps, taking turns within each of `--repeats` rounds after one
warm-up call each (medians, and ratios as the median of per-round ratios):

- the counterfactual images alone (noshear, 1p, 1m, 2p, 2m, with the rotated-noise correction);
- `shear_net` on those five images in `--views` views (untrained: speed does not depend on weights),
  its BatchNorm folded into the convolutions as `network_metacal` runs it;
- the whole `network_metacal` (images, network and responses), the figure to compare;
- the same with neighbouring stamps keyed as the two members of a pair (they share their correction
  noise, which is then made once for both), what scoring a paired calibration set costs;
- AnaCal (`lensml[baselines]`) on the same stamps with its own noise correction.

`--before DIR` also times the images and the whole of another checkout's lensml (DIR is its
`src/lensml`, e.g. from `git worktree add /tmp/before REV`) in the same rounds, and prints how many
times faster this one is. `--width` sets shear_net's width (8, the shipped network; 16 has four times
the arithmetic).

    python benchmarks/metacal_network.py [--batch 256] [--repeats 15] [--threads 2] [--views 2] [--width 8]
                                         [--before DIR]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from _timing import import_other_lensml, median_ratio, timed_side_by_side
from metacal import PIXEL_SCALE_ARCSEC, STAMP_PIXELS, _stamps

from lensml.baselines.anacal import anacal_kernel_arcsec, anacal_shear
from lensml.inference import predict_array, with_batchnorm_folded
from lensml.modelfile import ModelInfo
from lensml.models.shear import leading_crop
from lensml.shear import network_metacal as network_metacal_module
from lensml.shear.network_metacal import correction_noise, metacal_network_inputs

NOISE_SIGMA = 2e-4  # SNR of about 30 for these galaxies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--views", type=int, default=2, choices=(1, 2, 4, 8))
    parser.add_argument("--width", type=int, default=8, help="shear_net's width (default 8, the shipped network)")
    parser.add_argument("--before", help="another checkout's src/lensml, timed in the same rounds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    images, psfs = _stamps(args.batch, seed=1)
    rng = np.random.default_rng(3)
    galaxies = (images.numpy() + rng.normal(0.0, NOISE_SIGMA, images.shape)).astype(np.float32)
    psf_np = psfs.numpy()
    sigma = np.full(args.batch, NOISE_SIGMA)
    pair_keys = np.arange(args.batch) // 2
    info = ModelInfo(arch="shear_net", arch_kwargs={"in_channels": 2, "out_features": 2,
                                                    "image_size": [STAMP_PIXELS, STAMP_PIXELS],
                                                    "width": args.width},
                     task="shear", inputs=["galaxy", "psf"], norm="rms", targets=["g1", "g2"],
                     target_mean=[0.0, 0.0], target_std=[0.2, 0.2], metacal=True)
    net = info.build().eval()
    crop = leading_crop(net)  # network_metacal keeps only the network's central crop of each image
    noise = correction_noise(galaxies.shape[-2:], sigma, range(args.batch))
    x = metacal_network_inputs(info.inputs, info.norm, galaxies, psf_np, device, noise, crop=crop)
    flat = x.reshape(-1, *x.shape[2:])
    kernel = anacal_kernel_arcsec(psf_np[0], PIXEL_SCALE_ARCSEC)

    def whole(module, keys=None):
        return lambda: module.network_metacal(net, info, galaxies, psf_np, device, noise_sigma=sigma, tta=args.views,
                                              batch_size=512, noise_keys=keys)

    def counterfactuals(module):
        return lambda: module.metacal_network_inputs(info.inputs, info.norm, galaxies, psf_np, device, noise, crop=crop)

    cases = {
        "counterfactual images (5, noise-corrected)": counterfactuals(network_metacal_module),
        f"shear_net on 5 images x {args.views} views":
            lambda: predict_array(with_batchnorm_folded(net), info, flat, device, 512, args.views),
        f"network_metacal, {args.views} views (all of it)": whole(network_metacal_module),
        "the same, neighbours in pairs (a paired set)": whole(network_metacal_module, pair_keys),
        "AnaCal (its own noise correction)":
            lambda: anacal_shear(galaxies.astype(np.float64), psf_np, PIXEL_SCALE_ARCSEC, sigma,
                                 sigma_shapelets=kernel),
    }
    if args.before:
        before = import_other_lensml(args.before, "shear.network_metacal")
        cases["before: counterfactual images"] = counterfactuals(before)
        cases["before: network_metacal (all of it)"] = whole(before)
        cases["before: the same, a paired set"] = whole(before, pair_keys)
    print(f"{args.batch} stamps of {STAMP_PIXELS}x{STAMP_PIXELS}, {args.threads} threads, "
          f"shear_net {sum(p.numel() for p in net.parameters()):,} parameters, {args.repeats} rounds")
    times = timed_side_by_side(cases, args.repeats)
    for name, seconds in times.items():
        print(f"{name}: {args.batch / statistics.median(seconds):.0f} galaxies/s")
    names = list(cases)
    anacal = times[names[4]]
    print(f"network_metacal / AnaCal: {median_ratio(anacal, times[names[2]]):.2f}x "
          f"(a paired set: {median_ratio(anacal, times[names[3]]):.2f}x)")
    if args.before:
        for now, then in zip((names[0], names[2], names[3]), names[5:]):
            print(f"{now}: {median_ratio(times[then], times[now]):.2f}x faster than before")


if __name__ == "__main__":
    main()
