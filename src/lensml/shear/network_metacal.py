"""Metacalibration of any shear network: its answers on the five counterfactual images of each stamp.

The network sees each metacal image with the reconvolution PSF as its PSF channel (the PSF those
images have). Its shear response R = d g_hat / d g is then measured on the data itself, so the
ensemble shear <g_hat> / <R> does not depend on the shear prior the network was trained on.
Each stamp is sheared about the galaxy's own centroid and recentred on it (see
`metacal_images`): a network is not translation invariant, and shearing about the stamp's centre
moves an off-centre galaxy, a motion the network would count as response (m = -2% for half-pixel
offsets with a fixed-centre moment estimator). Each of the five images is then centred on its own
centroid (`centred_on_own_centroid`): the centroid is part of the estimator and is measured on
what the network sees, so its noise is sheared with the image.

A network trained with `lensml train --metacal` has only ever seen such images (the noshear one),
so it is applied through metacalibration alone.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..data.transforms import normalise
from ..inference import predict_array, with_batchnorm_folded
from ..modelfile import ModelInfo
from ..models.shear import CentreCrop, leading_crop
from .metacal import (CENTROID_WEIGHT_PER_SIGMA, DEFAULT_DELTA, METACAL_TYPES, metacal_images,
                      response_from_estimates, weighted_centroid)

CHUNK = 256  # stamps per metacal call
# The network reads float32, and float32 counterfactuals (1e-6 of the peak) move its paired m on the
# noise-free reference set by 2e-6 (its error there: 3e-4), at 1.6x the speed of float64.
COMPUTE_DTYPE = torch.float32
NOISE_STREAM = 0x3E7A  # seeds the correction noise: numpy generator (NOISE_STREAM, seed, key)


def correction_noise(shape: tuple[int, int], noise_sigma: np.ndarray, keys: Sequence[int],
                     seed: int = 0) -> np.ndarray | None:
    """Gaussian noise images (B, H, W) of each stamp's sigma, one realisation per key (so stamps that
    share a key, e.g. the two members of a pair, get the same one); 0 where sigma is 0, and None
    (no correction) where every sigma is."""
    if not np.any(np.asarray(noise_sigma) > 0):
        return None
    keys = [int(k) for k in keys]
    draws = {k: np.random.default_rng([NOISE_STREAM, int(seed), k]).standard_normal(shape) for k in dict.fromkeys(keys)}
    return np.stack([draws[k] for k in keys]) * np.asarray(noise_sigma, float)[:, None, None]


def centred_on_own_centroid(images: torch.Tensor, reconv_sigma_pixels: torch.Tensor) -> torch.Tensor:
    """Each image (B, T, H, W) moved so that its own weighted centroid sits on the stamp's true centre
    (a phase on its periodic grid; the images are band-limited by the reconvolution PSF).

    The centroid is part of the estimator, so it is measured on every counterfactual image, noise
    correction included, as it would be on a sheared sky. Recentring all five images on the centroid
    of the original stamp instead ties them to that stamp's centroid noise: at SNR 30 that biased a
    network's m by -0.5% (re-measured per image, m moved by +0.50% ± 0.04% on 1e5 paired stamps)."""
    b, t, h, w = images.shape
    flat = images.reshape(b * t, h, w)
    sigma = (CENTROID_WEIGHT_PER_SIGMA * reconv_sigma_pixels).repeat_interleave(t)
    centre = weighted_centroid(flat, sigma).to(flat.dtype)  # (B T, 2): x, y from the true centre
    ky = 2.0 * math.pi * torch.fft.fftfreq(h, dtype=flat.dtype, device=flat.device)
    kx = 2.0 * math.pi * torch.fft.rfftfreq(w, dtype=flat.dtype, device=flat.device)
    phase = kx[None, None, :] * centre[:, 0, None, None] + ky[None, :, None] * centre[:, 1, None, None]
    moved = torch.fft.irfft2(torch.fft.rfft2(flat) * torch.polar(torch.ones_like(phase), phase), s=(h, w))
    return moved.reshape(b, t, h, w)


def metacal_network_inputs(inputs: Sequence[str], norm: str, galaxies: np.ndarray, psfs: np.ndarray,
                           device: torch.device, noise: np.ndarray | None = None,
                           types: tuple[str, ...] = METACAL_TYPES, delta: float = DEFAULT_DELTA,
                           crop: tuple[int, int] | None = None) -> np.ndarray:
    """The normalised network input (B, len(types), C, H, W) of stamps' metacal images: each image
    with the reconvolution PSF as its 'psf' channel, centred on its own centroid.

    With `crop`, only the central crop of each normalised image (normalised over the whole stamp) is
    kept: what a network that starts with that crop reads, at a quarter of the copying."""
    gal = torch.from_numpy(np.asarray(galaxies)).to(device, COMPUTE_DTYPE)  # float32 stamps: no copy
    psf = torch.from_numpy(np.ascontiguousarray(psfs, dtype=np.float64)).to(device)
    noise_t = None if noise is None else torch.from_numpy(np.asarray(noise, np.float64)).to(device)
    mc = metacal_images(gal, psf, delta, noise=noise_t, recentre=True, types=types, compute_dtype=COMPUTE_DTYPE)
    n_types = mc.images.shape[1]
    images = centred_on_own_centroid(mc.images, mc.reconv_sigma_pixels)
    # the reconvolution PSF is the same for all of a stamp's images: normalised once
    keep = CentreCrop(crop) if crop is not None else (lambda x: x)
    channels = {"galaxy": lambda: keep(normalise(images, norm)),
                "psf": lambda: keep(normalise(mc.reconv_psf, norm))[:, None].expand(-1, n_types, -1, -1)}
    return torch.stack([channels[k]() for k in inputs], 2).cpu().numpy()


def metacal_training_inputs(inputs: Sequence[str], norm: str, galaxies: np.ndarray, psfs: np.ndarray,
                            noise_sigma: np.ndarray, seed: int, device: torch.device,
                            progress: bool = False) -> np.ndarray:
    """(N, C, H, W): the noshear metacal image of every training stamp, as `network_metacal` will
    show it (noise-corrected where `noise_sigma` > 0, with noise drawn from `seed` and the index)."""
    out = np.empty((len(galaxies), len(inputs), *galaxies.shape[-2:]), np.float32)
    for start in tqdm(range(0, len(galaxies), CHUNK), desc="metacal images", unit="chunk", disable=not progress,
                      leave=False):
        stop = min(start + CHUNK, len(galaxies))
        noise = correction_noise(galaxies.shape[-2:], noise_sigma[start:stop], range(start, stop), seed)
        out[start:stop] = metacal_network_inputs(inputs, norm, galaxies[start:stop], psfs[start:stop], device,
                                                 noise, types=("noshear",))[:, 0]
    return out


def network_metacal(net: torch.nn.Module, info: ModelInfo, galaxies: np.ndarray, psfs: np.ndarray,
                    device: torch.device, noise_sigma: np.ndarray | None = None, noise_keys: np.ndarray | None = None,
                    delta: float = DEFAULT_DELTA, batch_size: int = 256, tta: bool | int = True,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """g (N, 2) on the noshear images and the response R (N, 2, 2) of a shear network, per stamp.

    `noise_sigma` (N,) turns on the rotated-noise correction; stamps with the same `noise_keys`
    (pair IDs of a paired design) get the same correction noise, so a pair differs by its shear alone.
    """
    n = len(galaxies)
    keys = np.arange(n) if noise_keys is None else np.asarray(noise_keys)
    g_out, r_out = np.empty((n, 2)), np.empty((n, 2, 2))
    cols = [info.targets.index("g1"), info.targets.index("g2")]
    net = with_batchnorm_folded(net)  # it runs ten times per galaxy
    crop = leading_crop(net)
    for start in tqdm(range(0, n, CHUNK), desc="metacal", unit="chunk", disable=not progress, leave=False):
        stop = min(start + CHUNK, n)
        noise = None if noise_sigma is None else correction_noise(galaxies.shape[-2:], noise_sigma[start:stop],
                                                                 keys[start:stop])
        x = metacal_network_inputs(info.inputs, info.norm, galaxies[start:stop], psfs[start:stop], device, noise,
                                   delta=delta, crop=crop)
        b, types = x.shape[:2]
        pred = predict_array(net, info, x.reshape(b * types, *x.shape[2:]), device, batch_size, tta)
        g, r = response_from_estimates(torch.from_numpy(pred[:, cols].reshape(b, types, 2)), delta)
        g_out[start:stop], r_out[start:stop] = g.numpy(), r.numpy()
    return g_out, r_out
