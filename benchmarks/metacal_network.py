"""Metacalibrated shear network speed: galaxies per second, side by side with AnaCal, on CPU.

Draws `--batch` noisy 64x64 stamps (0.2"/px, exponential galaxies, truncated Moffat PSF) once with
GalSim, then times on the same stamps, each after one warm-up call (median of `--repeats`):

- the counterfactual images alone (noshear, 1p, 1m, 2p, 2m, with the rotated-noise correction);
- `shear_net` on those five images in `--views` views (untrained: speed does not depend on weights),
  its BatchNorm folded into the convolutions as `network_metacal` runs it;
- the whole `network_metacal` (images, network and responses), the figure to compare;
- AnaCal (`lensml[baselines]`) on the same stamps with its own noise correction.

`--width` sets shear_net's width (16, the default network; 8 has a quarter of the arithmetic).

    python benchmarks/metacal_network.py [--batch 256] [--repeats 3] [--threads 2] [--views 2] [--width 16]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _timing import timed
from metacal import PIXEL_SCALE_ARCSEC, STAMP_PIXELS, _stamps

from lensml.baselines.anacal import anacal_kernel_arcsec, anacal_shear
from lensml.inference import predict_array, with_batchnorm_folded
from lensml.modelfile import ModelInfo
from lensml.models.shear import leading_crop
from lensml.shear.network_metacal import correction_noise, metacal_network_inputs, network_metacal

NOISE_SIGMA = 2e-4  # SNR of about 30 for these galaxies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--views", type=int, default=2, choices=(1, 2, 4, 8))
    parser.add_argument("--width", type=int, default=16, help="shear_net's width (default 16)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    images, psfs = _stamps(args.batch, seed=1)
    rng = np.random.default_rng(3)
    galaxies = images.numpy() + rng.normal(0.0, NOISE_SIGMA, images.shape)
    psf_np = psfs.numpy()
    sigma = np.full(args.batch, NOISE_SIGMA)
    info = ModelInfo(arch="shear_net", arch_kwargs={"in_channels": 2, "out_features": 2,
                                                    "image_size": [STAMP_PIXELS, STAMP_PIXELS],
                                                    "width": args.width},
                     task="shear", inputs=["galaxy", "psf"], norm="rms", targets=["g1", "g2"],
                     target_mean=[0.0, 0.0], target_std=[0.2, 0.2], metacal=True)
    net = info.build().eval()
    noise = correction_noise(galaxies.shape[-2:], sigma, range(args.batch))
    crop = leading_crop(net)  # network_metacal keeps only the network's central crop of each image
    x = metacal_network_inputs(info.inputs, info.norm, galaxies, psf_np, device, noise, crop=crop)
    flat = x.reshape(-1, *x.shape[2:])
    kernel = anacal_kernel_arcsec(psf_np[0], PIXEL_SCALE_ARCSEC)
    cases = {
        "counterfactual images (5, noise-corrected)":
            lambda: metacal_network_inputs(info.inputs, info.norm, galaxies, psf_np, device, noise, crop=crop),
        f"shear_net on 5 images x {args.views} views":
            lambda: predict_array(with_batchnorm_folded(net), info, flat, device, 512, args.views),
        f"network_metacal, {args.views} views (all of it)":
            lambda: network_metacal(net, info, galaxies, psf_np, device, noise_sigma=sigma, tta=args.views,
                                    batch_size=512),
        "AnaCal (its own noise correction)":
            lambda: anacal_shear(galaxies, psf_np, PIXEL_SCALE_ARCSEC, sigma, sigma_shapelets=kernel),
    }
    print(f"{args.batch} stamps of {STAMP_PIXELS}x{STAMP_PIXELS}, {args.threads} threads, "
          f"shear_net {sum(p.numel() for p in net.parameters()):,} parameters")
    rates = {}
    for name, step in cases.items():
        seconds = timed(step, args.repeats)
        rates[name] = args.batch / seconds
        print(f"{name}: {rates[name]:.0f} galaxies/s")
    whole, anacal = list(rates.values())[2], list(rates.values())[3]
    print(f"network_metacal / AnaCal: {whole / anacal:.2f}x")


if __name__ == "__main__":
    main()
