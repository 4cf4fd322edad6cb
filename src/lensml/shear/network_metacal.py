"""Metacalibration of any shear network: its answers on the five counterfactual images of each stamp.

The network sees each metacal image with the reconvolution PSF as its PSF channel (the PSF those
images have). Its shear response R = d g_hat / d g is then measured on the data itself, so the
ensemble shear <g_hat> / <R> does not depend on the shear prior the network was trained on.
Each stamp is sheared about the galaxy's own centroid and recentred on it (see
`metacal_images`): a network is not translation invariant, and shearing about the stamp's centre
moves an off-centre galaxy, a motion the network would count as response (m = -2% for half-pixel
offsets with a fixed-centre moment estimator).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from ..data.transforms import normalise
from ..inference import predict_array
from ..modelfile import ModelInfo
from .metacal import DEFAULT_DELTA, metacal_images, response_from_estimates

CHUNK = 256  # stamps per metacal call


def network_metacal(net: torch.nn.Module, info: ModelInfo, galaxies: np.ndarray, psfs: np.ndarray,
                    device: torch.device, noise_sigma: np.ndarray | None = None, noise_keys: np.ndarray | None = None,
                    delta: float = DEFAULT_DELTA, batch_size: int = 256, tta: bool = True,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """g (N, 2) on the noshear images and the response R (N, 2, 2) of a shear network, per stamp.

    `noise_sigma` (N,) turns on the rotated-noise correction; stamps with the same `noise_keys`
    (pair IDs of a paired design) get the same correction noise, so a pair differs by its shear alone.
    """
    n = len(galaxies)
    keys = np.arange(n) if noise_keys is None else np.asarray(noise_keys)
    g_out, r_out = np.empty((n, 2)), np.empty((n, 2, 2))
    cols = [info.targets.index("g1"), info.targets.index("g2")]
    for start in tqdm(range(0, n, CHUNK), desc="metacal", unit="chunk", disable=not progress, leave=False):
        stop = min(start + CHUNK, n)
        gal = torch.from_numpy(np.ascontiguousarray(galaxies[start:stop], dtype=np.float64)).to(device)
        psf = torch.from_numpy(np.ascontiguousarray(psfs[start:stop], dtype=np.float64)).to(device)
        noise = None
        if noise_sigma is not None and np.any(np.asarray(noise_sigma[start:stop]) > 0):
            noise = torch.from_numpy(np.stack([np.random.default_rng([0x3E7A, int(k)]).standard_normal(gal.shape[1:])
                                               for k in keys[start:stop]]) * np.asarray(noise_sigma[start:stop])[:, None, None])
            noise = noise.to(device)
        mc = metacal_images(gal, psf, delta, noise=noise, recentre=True)
        b, types = mc.images.shape[:2]
        channels = {"galaxy": mc.images, "psf": mc.reconv_psf[:, None].expand(-1, types, -1, -1)}
        x = torch.stack([channels[k] for k in info.inputs], 2).reshape(b * types, len(info.inputs), *mc.images.shape[-2:])
        x = normalise(x.float().cpu().numpy(), info.norm)
        pred = predict_array(net, info, x, device, batch_size, tta)[:, cols].reshape(b, types, 2)
        g, r = response_from_estimates(torch.from_numpy(pred), delta)
        g_out[start:stop], r_out[start:stop] = g.numpy(), r.numpy()
    return g_out, r_out

