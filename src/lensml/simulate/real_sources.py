"""Lensed sources with real galaxy morphologies (`lensml simulate strong --sources`).

Sersic discs with a few clumps are not what real sources look like, and a finder trained only on
them learns their look. With a source bank, every scene whose source slot is used (lenses, offset
sources, small masses, companions) takes one real galaxy image instead of its Sersic source and
clumps: rotated to the drawn angle, mirrored at random, scaled so that its half-light radius is the
drawn `source_re`, keeping the drawn total flux and colours. Its light is ray-traced on the
supersampled grid (bilinear interpolation in the stamp), PSF-convolved at the sub-pixel scale and
binned like the rest of the scene.

Banks: a folder of FITS cutouts, a FITS file holding one image or a cube of them, or `hdf`: the
galaxies segmented from scikit-image's `data.hubble_deep_field()` (the Hubble eXtreme Deep Field as
an 8-bit colour JPEG, offline). Only shapes are used, never fluxes or sizes; the JPEG's stretch and
saturated cores make its fluxes meaningless anyway.

The stamp and mirror of scene ID come from numpy's generator seeded with (seed, ID, 1), a stream
separate from the scene's own draws, so a bank changes the sources and nothing else.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadInputError, MissingFileError
from .strong import SOURCE_KINDS

HDF = "hdf"
MIN_PIXELS = 40  # segments smaller than this are noise or unresolved


@dataclass(frozen=True)
class SourceBank:
    """Galaxy images: each non-negative with unit sum, its flux-weighted centre and half-light radius in pixels."""

    stamps: tuple[np.ndarray, ...]
    centres: tuple[tuple[float, float], ...]  # (x, y) in stamp pixels
    hlr_pixels: tuple[float, ...]
    origin: str

    def __len__(self) -> int:
        return len(self.stamps)

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for s in self.stamps:
            h.update(np.ascontiguousarray(s, dtype=np.float32).tobytes())
        return h.hexdigest()[:16]


def load_sources(spec: str) -> SourceBank:
    """A bank from `hdf`, a folder of FITS images, or one FITS image or cube."""
    if spec == HDF:
        return _hdf_bank()
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".fits", ".fit", ".fz"))
        if not files:
            raise BadInputError(f"--sources {spec}: no FITS files in this folder")
        images = [image for f in files for image in _fits_images(f)]
    elif path.is_file():
        images = _fits_images(path)
    else:
        raise MissingFileError(f"--sources {spec}: no such file or folder (or give 'hdf' for the Hubble deep field)")
    return _bank(images, origin=str(path.resolve()))


def _fits_images(path: Path) -> list[np.ndarray]:
    from astropy.io import fits

    try:
        data = np.asarray(fits.getdata(path), dtype=np.float64)  # the first HDU with data: an image or a cube
    except Exception as exc:  # astropy raises many types for damaged files
        raise BadInputError(f"{path}: not a readable FITS image ({exc})") from None
    if data.ndim == 2:
        return [data]
    if data.ndim == 3:
        return list(data)
    raise BadInputError(f"{path}: a source image must be 2-D (or a 3-D cube of them), got {data.ndim}-D")


def _bank(images: list[np.ndarray], origin: str) -> SourceBank:
    stamps, centres, radii = [], [], []
    for image in images:
        image = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        image = np.clip(image - np.median(image[_border(image)]), 0.0, None)
        total = image.sum()
        if total <= 0 or np.count_nonzero(image) < MIN_PIXELS:
            continue
        image = image / total
        yy, xx = np.indices(image.shape)
        cx, cy = float((image * xx).sum()), float((image * yy).sum())
        r = np.hypot(xx - cx, yy - cy).ravel()
        order = np.argsort(r)
        hlr = float(np.interp(0.5, np.cumsum(image.ravel()[order]), r[order]))
        stamps.append(image.astype(np.float32))
        centres.append((cx, cy))
        radii.append(max(hlr, 0.5))
    if not stamps:
        raise BadInputError(f"--sources {origin}: no usable galaxy image (each needs {MIN_PIXELS}+ pixels above its border)")
    return SourceBank(tuple(stamps), tuple(centres), tuple(radii), origin)


def _border(image: np.ndarray) -> np.ndarray:
    mask = np.zeros(image.shape, dtype=bool)
    mask[[0, -1], :] = True
    mask[:, [0, -1]] = True
    return mask


@lru_cache(maxsize=1)
def _hdf_bank() -> SourceBank:
    """The galaxies of the Hubble eXtreme Deep Field JPEG: segmented above 5 sigma of its sky, each cut
    out with a margin and with every other segment blanked."""
    from scipy import ndimage
    from skimage import data

    grey = data.hubble_deep_field().astype(np.float64).mean(-1)
    sky = np.median(grey)
    sigma = 1.4826 * np.median(np.abs(grey - sky))
    labels, _ = ndimage.label(ndimage.uniform_filter(grey, 3) > sky + 5.0 * sigma)
    images = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        rows, cols = box
        h, w = rows.stop - rows.start, cols.stop - cols.start
        pad = max(h, w) // 4 + 2
        top, left = rows.start - pad, cols.start - pad
        bottom, right = rows.stop + pad, cols.stop + pad
        if top < 0 or left < 0 or bottom > grey.shape[0] or right > grey.shape[1]:
            continue  # cut by the field's edge
        own = labels[top:bottom, left:right]
        if np.count_nonzero(own == index) < MIN_PIXELS or max(h, w) > 150:
            continue
        cut = grey[top:bottom, left:right] - sky
        cut[~ndimage.binary_dilation(own == index, iterations=2)] = 0.0  # no sky noise, no neighbours
        images.append(cut)
    return _bank(images, origin="skimage.data.hubble_deep_field")


def pick_stamps(bank: SourceBank, seed: int, image_ids: list[int]) -> list[tuple[int, bool]]:
    """(stamp index, mirrored) per scene, from the scene's own source stream."""
    out = []
    for image_id in image_ids:
        rng = np.random.default_rng([int(seed), int(image_id), 1])
        out.append((int(rng.integers(len(bank))), bool(rng.random() < 0.5)))
    return out


def detach_source(scene, config):
    """(the scene without its Sersic source and clumps, their total flux per band or None).

    The source slot keeps its position, angle and half-light radius: they place the real stamp.
    """
    if scene.kind not in SOURCE_KINDS:
        return scene, None
    slots = slice(1, 2 + config.clumps_max)
    total = scene.flux[slots].sum(0)
    if not total.any():
        return scene, None
    flux = scene.flux.copy()
    flux[slots] = 0.0
    return replace(scene, flux=flux), total


def render_real_sources(renderer, scenes, source_flux: list, bank: SourceBank,
                        picks: list[tuple[int, bool]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray-traced, PSF-convolved real sources of `scenes`, flux units: (B, bands, H, W) and the
    reference band alone (B, H, W), as `StrongRenderer.render` returns them.

    Each scene's source slot (position, angle, half-light radius) and `source_flux` (total per band,
    None: no source) place its stamp.
    """
    cfg = renderer.config
    n, ss = cfg.image_size, cfg.supersampling
    fine = torch.zeros((len(scenes), n * ss, n * ss), dtype=torch.float64)
    axis = (torch.arange(n * ss, dtype=torch.float64) - (n * ss - 1) / 2.0) * cfg.pixel_scale / ss
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    fluxes = torch.zeros((len(scenes), cfg.n_bands), dtype=torch.float64)
    for b, (scene, total, (index, mirrored)) in enumerate(zip(scenes, source_flux, picks)):
        if total is None:
            continue
        fluxes[b] = torch.from_numpy(np.asarray(total, dtype=np.float64))
        bx, by = renderer.raytrace(torch.from_numpy(scene.mass)[None], xx.reshape(1, -1), yy.reshape(1, -1))
        x0, y0, _, phi, _, re = (float(v) for v in scene.light[1])
        stamp = torch.from_numpy(bank.stamps[index]).to(torch.float64)
        cx, cy = bank.centres[index]
        arcsec_per_px = re / bank.hlr_pixels[index]
        dx, dy = (bx[0] - x0) / arcsec_per_px, (by[0] - y0) / arcsec_per_px
        c, s = math.cos(phi), math.sin(phi)
        u, v = c * dx + s * dy, -s * dx + c * dy  # into the stamp's frame, rotated by the drawn angle
        if mirrored:
            u = -u
        h, w = stamp.shape
        grid = torch.stack([(u + cx + 0.5) / w * 2 - 1, (v + cy + 0.5) / h * 2 - 1], -1).view(1, 1, -1, 2)
        sampled = F.grid_sample(stamp[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # unit-sum stamp pixels -> surface brightness per arcsec^2 -> flux per image pixel
        fine[b] = sampled.view(n * ss, n * ss) * (cfg.pixel_scale / arcsec_per_px) ** 2
    images = renderer.convolve_fine(fine.to(renderer.device, renderer.dtype))  # (B, channels, n, n) for unit total flux
    ref = cfg.reference_band
    fluxes = fluxes.to(images.device, images.dtype)
    return images[:, : cfg.n_bands] * fluxes[:, :, None, None], images[:, -1] * fluxes[:, ref, None, None]
