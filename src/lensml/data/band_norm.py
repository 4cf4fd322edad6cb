"""Per-band pixel normalisation of lens-finding scenes (N, bands, H, W), batched in numpy.

Challenge pixel values are of order 1e-12..1e-9, so every band of every scene is rescaled on
its own before it reaches a network:

- zscale: limits (lo, hi) from IRAF's zscale exactly as astropy's `ZScaleInterval()` computes
  them with its defaults (LEXACTUM's normalisation), then (x - lo) / (hi - lo) clipped to [0, 1];
- minmax: lo and hi are the band's minimum and maximum;
- asinh: the band's sky level (median) subtracted and divided by its noise (1.4826 x the median
  absolute deviation, as astropy's `mad_std`), then asinh(x / 3) / asinh(1000 / 3): linear to a
  few sigma, logarithmic above, 1 at 1000 sigma, never clipped. ZScale's upper limit lies a few
  sigma above the sky, so the light of a bright deflector saturates there and hides the arcs on
  it; the asinh stretch keeps them (Lupton et al. 2004);
- none: values as they are.

Masked pixels (the survey's mask value, 100 for the challenge, or not finite; `io.challenge.masked_pixels`) take no part in the limits
and are 0 in the output of every method. A band whose limits coincide (constant, or fully
masked) comes out as zeros.

`ZScaleInterval` costs about a millisecond per call, too slow for 100,000 four-band scenes, so
`zscale_limits` runs the same algorithm (sampling, sort, iterated line fit with k-sigma
rejection grown to neighbouring samples, contrast) on a whole stack of bands at once, and
matches astropy to rounding. Where the kept samples lie exactly on a line (noise-free, constant
regions) rounding alone decides astropy's rejections, so those bands are handed to
`ZScaleInterval` itself. `zscale_limits_astropy` is the per-band reference.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.visualization import ZScaleInterval

from ..errors import BadInputError
from ..io.challenge import CHALLENGE_MASK_VALUE, masked_pixels

METHODS = ("zscale", "minmax", "asinh", "none")
ASINH_SOFTENING_SIGMA = 3.0  # the stretch is linear below about this many sky sigmas
ASINH_FULL_SCALE_SIGMA = 1000.0  # a pixel this far above the sky maps to 1
MAD_TO_SIGMA = 1.482602218505602  # sigma / median absolute deviation of a Gaussian (astropy's mad_std)
_ZSCALE = ZScaleInterval()  # the defaults the batched version follows
# Bands normalised together, and sample rows fitted together: small enough that the
# temporaries stay in the CPU cache, large enough that numpy's per-call cost is spread thin.
_CHUNK = 128
_BLOCK = 128
# Kept samples whose scatter about the line is below this share of their size lie exactly on it:
# rounding then decides the rejections, so those rows are handed to astropy itself.
_DEGENERATE = 1e-10


def zscale_limits_astropy(bands: np.ndarray, good: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of each image of a stack (M, H, W) from astropy's ZScaleInterval, one call per image."""
    bands = np.asarray(bands)
    good = np.isfinite(bands) if good is None else good
    lo, hi = np.full(len(bands), np.nan), np.full(len(bands), np.nan)
    for k in range(len(bands)):
        values = bands[k][good[k]]
        if values.size:
            lo[k], hi[k] = _ZSCALE.get_limits(values)
    return lo, hi


def zscale_limits(bands: np.ndarray, good: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) float64 of each image of a stack (M, H, W), over its `good` pixels (default: finite ones).

    Same result as `ZScaleInterval().get_limits(image[good])` per image; NaN where no pixel is good.
    """
    bands = np.asarray(bands)
    flat = bands.reshape(len(bands), -1)
    good = np.isfinite(flat) if good is None else np.asarray(good).reshape(flat.shape)
    lo, hi = np.full(len(bands), np.nan), np.full(len(bands), np.nan)
    complete = good.all(axis=1)
    jobs: list[tuple[np.ndarray, np.ndarray]] = []  # (rows, their unsorted samples), one length per job
    if complete.any():
        rows = np.flatnonzero(complete)
        jobs.append((rows, flat[:, :: _stride(flat.shape[1])][rows, : _ZSCALE.n_samples]))
    partial: dict[int, list[tuple[int, np.ndarray]]] = {}
    for row in np.flatnonzero(~complete):
        values = flat[row][good[row]]
        if values.size:
            sample = values[:: _stride(values.size)][: _ZSCALE.n_samples]
            partial.setdefault(sample.size, []).append((row, sample))
    for members in partial.values():
        jobs.append((np.array([row for row, _ in members]), np.stack([sample for _, sample in members])))
    for rows, samples in jobs:
        for start in range(0, len(rows), _BLOCK):
            block = rows[start : start + _BLOCK]
            lo[block], hi[block] = _zscale_sorted(np.sort(samples[start : start + _BLOCK], axis=1))
    return lo, hi


def _stride(size: int) -> int:
    return int(max(1.0, size / _ZSCALE.n_samples))


def _dilate(bad: np.ndarray, width: int) -> np.ndarray:
    """np.convolve(row, ones(width), mode="same") > 0 for every row: a pixel next to a rejected one is rejected.

    Pixel i becomes bad if any of i - width // 2 .. i + (width - 1) // 2 is; the window OR is
    built by doubling, a few boolean passes instead of `width`.
    """
    m, n = bad.shape
    acc = np.zeros((m, n + width - 1), dtype=bool)
    acc[:, width // 2 : width // 2 + n] = bad
    span = 1
    while 2 * span <= width:
        acc = acc[:, :-span] | acc[:, span:]
        span *= 2
    return acc[:, :n] | acc[:, width - span : width - span + n]


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def _zscale_sorted(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ZScale limits of each row of sorted samples (m, n): astropy's loop, run on all rows at once."""
    z = _ZSCALE
    m, n = samples.shape
    vmin, vmax = samples[:, 0].astype(np.float64), samples[:, -1].astype(np.float64)
    minpix = max(z.min_npixels, int(n * z.max_reject))
    if n < minpix:
        return vmin, vmax
    y = samples.astype(np.float64)
    x = np.arange(n, dtype=np.float64)
    ngrow = max(1, int(n * 0.01))
    bad = np.zeros((m, n), dtype=bool)
    ngood, last = np.full(m, n), np.full(m, n + 1)
    slope = np.zeros(m)
    active = np.ones(m, dtype=bool)
    tiny = _DEGENERATE * np.maximum(np.abs(vmin), np.abs(vmax))
    degenerate = np.zeros(m, dtype=bool)
    for _ in range(z.max_iterations):
        active &= (ngood < last) & (ngood >= minpix)
        if not active.any():
            break
        rows = slice(None) if active.all() else np.flatnonzero(active)
        kept, yr = ~bad[rows], y[rows]
        w = kept.astype(np.float64)
        count = w.sum(axis=1)
        # Least-squares line through the kept samples, in centred form: residual = yc - b * dx.
        dx = x - ((w @ x) / count)[:, None]
        yc = yr - (_dot(w, yr) / count)[:, None]
        wdx = w * dx
        b = _dot(wdx, yc) / _dot(wdx, dx)
        residual = yc - b[:, None] * dx
        deviation = residual - (_dot(w, residual) / count)[:, None]
        threshold = z.krej * np.sqrt(_dot(w * deviation, deviation) / count)
        degenerate[rows] |= threshold <= tiny[rows]
        rejected = ~kept
        rejected |= np.abs(residual) > threshold[:, None]
        rejected = _dilate(rejected, ngrow)
        bad[rows] = rejected
        last[rows], ngood[rows] = ngood[rows], n - np.count_nonzero(rejected, axis=1)
        slope[rows] = b
    fitted = ngood >= minpix
    if z.contrast > 0:
        slope = slope / z.contrast
    centre = (n - 1) // 2
    median = np.median(samples, axis=1).astype(np.float64)
    lo = np.where(fitted, np.maximum(vmin, median - (centre - 1) * slope), vmin)
    hi = np.where(fitted, np.minimum(vmax, median + (n - centre) * slope), vmax)
    for row in np.flatnonzero(degenerate):
        lo[row], hi[row] = z.get_limits(samples[row])
    return lo, hi


def _minmax_limits(bands: np.ndarray, good: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = np.where(good, bands, np.inf).min(axis=(1, 2)).astype(np.float64)
    hi = np.where(good, bands, -np.inf).max(axis=(1, 2)).astype(np.float64)
    return lo, hi


def sky_level_and_sigma(bands: np.ndarray, good: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(median, MAD sigma) float64 of each image of a stack (M, H, W) over its good pixels; NaN where none is good.

    Robust to the galaxies in a cutout as long as sky pixels are the majority.
    """
    def median_and_mad_sigma(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # along the last axis
        median = np.median(values, axis=-1, keepdims=True)
        return median[..., 0], MAD_TO_SIGMA * np.median(np.abs(values - median), axis=-1)

    flat = bands.reshape(len(bands), -1).astype(np.float64)
    good = good.reshape(flat.shape)
    level, sigma = np.full(len(flat), np.nan), np.full(len(flat), np.nan)
    complete = good.all(axis=1)
    if complete.any():  # most bands: all of them at once
        level[complete], sigma[complete] = median_and_mad_sigma(flat[complete])
    for row in np.flatnonzero(~complete & good.any(axis=1)):  # bands with masked pixels, one by one
        level[row], sigma[row] = median_and_mad_sigma(flat[row][good[row]])
    return level, sigma


def _asinh_stretch(bands: np.ndarray, good: np.ndarray) -> np.ndarray:
    """asinh((x - sky) / (3 sigma)) / asinh(1000 / 3) per band, float32; bad pixels and noiseless bands 0."""
    level, sigma = sky_level_and_sigma(bands, good)
    ok = np.isfinite(sigma) & (sigma > 0)
    scale = np.where(ok, ASINH_SOFTENING_SIGMA * sigma, 1.0).astype(np.float32)[:, None, None]
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.subtract(bands, np.where(ok, level, 0.0).astype(np.float32)[:, None, None], dtype=np.float32)
        out /= scale
    np.arcsinh(out, out=out)
    out *= np.float32(1.0 / math.asinh(ASINH_FULL_SCALE_SIGMA / ASINH_SOFTENING_SIGMA))
    out[~ok] = 0.0
    out[~good] = 0.0
    return out


def _rescale(bands: np.ndarray, good: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(x - lo) / (hi - lo) clipped to [0, 1], in float32 (the output's precision); bad pixels and flat bands 0.

    Dividing (not multiplying by a reciprocal) maps a band's maximum to exactly 1 under minmax.
    """
    span = np.where(hi > lo, hi - lo, 0.0).astype(np.float32)
    ok = np.isfinite(lo) & np.isfinite(span) & (span > 0)
    offset = np.where(ok, lo, 0.0).astype(np.float32)[:, None, None]
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.subtract(bands, offset, dtype=np.float32)
        out /= np.where(ok, span, np.float32(1.0))[:, None, None]
    np.clip(out, 0.0, 1.0, out=out)
    out[~ok] = 0.0
    out[~good] = 0.0
    return out


def normalise_bands(images: np.ndarray, method: str, mask_value: float | None = CHALLENGE_MASK_VALUE) -> np.ndarray:
    """Normalise every band of every scene of (N, bands, H, W) on its own; float32, same shape.

    See the module docstring for the methods; masked pixels are 0 in the output.
    """
    if method not in METHODS:
        raise BadInputError(f"unknown normalisation {method!r}; known: {', '.join(METHODS)}")
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"expected scenes of shape (N, bands, H, W), got {x.shape}")
    flat = x.reshape(-1, *x.shape[2:])
    out = np.empty(flat.shape, dtype=np.float32)
    for start in range(0, len(flat), _CHUNK):
        bands = flat[start : start + _CHUNK]
        good = ~masked_pixels(bands, mask_value)
        if method == "none":
            out[start : start + len(bands)] = np.where(good, bands, np.float32(0.0))
            continue
        if method == "asinh":
            out[start : start + len(bands)] = _asinh_stretch(bands, good)
            continue
        limits = zscale_limits(bands, good) if method == "zscale" else _minmax_limits(bands, good)
        out[start : start + len(bands)] = _rescale(bands, good, *limits)
    return out.reshape(x.shape)
