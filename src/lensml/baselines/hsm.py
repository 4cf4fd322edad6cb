"""The classical baseline: GalSim's HSM PSF correction on the same stamps the network sees."""

from __future__ import annotations

import galsim
import numpy as np
from tqdm import tqdm

METHODS = ("REGAUSS", "KSB", "BJ", "LINEAR")
DISTORTION_METHODS = ("REGAUSS", "BJ", "LINEAR")  # these return a distortion e; KSB a shear estimate


def hsm_measure(
    galaxies: np.ndarray, psfs: np.ndarray, method: str = "REGAUSS", pixel_scale: float = 1.0, progress: bool = True
) -> np.ndarray:
    """Per-stamp PSF-corrected (e1, e2) for distortion methods, (g1, g2) for KSB; NaN rows where HSM fails.

    The stamps must be sky-subtracted and share the PSF's pixel scale.
    """
    if method not in METHODS:
        raise ValueError(f"unknown HSM method {method!r}")
    out = np.full((len(galaxies), 2), np.nan)
    for i in tqdm(range(len(galaxies)), desc=f"HSM {method}", unit="stamp", disable=not progress, leave=False):
        gal = galsim.Image(np.ascontiguousarray(galaxies[i], dtype=np.float64), scale=pixel_scale)
        psf = galsim.Image(np.ascontiguousarray(psfs[i], dtype=np.float64), scale=pixel_scale)
        result = galsim.hsm.EstimateShear(gal, psf, shear_est=method, strict=False)
        if result.error_message:
            continue
        if result.meas_type == "g":
            out[i] = (result.corrected_g1, result.corrected_g2)
        else:
            out[i] = (result.corrected_e1, result.corrected_e2)
    return out


def hsm_shear(
    galaxies: np.ndarray, psfs: np.ndarray, method: str = "REGAUSS", pixel_scale: float = 1.0, progress: bool = True
) -> np.ndarray:
    """Per-stamp reduced shear (g1, g2): a distortion e becomes g = e / (1 + sqrt(1 - |e|^2)).

    That is each galaxy's own shape as a shear, right for round galaxies (the per-stamp regression);
    for an ensemble with shape noise use `ensemble_shear`.
    """
    return per_galaxy_shear(hsm_measure(galaxies, psfs, method, pixel_scale, progress), method)


def per_galaxy_shear(values: np.ndarray, method: str) -> np.ndarray:
    """`hsm_measure`'s output as one reduced shear per galaxy (see `hsm_shear`)."""
    if method not in DISTORTION_METHODS:
        return values
    e_sq = np.sum(values**2, axis=1)
    with np.errstate(invalid="ignore"):
        g = values / (1.0 + np.sqrt(1.0 - e_sq))[:, None]
    g[~(e_sq < 1.0)] = np.nan
    return g


def ensemble_shear(values: np.ndarray, method: str) -> tuple[np.ndarray, float]:
    """Shear estimates whose ensemble mean is the shear, and the responsivity used.

    Distortions are divided by the responsivity 2 (1 - e_rms^2), e_rms^2 the mean squared
    distortion per component over the sample (Bernstein & Jarvis 2002), as surveys use HSM.
    KSB's estimates are shears already (responsivity 1).
    """
    if method not in DISTORTION_METHODS:
        return values, 1.0
    ok = np.isfinite(values).all(axis=1)
    responsivity = 2.0 * (1.0 - float(np.mean(values[ok] ** 2)))
    return values / responsivity, responsivity
