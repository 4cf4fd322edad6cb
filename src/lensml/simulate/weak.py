"""Weak-lensing stamps with GalSim: a sheared, PSF-convolved galaxy and its PSF.

The defaults reproduce LensNet's set-up (GalSim demo5 / GREAT08 style): Moffat PSF with
beta 3 and FWHM 2.85 px truncated at 2 FWHM, exponential galaxy with half-light radius
0.98 times the PSF's, intrinsic distortion |e| ~ |N(0, 0.2)| capped at 0.6, reduced shear
g1, g2 ~ U(-0.4, 0.4), PSF distortion e1, e2 ~ U(-0.04, 0.04), a shift within 1 px, 40x40
stamps at 1 arcsec/px, and optional Poisson sky noise scaled to SNR 200. `PairDesign` draws the
paired ring design used to measure m and c (Gaussian noise, shared by the two members of a pair).

Every random number of stamp `i` comes from the seed sequence (seed, i), so any stamp can be
redrawn alone and the result does not depend on how the work is split between processes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import galsim
import numpy as np

from ..config import as_range, require
from ..errors import BadInputError

PSF_PROFILES = ("moffat", "gaussian")
GALAXY_PROFILES = ("exponential", "devaucouleurs", "sersic")
PRESETS = ("lensnet",)
Range = tuple[float, float]


@dataclass(frozen=True)
class WeakSimConfig:
    """Everything that defines the distribution of weak-lensing stamps. Angles in arcsec."""

    stamp_size: int = 40
    pixel_scale: float = 1.0  # arcsec / pixel
    psf_profile: str = "moffat"
    psf_fwhm: Range = (2.85, 2.85)  # arcsec; a range draws one per stamp (a network that generalises over PSFs)
    psf_beta: Range = (3.0, 3.0)  # Moffat only; fixed or a range
    psf_trunc_fwhm: float = 2.0  # Moffat truncation radius in units of the FWHM; 0 = none
    psf_e_max: float = 0.04  # PSF distortion e1, e2 each ~ U(-max, max)
    galaxy_profile: str = "exponential"
    sersic_n: Range = (0.5, 4.0)  # Sersic only, drawn uniformly
    sersic_n_step: float = 0.05  # n is rounded to this grid so GalSim's profile cache is reused
    hlr: Range | None = None  # arcsec; None means 0.98 times the PSF's half-light radius
    e_int_sigma: float = 0.2  # intrinsic distortion |e| ~ |N(0, sigma)|, 0 for round galaxies
    e_int_max: float = 0.6
    shear_max: float = 0.4  # reduced shear g1, g2 each ~ U(-max, max)
    shift_radius: float = 1.0  # pixels; centroid uniform in a disc of this radius
    noise: bool = False
    snr: Range = (200.0, 200.0)  # fixed or uniform in a range
    sky_level: float = 1.0e6  # ADU / arcsec^2, subtracted Poisson sky

    def __post_init__(self) -> None:
        object.__setattr__(self, "snr", as_range(self.snr, "snr"))
        object.__setattr__(self, "sersic_n", as_range(self.sersic_n, "sersic_n"))
        object.__setattr__(self, "psf_fwhm", as_range(self.psf_fwhm, "psf_fwhm"))
        object.__setattr__(self, "psf_beta", as_range(self.psf_beta, "psf_beta"))
        if self.hlr is not None:
            object.__setattr__(self, "hlr", as_range(self.hlr, "hlr"))
        checks = [
            (self.stamp_size >= 8, "stamp_size must be at least 8 pixels"),
            (self.pixel_scale > 0, "pixel_scale must be positive"),
            (self.psf_profile in PSF_PROFILES, f"psf_profile must be one of {', '.join(PSF_PROFILES)}"),
            (self.galaxy_profile in GALAXY_PROFILES, f"galaxy_profile must be one of {', '.join(GALAXY_PROFILES)}"),
            (self.psf_fwhm[0] > 0, "psf_fwhm must be positive"),
            (self.psf_beta[0] > 1.1, "psf_beta must be above 1.1"),
            (self.psf_trunc_fwhm == 0 or self.psf_trunc_fwhm >= 1, "psf_trunc_fwhm must be 0 or at least 1"),
            (0 <= self.psf_e_max < 0.5, "psf_e_max must be in [0, 0.5)"),
            (0.3 <= self.sersic_n[0] and self.sersic_n[1] <= 6.2, "sersic_n must lie within [0.3, 6.2]"),
            (self.sersic_n_step >= 0, "sersic_n_step must be >= 0"),
            (self.hlr is None or self.hlr[0] > 0, "hlr must be positive"),
            (self.e_int_sigma >= 0, "e_int_sigma must be >= 0"),
            (0 < self.e_int_max < 1, "e_int_max must be in (0, 1)"),
            (0 <= self.shear_max < 0.7, "shear_max must be in [0, 0.7)"),
            (self.shift_radius >= 0, "shift_radius must be >= 0"),
            (self.snr[0] > 0, "snr must be positive"),
            (self.sky_level > 0, "sky_level must be positive"),
        ]
        require(checks, prefix="weak simulation: ")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def psf_varies(self) -> bool:
        return self.psf_fwhm[0] != self.psf_fwhm[1] or self.psf_beta[0] != self.psf_beta[1]


def preset(name: str) -> WeakSimConfig:
    """Named starting points; `lensnet` is LensNet's distribution."""
    if name not in PRESETS:
        raise BadInputError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return WeakSimConfig()


def stamp_rng(seed: int, index: int) -> np.random.Generator:
    """The generator for stamp `index`: independent of every other stamp and of the process."""
    return np.random.default_rng([int(seed), int(index)])


def draw_params(config: WeakSimConfig, seed: int, index: int, psf_hlr: float) -> dict[str, float]:
    """Draw the parameters of one stamp. The order of draws is part of the file format."""
    rng = stamp_rng(seed, index)
    g1, g2 = rng.uniform(-config.shear_max, config.shear_max, size=2)
    e1, e2 = rng.uniform(-config.psf_e_max, config.psf_e_max, size=2)
    lo, hi = config.hlr if config.hlr is not None else (0.98 * psf_hlr, 0.98 * psf_hlr)
    hlr = rng.uniform(lo, hi)
    e_int = abs(rng.normal(0.0, config.e_int_sigma)) if config.e_int_sigma > 0 else 0.0
    while e_int > config.e_int_max:
        e_int = abs(rng.normal(0.0, config.e_int_sigma))
    beta_int_deg = rng.uniform(0.0, 180.0)
    radius = config.shift_radius * math.sqrt(rng.uniform())
    phi = rng.uniform(0.0, 2.0 * math.pi)
    params = {
        "g1": float(g1), "g2": float(g2), "e1": float(e1), "e2": float(e2),
        "hlr": float(hlr), "e_int": float(e_int), "beta_int_deg": float(beta_int_deg),
        "dx": radius * math.cos(phi), "dy": radius * math.sin(phi),
    }
    n_lo, n_hi = config.sersic_n
    n = rng.uniform(n_lo, n_hi)
    if config.galaxy_profile == "sersic":
        step = config.sersic_n_step
        params["sersic_n"] = float(min(max(round(n / step) * step, n_lo), n_hi)) if step > 0 else float(n)
    snr = rng.uniform(*config.snr)
    noise_seed = int(rng.integers(1, 2**31 - 1))
    if config.noise:
        params["snr"] = float(snr)
        params["noise_seed"] = noise_seed
    if config.psf_varies:  # drawn last, so sets with one PSF keep their stamps
        params["psf_fwhm"] = float(rng.uniform(*config.psf_fwhm))
        params["psf_beta"] = float(rng.uniform(*config.psf_beta))
    return params


@dataclass(frozen=True)
class PairDesign:
    """The paired ring design of shear calibration: shape noise and pixel noise cancel within a galaxy's stamps.

    Base galaxy b is drawn at `ring` orientations (its intrinsic shape rotated in steps of 180/ring
    degrees, so spin-2 shape noise cancels over the ring) and, at each, sheared by +shear and -shear
    along one component (1 for even b, 2 for odd b) with the same noise realisation: the two members
    of a pair differ by the shear alone. Stamp i is base i // (2 ring), orientation (i // 2) % ring,
    sign + for even i.
    """

    ring: int = 4
    shear: float = 0.02

    def __post_init__(self) -> None:
        require([(self.ring >= 1, "ring must be at least 1"),
                 (0 < self.shear < 0.5, "pair shear must be in (0, 0.5)")], prefix="paired design: ")

    @property
    def stamps_per_galaxy(self) -> int:
        return 2 * self.ring

    def locate(self, index: int) -> dict[str, int]:
        """Base galaxy, pair, orientation, sign and sheared component of stamp `index`."""
        base = index // self.stamps_per_galaxy
        ring = (index // 2) % self.ring
        return {"base": base, "pair": base * self.ring + ring, "ring": ring, "sign": 1 if index % 2 == 0 else -1,
                "component": 1 + base % 2}


def draw_pair_params(config: WeakSimConfig, design: PairDesign, seed: int, index: int,
                     psf_hlr: float) -> dict[str, float]:
    """Parameters of stamp `index` of a paired design: its base galaxy's draws, rotated and sheared by +/-G."""
    where = design.locate(index)
    params = draw_params(config, seed, where["base"], psf_hlr)
    params["beta_int_deg"] = float((params["beta_int_deg"] + where["ring"] * 180.0 / design.ring) % 180.0)
    g = where["sign"] * design.shear
    params["g1"], params["g2"] = (g, 0.0) if where["component"] == 1 else (0.0, g)
    if config.noise:  # one realisation per pair, another for each orientation
        state = np.random.SeedSequence([params["noise_seed"], where["ring"]]).generate_state(1)[0]
        params["noise_seed"] = int(state % (2**31 - 2)) + 1
    params.update(where)
    return params


class WeakStampRenderer:
    """Draws stamps for one configuration; builds the PSF and unit profiles once per process."""

    def __init__(self, config: WeakSimConfig):
        self.config = config
        self.psf = self._round_psf(sum(config.psf_fwhm) / 2, sum(config.psf_beta) / 2)  # the nominal PSF
        self.psf_hlr = float(self.psf.half_light_radius)  # default galaxy size: 0.98 x the nominal PSF's
        self._unit_profiles: dict[float, galsim.GSObject] = {}
        self._last_psf: tuple = (None, None)
        self._last_sigma: tuple = (None, 0.0)

    def _round_psf(self, fwhm: float, beta: float) -> galsim.GSObject:
        if self.config.psf_profile == "moffat":
            return galsim.Moffat(beta=beta, fwhm=fwhm, trunc=self.config.psf_trunc_fwhm * fwhm)
        return galsim.Gaussian(fwhm=fwhm)

    def _galaxy(self, params: dict[str, float]) -> galsim.GSObject:
        profile = self.config.galaxy_profile
        key = params.get("sersic_n", 0.0)
        unit = self._unit_profiles.get(key)
        if unit is None:
            if profile == "exponential":
                unit = galsim.Exponential(half_light_radius=1.0)
            elif profile == "devaucouleurs":
                unit = galsim.DeVaucouleurs(half_light_radius=1.0)
            else:
                unit = galsim.Sersic(n=key, half_light_radius=1.0)
            self._unit_profiles[key] = unit
        gal = unit.dilate(params["hlr"])
        if params["e_int"] > 0:
            gal = gal.shear(e=params["e_int"], beta=params["beta_int_deg"] * galsim.degrees)
        scale = self.config.pixel_scale
        return gal.shear(g1=params["g1"], g2=params["g2"]).shift(params["dx"] * scale, params["dy"] * scale)

    def render(self, params: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Return (galaxy, psf) float32 arrays of one stamp, pixel response included."""
        cfg = self.config
        psf, psf_image = self._psf(params)
        size, scale = cfg.stamp_size, cfg.pixel_scale
        gal_image = galsim.Convolve(self._galaxy(params), psf).drawImage(nx=size, ny=size, scale=scale)
        if cfg.noise and "pair" in params:
            noise = np.random.default_rng(int(params["noise_seed"])).standard_normal(gal_image.array.shape)
            gal_image.array[:] += noise * self.pair_noise_sigma(params)
        elif cfg.noise:
            noise = galsim.PoissonNoise(galsim.BaseDeviate(int(params["noise_seed"])), sky_level=cfg.sky_level * scale**2)
            gal_image.addNoiseSNR(noise, params["snr"], preserve_flux=False)
        return gal_image.array.astype(np.float32), psf_image

    def _psf(self, params: dict[str, float]) -> tuple[galsim.GSObject, np.ndarray]:
        """The stamp's PSF and its image; the last one is kept, since a paired design's stamps share it."""
        key = (params["e1"], params["e2"], params.get("psf_fwhm"), params.get("psf_beta"))
        if self._last_psf[0] != key:
            psf = self._round_psf(params["psf_fwhm"], params["psf_beta"]) if "psf_fwhm" in params else self.psf
            psf = psf.shear(e1=params["e1"], e2=params["e2"])
            size, scale = self.config.stamp_size, self.config.pixel_scale
            self._last_psf = (key, (psf, psf.drawImage(nx=size, ny=size, scale=scale).array.astype(np.float32)))
        return self._last_psf[1]

    def noise_sigma(self, params: dict[str, float]) -> float:
        """The stamp's background noise per pixel: the pair's Gaussian sigma, or the sky's Poisson
        sigma (the galaxy is scaled to the SNR against a fixed sky)."""
        if "pair" in params:
            return self.pair_noise_sigma(params)
        return math.sqrt(self.config.sky_level) * self.config.pixel_scale

    def pair_noise_sigma(self, params: dict[str, float]) -> float:
        """Gaussian noise whose SNR (GalSim's sqrt(sum I^2) / sigma) is `snr` for the unsheared galaxy, so
        both members of a pair get the same sigma, and with the same seed the same noise."""
        if self._last_sigma[0] != params["pair"]:
            psf = self._psf(params)[0]
            size, scale = self.config.stamp_size, self.config.pixel_scale
            unsheared = self._galaxy({**params, "g1": 0.0, "g2": 0.0})
            image = galsim.Convolve(unsheared, psf).drawImage(nx=size, ny=size, scale=scale).array
            self._last_sigma = (params["pair"], float(np.sqrt(np.sum(image.astype(np.float64) ** 2)) / params["snr"]))
        return self._last_sigma[1]
