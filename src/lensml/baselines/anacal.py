"""AnaCal (Li & Mandelbaum; the successor of FPFS) as an optional analytic shear-calibration baseline.

AnaCal measures each galaxy's FPFS ellipticity e = M22 / (M00 + C0) from its PSF-deconvolved
shapelet modes together with the analytic shear response R = de/dg, so the ensemble shear is
sum(e) / sum(R) per component; no simulation-based calibration.

The measurement is forced at given positions (`anacal.fpfs.process_image` with a detection
catalogue of ('y', 'x') pixel positions, the documented way of measuring at known positions).
We force it at each galaxy's measured centroid, not at the stamp centre: forcing at the centre
costs about -3% in m when galaxies sit up to half a pixel off it.

AnaCal is an optional dependency: ``pip install lensml[baselines]`` (or ``pip install anacal``).
"""

from __future__ import annotations

import hashlib

import galsim
import numpy as np
from tqdm import tqdm

from ..errors import BadInputError

INSTALL_HINT = "AnaCal is not installed: install lensml[baselines] (pip install anacal)"
SIGMA_SHAPELETS = 0.52  # arcsec, AnaCal's usual measurement kernel for sub-arcsec PSFs
C0_RATIO = 4.0  # C0 = C0_RATIO x the noise standard deviation of M00 when no c0 is given


def _import_anacal():
    try:
        import anacal  # noqa: F401
        from anacal import fpfs
    except ImportError:
        raise BadInputError(INSTALL_HINT) from None
    return fpfs


def stamp_centroid(image: np.ndarray) -> tuple[float, float]:
    """(x, y) of a stamp's adaptive-moments centroid, 0-based numpy pixel coordinates (array[0, 0] at (0, 0)).

    NaN where HSM fails to converge.
    """
    img = galsim.Image(np.ascontiguousarray(image, dtype=np.float64), xmin=0, ymin=0)
    result = galsim.hsm.FindAdaptiveMom(img, strict=False)
    if result.error_message or result.moments_status != 0:
        return float("nan"), float("nan")
    return float(result.moments_centroid.x), float(result.moments_centroid.y)


def _psf_centroid(psf: np.ndarray) -> tuple[float, float]:
    """The PSF stamp's centroid: adaptive moments, or the plain first moment where HSM fails."""
    x, y = stamp_centroid(psf)
    if np.isfinite(x) and np.isfinite(y):
        return x, y
    yy, xx = np.indices(psf.shape)
    total = psf.sum()
    return float((xx * psf).sum() / total), float((yy * psf).sum() / total)


def _square_even(psf: np.ndarray) -> np.ndarray:
    """The PSF as a float64 square stamp of even side (zero rows / columns added at the far edges), unit sum."""
    h, w = psf.shape
    n = max(h, w)
    n += n % 2
    out = np.zeros((n, n))
    out[:h, :w] = psf
    total = out.sum()
    if not np.isfinite(total) or total <= 0:
        raise BadInputError("AnaCal: a PSF stamp has no positive flux")
    return out / total


def anacal_shear(
    galaxies: np.ndarray,
    psfs: np.ndarray,
    pixel_scale: float,
    noise_sigma: float | np.ndarray | None = None,
    centres: np.ndarray | None = None,
    *,
    sigma_shapelets: float = SIGMA_SHAPELETS,
    c0: float | None = None,
    c0_ratio: float = C0_RATIO,
    noise_seeds: np.ndarray | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-stamp AnaCal ellipticity e (N, 2) and its shear response R (N, 2): the shear is sum(e) / sum(R).

    Parameters
    ----------
    galaxies : (N, H, W) sky-subtracted galaxy stamps; psfs : (N, h, w) their PSF stamps (or one (h, w)
        for all), at the galaxies' pixel scale. A PSF may sit anywhere in its stamp (GalSim's even-sized
        stamps centre it between pixels): its measured centroid is taken into account.
    pixel_scale : arcsec per pixel.
    noise_sigma : the pixel noise standard deviation, scalar or (N,); None or 0 for noise-free stamps.
        With noise, AnaCal's noise-bias correction adds a rotated pure-noise image of that sigma to each
        stamp: stamps with equal `noise_seeds` get the same one (give pair IDs for a paired design, so the
        two members of a pair stay identical but for the shear); by default stamp i uses seed (seed, i).
    centres : (N, 2) galaxy centres (x, y) in 0-based numpy pixel coordinates (array[0, 0] is at (0, 0));
        None measures each stamp's adaptive-moments centroid (galsim.hsm.FindAdaptiveMom) and forces the
        measurement there.
    sigma_shapelets : the shapelet kernel's scale in arcsec.
    c0 : the weight C0 in e = M22 / (M00 + C0), in M00's units; None takes c0_ratio x the noise standard
        deviation of M00 per stamp (0 for noise-free stamps). It never depends on the galaxy, as the
        analytic response requires.

    Returns
    -------
    (e, R): e[:, k] = e_{k+1}, R[:, k] = de_{k+1}/dg_{k+1}; NaN rows where the centroid could not be measured.
    """
    fpfs = _import_anacal()
    gal = np.asarray(galaxies, dtype=np.float64)
    if gal.ndim != 3:
        raise BadInputError(f"AnaCal: galaxies must be an (N, H, W) stack, got shape {gal.shape}")
    n = len(gal)
    psf = np.asarray(psfs, dtype=np.float64)
    if psf.ndim == 2:
        psf = np.broadcast_to(psf, (n, *psf.shape))
    if psf.ndim != 3 or len(psf) != n:
        raise BadInputError(f"AnaCal: psfs must be (N, h, w) or (h, w) for {n} galaxies, got shape {np.shape(psfs)}")
    if not pixel_scale > 0:
        raise BadInputError(f"AnaCal: pixel_scale must be positive, got {pixel_scale}")
    sigma = np.zeros(n) if noise_sigma is None else np.broadcast_to(np.asarray(noise_sigma, dtype=np.float64), (n,))
    if not (np.isfinite(sigma).all() and (sigma >= 0).all()):
        raise BadInputError("AnaCal: noise_sigma must be finite and >= 0")
    if centres is not None:
        centres = np.asarray(centres, dtype=np.float64)
        if centres.shape != (n, 2):
            raise BadInputError(f"AnaCal: centres must be (N, 2) = ({n}, 2), got {centres.shape}")
    if noise_seeds is not None and len(noise_seeds) != n:
        raise BadInputError(f"AnaCal: noise_seeds must hold one seed per stamp ({n}), got {len(noise_seeds)}")

    ref_mag_zero = fpfs.THRESHOLD_REF_MAG_ZERO  # process_image rescales c0 by 10^((mag_zero - this) / 2.5): 1
    psf_cache: dict[bytes, tuple[np.ndarray, float, float, float]] = {}

    def prepared(k: int) -> tuple[np.ndarray, float, float, float]:
        """(PSF stamp, x shift, y shift, M00 noise std for unit pixel variance), once per distinct PSF."""
        key = hashlib.sha1(np.ascontiguousarray(psf[k]).tobytes()).digest()
        if key not in psf_cache:
            stamp = _square_even(psf[k])
            px, py = _psf_centroid(stamp)
            npix = len(stamp)
            # AnaCal takes the PSF as centred on pixel (npix // 2, npix // 2): one centred elsewhere shifts the
            # deconvolved galaxy by (npix // 2 - centroid), so the forced position moves with it.
            task = fpfs.FpfsTask(npix=npix, pixel_scale=pixel_scale, sigma_shapelets=sigma_shapelets,
                                 psf_array=stamp, kmax_thres=fpfs.FpfsConfig.kmax_thres)
            task.prepare_covariance(variance=1.0)
            psf_cache[key] = (stamp, npix // 2 - px, npix // 2 - py, float(task.std_m00))
        return psf_cache[key]

    e = np.full((n, 2), np.nan)
    r = np.full((n, 2), np.nan)
    for i in tqdm(range(n), desc="AnaCal", unit="stamp", disable=not progress, leave=False):
        x, y = centres[i] if centres is not None else stamp_centroid(gal[i])
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        stamp, sx, sy, std_m00_unit = prepared(i)
        c0_i = c0 if c0 is not None else c0_ratio * std_m00_unit * sigma[i]
        config = fpfs.FpfsConfig(npix=len(stamp), sigma_shapelets1=sigma_shapelets, c0=float(c0_i))
        noise = None
        if sigma[i] > 0:
            rng = np.random.default_rng(int(noise_seeds[i]) if noise_seeds is not None else [int(seed), i])
            noise = rng.normal(0.0, sigma[i], gal[i].shape).astype(np.float32)
        detection = np.array([(y + sy, x + sx)], dtype=[("y", "f8"), ("x", "f8")])
        row = fpfs.process_image(
            fpfs_config=config, pixel_scale=pixel_scale, noise_variance=float(sigma[i] ** 2),
            mag_zero=ref_mag_zero, gal_array=np.ascontiguousarray(gal[i], dtype=np.float32), psf_array=stamp,
            noise_array=noise, detection=detection,
        )[0]
        e[i] = row["fpfs1_e1"], row["fpfs1_e2"]
        r[i] = row["fpfs1_de1_dg1"], row["fpfs1_de2_dg2"]
    return e, r


KERNEL_PER_PSF_FWHM = 0.75  # AnaCal's 0.52" kernel for 0.7" seeing, scaled with the PSF


def anacal_kernel_arcsec(psf: np.ndarray, pixel_scale: float) -> float:
    """A shapelet kernel scale that follows the PSF: 0.75 x its FWHM (from its adaptive-moments size).

    The kernel must stay wider than the PSF in Fourier space for the deconvolution to be stable;
    a fixed 0.52" fails for wide PSFs (-28% in m for LensNet's 2.85" PSF).
    """
    result = galsim.hsm.FindAdaptiveMom(galsim.Image(np.ascontiguousarray(psf, dtype=np.float64)), strict=False)
    if result.error_message:
        return SIGMA_SHAPELETS
    fwhm_arcsec = 2.0 * np.sqrt(2.0 * np.log(2.0)) * result.moments_sigma * pixel_scale
    return float(KERNEL_PER_PSF_FWHM * fwhm_arcsec)


def response_matrix(r: np.ndarray) -> np.ndarray:
    """(N, 2) diagonal responses as the (N, 2, 2) matrices `paired_shear_bias(response=...)` takes."""
    out = np.zeros((len(r), 2, 2))
    out[:, 0, 0], out[:, 1, 1] = r[:, 0], r[:, 1]
    return out
