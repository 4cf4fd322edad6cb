"""Metacalibration speed: galaxies per second for batched counterfactual images on CPU.

Draws `--batch` 64x64 stamps (exponential galaxies, sheared, truncated Moffat PSF, 0.2"/px) once
with GalSim, then times `metacal_images` on the whole batch (five images per galaxy) after one
warm-up call, with and without the rotated-noise correction (which doubles the work), and prints
the median of `--repeats` calls as galaxies per second.  For scale it also times ngmix's recipe
in plain GalSim (InterpolatedImage, Deconvolve, shear, Gaussian, five draws per galaxy) on
`--galsim` of the stamps, one at a time.  Not part of the test suite.

    python benchmarks/metacal.py [--batch 256] [--repeats 3] [--threads 2] [--dtype float64|float32] [--galsim 16]
"""

from __future__ import annotations

import argparse

import galsim
import numpy as np
import torch
from _timing import timed

from lensml.shear.metacal import DEFAULT_DELTA, metacal_images, metacal_shears, reconv_sigma_from_psf

PIXEL_SCALE_ARCSEC = 0.2
STAMP_PIXELS = 64
PSF_PIXELS = 32


def _stamps(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, 64, 64) galaxies and their (batch, 32, 32) unit-sum PSF images."""
    rng = np.random.default_rng(seed)
    psf = galsim.Moffat(beta=3.5, fwhm=0.8, trunc=2.4)
    psf_image = psf.drawImage(nx=PSF_PIXELS, ny=PSF_PIXELS, scale=PIXEL_SCALE_ARCSEC).array
    psf_image = psf_image / psf_image.sum()
    images = []
    for _ in range(batch):
        gal = galsim.Exponential(half_light_radius=rng.uniform(0.3, 1.0))
        gal = gal.shear(g1=rng.uniform(-0.3, 0.3), g2=rng.uniform(-0.3, 0.3))
        drawn = galsim.Convolve(gal, psf).drawImage(nx=STAMP_PIXELS, ny=STAMP_PIXELS, scale=PIXEL_SCALE_ARCSEC)
        images.append(drawn.array)
    psfs = np.broadcast_to(psf_image, (batch, PSF_PIXELS, PSF_PIXELS))
    return torch.tensor(np.stack(images)), torch.tensor(np.ascontiguousarray(psfs))


def _galsim_metacal(images: torch.Tensor, psfs: torch.Tensor, sigma_pixels: torch.Tensor) -> None:
    """The same five images per galaxy with GalSim objects, one stamp after another."""
    scale = PIXEL_SCALE_ARCSEC
    for image, psf, sigma in zip(images.numpy(), psfs.numpy(), sigma_pixels.tolist()):
        galaxy = galsim.InterpolatedImage(galsim.Image(image, scale=scale), x_interpolant="lanczos15")
        psf_ii = galsim.InterpolatedImage(galsim.Image(psf, scale=scale), x_interpolant="lanczos15")
        deconvolved = galsim.Convolve(galaxy, galsim.Deconvolve(psf_ii))
        reconv = galsim.Gaussian(sigma=sigma * scale)
        for g1, g2 in metacal_shears(DEFAULT_DELTA):
            sheared = deconvolved.shear(g1=g1, g2=g2) if (g1 or g2) else deconvolved
            galsim.Convolve(sheared, reconv).drawImage(nx=STAMP_PIXELS, ny=STAMP_PIXELS, scale=scale, method="no_pixel")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--galsim", type=int, default=16, help="stamps for the GalSim loop (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    images, psfs = _stamps(args.batch, seed=1)
    generator = torch.Generator().manual_seed(2)
    cases = {
        "metacal (5 images)": lambda: metacal_images(images, psfs, compute_dtype=dtype),
        "metacal + noise correction": lambda: metacal_images(
            images, psfs, noise_sigma=1e-3, generator=generator, compute_dtype=dtype
        ),
    }
    print(f"{args.batch} stamps of {STAMP_PIXELS}x{STAMP_PIXELS}, {args.threads} threads, {args.dtype}")
    for name, step in cases.items():
        seconds = timed(step, args.repeats)
        print(f"{name}: {args.batch / seconds:.1f} galaxies/s ({seconds * 1e3:.0f} ms per batch)")
    if args.galsim > 0:
        n = min(args.galsim, args.batch)
        sigma = reconv_sigma_from_psf(psfs[:n].double())
        seconds = timed(lambda: _galsim_metacal(images[:n], psfs[:n], sigma), args.repeats)
        print(f"GalSim loop, ngmix's recipe, 1 core: {n / seconds:.1f} galaxies/s")


if __name__ == "__main__":
    main()
