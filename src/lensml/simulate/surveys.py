"""Strong-lens scene settings: the lens populations, and how a survey of the registry observes them.

Flux unit: the challenge's pixel values. Measured on the real challenge samples, background noise
per pixel is 7.8e-13 (VIS), 1.53e-12 (R), 3.2e-12 (I), 1.25e-12 (G) and 2.0e-12 (U); with these and
the published survey depths (Euclid VIS 24.5 at 10 sigma, KiDS u/g/r/i 24.2/25.1/25.0/23.7 at
5 sigma in 2" apertures) the unit is within 0.5 mag of 1 AB maggie in every band, so a flux f has
AB magnitude -2.5 log10(f) + zero_point with zero_point 0. The central galaxies of the samples are
then of magnitude 20-24 (space) and 18-23 (ground, r), which set the faint end of the magnitude
ranges below. Deflectors reach 2.8 mag brighter than the challenge's (an L* early-type galaxy at
z = 0.2, theta_E about 1", has r of about 18.5-19): finders trained without them miss the arcs on
bright deflectors.
One ground sample in six has about 2.7 times the usual noise in every band (a shallower tile), and
two in six have a masked (value 100) square or edge strip in one band.

Magnitudes are drawn in the survey's reference band (r, else VIS, else the first band); every
other band adds a colour drawn from `FILTER_COLOURS` by the band's name, so a survey with other
filters needs no new population.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..config import as_range, replace_from
from ..errors import BadInputError
from ..surveys import Survey, get_survey

Range = tuple[float, float]
PSF_PROFILES = ("gaussian", "moffat")
PSF_LEVELS = 5  # distinct seeings of a jittered PSF (one renderer each): 1 - j, ..., 1 + j
# Non-lens kinds. The first four differ from a lens only in the source; the last three are hard
# look-alikes with no lensing at all: a blue galaxy beside the deflector (often tangential, arc-like),
# a merging pair of similar galaxies, and star-forming knots on a ring or spiral around the galaxy.
NONLENS_KINDS = ("no_source", "offset_source", "small_mass", "field", "companion", "merger", "ring")
# Per-band settings: one value per band, in the band order of the files (Band1, Band2, ...).
PER_BAND = ("psf_fwhm", "noise_sigma")
COLOURS = ("lens_colour", "source_colour", "neighbour_colour")
REFERENCE_BANDS = ("r", "R", "VIS")  # magnitudes are drawn in the first of these a survey has

@dataclass(frozen=True)
class StrongSimConfig:
    """Everything that defines the distribution of strong-lens scenes. Angles in arcsec, magnitudes AB.

    Colours are ranges of m_band - m_reference_band, one per band.
    """

    survey: str = "space"  # a name in the survey registry (lensml.surveys)
    bands: tuple[str, ...] = ("VIS",)
    reference_band: int = 0  # magnitudes are drawn in this band; its colours are (0, 0)
    pixel_scale: float = 0.1  # arcsec / pixel
    image_size: int = 101  # side of the square the scene is rendered on
    cutout_shape: tuple[int, int] | None = None  # (rows, columns) cut from its centre; None: the whole square
    psf_profile: str = "gaussian"
    psf_fwhm: tuple[float, ...] = (0.18,)
    psf_beta: float = 3.0  # Moffat only
    psf_supersampled: bool = True  # convolve at the supersampled scale (needed when FWHM < ~3 pixels)
    psf_jitter: float = 0.0  # per-scene seeing: every band's FWHM x U(1 - j, 1 + j), in PSF_LEVELS steps
    noise_sigma: tuple[float, ...] = (7.8e-13,)  # background noise per pixel, flux units
    noisy_fraction: float = 0.0  # share of scenes with deeper-than-usual noise (shallower tiles)
    noisy_factor: Range = (2.0, 3.0)  # their noise multiplier, the same in every band
    poisson_flux_sigma: float = 100.0  # a pixel this many sigma above the sky has twice the variance; 0 = none
    zero_point: float = 0.0  # AB magnitude of flux 1
    supersampling: int = 3  # sub-pixels per pixel side (odd)
    adaptive_tolerance: float = 0.02  # supersample pixels whose centre sample may be off by this many sigma
    mask_fraction: float = 0.0  # share of scenes with a masked region (value mask_value) in one band
    mask_value: float = 100.0
    theta_e: Range = (0.5, 5.0)  # Einstein radius of the deflector, log-uniform
    lens_q: Range = (0.5, 0.95)  # axis ratio of the mass; the light follows it within 0.05
    shear_max: float = 0.08  # external shear |gamma| ~ U(0, max)
    lens_mag: Range = (19.0, 24.3)  # deflector magnitude at theta_E = 1"; brighter by 5 log10(theta_E)
    lens_n: Range = (2.5, 5.5)
    lens_re_ratio: Range = (0.4, 1.0)  # deflector half-light radius (major axis) / theta_E
    source_mag: Range = (22.5, 27.5)  # unlensed source magnitude (the faint end: arcs below the noise)
    source_re: Range = (0.08, 0.4)  # source half-light radius, log-uniform
    source_n: Range = (0.5, 2.0)
    source_q: Range = (0.4, 0.95)
    source_offset: Range = (0.0, 0.8)  # lenses: source distance from the lens axis / theta_E, uniform in area
    clumps_max: int = 3  # star-forming clumps on the source, 0..max per source
    clump_re: Range = (0.03, 0.08)
    clump_flux: Range = (0.05, 0.2)  # each clump's share of the source flux
    neighbours_mean: float = 3.0  # Poisson mean of unlensed field objects per scene
    neighbours_max: int = 6
    neighbour_mag: Range = (21.0, 26.0)
    neighbour_re: Range = (0.1, 0.6)  # log-uniform
    star_fraction: float = 0.2  # share of field objects that are compact (stars, compact galaxies)
    field_mag: Range = (19.5, 23.0)  # non-lens kind "field": a central field galaxy, no deflector
    field_re: Range = (0.3, 1.2)
    small_theta_e: Range = (0.02, 0.08)  # non-lens kind "small_mass": deflector too light to split the source
    min_lensed_pixels: int = 0  # label rule: a lens needs this many pixels where its arcs exceed 1 sigma (0: every lens)
    nonlens_mix: tuple[float, ...] = (0.25, 0.15, 0.1, 0.1, 0.15, 0.1, 0.15)  # shares of NONLENS_KINDS among non-lenses
    lens_colour: tuple[Range, ...] = ((0.0, 0.0),)
    source_colour: tuple[Range, ...] = ((0.0, 0.0),)
    neighbour_colour: tuple[Range, ...] = ((0.0, 0.0),)

    def __post_init__(self) -> None:
        nb = len(self.bands)
        fix = object.__setattr__
        fix(self, "bands", tuple(str(b) for b in self.bands))
        for name in ("noisy_factor", "theta_e", "lens_q", "lens_mag", "lens_n", "lens_re_ratio", "source_mag",
                     "source_re", "source_n", "source_q", "source_offset", "clump_re", "clump_flux",
                     "neighbour_mag", "neighbour_re", "field_mag", "field_re", "small_theta_e"):
            fix(self, name, as_range(getattr(self, name), name))
        for name in PER_BAND:
            value = getattr(self, name)
            value = (value,) * nb if isinstance(value, (int, float)) else tuple(float(v) for v in value)
            if len(value) != nb:
                raise BadInputError(f"strong simulation: {name} needs one value per band ({nb}), got {len(value)}")
            fix(self, name, value)
        for name in COLOURS:
            value = tuple(as_range(v, name) for v in getattr(self, name))
            if len(value) != nb:
                raise BadInputError(f"strong simulation: {name} needs one range per band ({nb}), got {len(value)}")
            fix(self, name, value)
        fix(self, "nonlens_mix", tuple(float(v) for v in self.nonlens_mix))
        if self.cutout_shape is not None:
            fix(self, "cutout_shape", tuple(int(v) for v in self.cutout_shape))
        positive = ("pixel_scale", "psf_beta", "theta_e", "lens_q", "lens_n", "lens_re_ratio", "source_re",
                    "source_n", "source_q", "clump_re", "neighbour_re", "field_re", "small_theta_e", "noisy_factor")
        checks = [
            (nb >= 1, "give at least one band"),
            (0 <= self.reference_band < nb, f"reference_band must be a band index, 0 to {nb - 1}"),
            (self.image_size >= 16, "image_size must be at least 16 pixels"),
            (self.cutout_shape is None or (len(self.cutout_shape) == 2 and 16 <= min(self.cutout_shape)
                                           and max(self.cutout_shape) <= self.image_size),
             "cutout_shape must be (rows, columns), each from 16 to image_size"),
            (self.psf_profile in PSF_PROFILES, f"psf_profile must be one of {', '.join(PSF_PROFILES)}"),
            (all(f > 0 for f in self.psf_fwhm), "psf_fwhm must be positive"),
            (all(s > 0 for s in self.noise_sigma), "noise_sigma must be positive"),
            (all(min(getattr(self, p)) > 0 for p in positive[2:]) and self.pixel_scale > 0 and self.psf_beta > 1.5,
             f"{', '.join(positive)} must be positive (psf_beta above 1.5)"),
            (self.supersampling >= 1 and self.supersampling % 2 == 1, "supersampling must be an odd number >= 1"),
            (self.adaptive_tolerance >= 0, "adaptive_tolerance must be >= 0"),
            (0 <= self.psf_jitter < 1, "psf_jitter must lie in [0, 1)"),
            (self.min_lensed_pixels >= 0, "min_lensed_pixels must be >= 0"),
            (self.poisson_flux_sigma >= 0, "poisson_flux_sigma must be >= 0"),
            (0 <= self.noisy_fraction <= 1 and 0 <= self.mask_fraction <= 1 and 0 <= self.star_fraction <= 1,
             "noisy_fraction, mask_fraction and star_fraction must lie in [0, 1]"),
            (self.lens_q[1] < 1 and self.source_q[1] <= 1, "axis ratios must be below 1"),
            (0.36 <= min(self.lens_n[0], self.source_n[0]) and max(self.lens_n[1], self.source_n[1]) <= 8,
             "Sersic indices must lie within [0.36, 8]"),
            (0 <= self.shear_max < 0.5, "shear_max must lie in [0, 0.5)"),
            (self.source_offset[0] >= 0, "source_offset must be >= 0"),
            (self.clumps_max >= 0 and self.neighbours_max >= 0 and self.neighbours_mean >= 0,
             "clumps_max, neighbours_max and neighbours_mean must be >= 0"),
            (0 <= self.clump_flux[1] * self.clumps_max < 1, "clumps together must take less than all the source flux"),
            (len(self.nonlens_mix) == len(NONLENS_KINDS) and min(self.nonlens_mix) >= 0 and sum(self.nonlens_mix) > 0,
             f"nonlens_mix needs {len(NONLENS_KINDS)} shares >= 0 ({', '.join(NONLENS_KINDS)})"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInputError(f"strong simulation: {message}")

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the written cutouts."""
        return self.cutout_shape or (self.image_size, self.image_size)

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The centred cutout of an image rendered on the square (last two axes)."""
        rows, cols = self.shape
        top, left = (self.image_size - rows) // 2, (self.image_size - cols) // 2
        return image[..., top : top + rows, left : left + cols]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_seeing(self, factor: float) -> "StrongSimConfig":
        """The same settings with every band's PSF FWHM multiplied by `factor` (one scene's seeing)."""
        if factor == 1.0:
            return self
        return dataclasses.replace(self, psf_fwhm=tuple(f * factor for f in self.psf_fwhm), psf_jitter=0.0)

    def flux(self, mag: np.ndarray | float) -> np.ndarray:
        """Total flux (pixel units) of an AB magnitude."""
        return np.power(10.0, -0.4 * (np.asarray(mag, dtype=np.float64) - self.zero_point))


# The two lens populations (StrongSimConfig fields): what the challenge's Space and Ground sets hold.
POPULATIONS: dict[str, dict[str, Any]] = {
    "space": {},  # the StrongSimConfig defaults
    "ground": {
        "theta_e": (0.5, 5.0), "lens_mag": (18.7, 24.0), "source_mag": (22.5, 26.5), "source_re": (0.1, 0.5),
        "clump_re": (0.05, 0.12), "neighbour_mag": (20.5, 25.5), "neighbour_re": (0.15, 0.8),
        "field_mag": (18.5, 22.0), "field_re": (0.4, 1.5), "small_theta_e": (0.03, 0.1),
    },
}

# Colour ranges m_band - m_r by filter name: (lens, source, neighbour). Early-type deflectors at
# z ~ 0.3-0.6 are red, star-forming sources at z ~ 1-3 blue, field objects anything between.
_OPTICAL = {
    "u": ((1.8, 3.2), (0.0, 0.9), (0.0, 3.0)),
    "g": ((0.8, 1.6), (-0.1, 0.4), (-0.1, 1.6)),
    "r": ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0)),
    "i": ((-0.8, -0.35), (-0.3, 0.1), (-0.8, 0.1)),
    "z": ((-1.3, -0.6), (-0.4, 0.1), (-1.3, 0.1)),
}
FILTER_COLOURS: dict[str, tuple[Range, Range, Range]] = {
    **_OPTICAL, **{k.upper(): v for k, v in _OPTICAL.items()},
    "y": ((-1.5, -0.7), (-0.5, 0.1), (-1.5, 0.1)),  # Rubin / HSC y (0.97 micron)
    "VIS": ((-0.5, -0.2), (-0.2, 0.05), (-0.5, 0.05)),  # Euclid VIS (r + i + z)
    "Y": ((-1.6, -0.9), (-0.6, 0.1), (-1.6, 0.1)),  # Euclid NISP (1.1, 1.35, 1.8 micron)
    "J": ((-1.9, -1.1), (-0.8, 0.1), (-1.9, 0.1)),
    "H": ((-2.3, -1.4), (-1.0, 0.1), (-2.3, 0.1)),
}


def _colours(bands: tuple[str, ...], reference: int) -> dict[str, tuple[Range, ...]]:
    """Colour ranges per band relative to the reference band (about its mid colour); unknown filters are grey."""
    grey = ((0.0, 0.0),) * 3
    table = [FILTER_COLOURS.get(b, grey) for b in bands]
    out = {}
    for k, name in enumerate(COLOURS):
        mid = sum(table[reference][k]) / 2.0
        out[name] = tuple((0.0, 0.0) if b == reference else (t[k][0] - mid, t[k][1] - mid) for b, t in enumerate(table))
    return out


def strong_config(survey: str | Survey, image_size: int | tuple[int, int] | None = None,
                  overrides: Mapping[str, Any] | None = None, source: str = "config") -> StrongSimConfig:
    """The simulation preset of a registered survey, at `image_size` pixels (N or (rows, columns)), with
    `overrides` applied.

    The survey gives bands, pixel scale, PSF, noise and mask value; its population gives the lenses;
    its own `simulation` settings, then `overrides` (field name -> value, lists for ranges), come last.
    A cutout that is not square is rendered on the square of its longer side and cut from its centre.
    """
    spec = survey if isinstance(survey, Survey) else get_survey(survey)
    size = spec.image_size if image_size is None else image_size
    rows, cols = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    names = spec.band_names
    reference = next((names.index(b) for b in REFERENCE_BANDS if b in names), 0)
    base = StrongSimConfig(
        survey=spec.name, bands=names, reference_band=reference, pixel_scale=spec.pixel_scale_arcsec,
        image_size=max(rows, cols), cutout_shape=None if rows == cols else (rows, cols), psf_fwhm=tuple(b.psf_fwhm_arcsec for b in spec.bands),
        noise_sigma=tuple(b.noise_sigma for b in spec.bands),
        mask_value=100.0 if spec.mask_value is None else spec.mask_value, **_colours(names, reference),
    )
    config = replace_from(base, POPULATIONS[spec.population], f"population {spec.population}")
    config = replace_from(config, dict(spec.simulation), f"survey {spec.name}: simulation")
    if spec.mask_value is None and config.mask_fraction > 0:
        raise BadInputError(f"survey {spec.name}: mask_fraction needs a mask_value")
    if overrides:
        if "survey" in overrides and overrides["survey"] != spec.name:
            raise BadInputError(f"{source}: survey {overrides['survey']!r} does not match --survey {spec.name}")
        config = replace_from(config, dict(overrides), source)
    return config


def band_file(survey: Survey, band_index: int, image_id: int) -> str:
    """Path of one band of one scene, relative to the data folder (challenge layout)."""
    band = survey.bands[band_index]
    return f"Public/{band.folder}/{band.filename(image_id)}"


def band_header(config: StrongSimConfig, band_index: int) -> dict[str, Any]:
    """FITS keys of one band: the challenge's TAN WCS (CDELT in degrees) plus band, pixel scale and PSF."""
    (rows, cols), scale = config.shape, config.pixel_scale
    deg = scale / 3600.0
    return {
        "WCSAXES": 2, "CRPIX1": (cols + 1) / 2.0, "CRPIX2": (rows + 1) / 2.0, "CRVAL1": 0.0, "CRVAL2": 0.0,
        "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CUNIT1": "deg", "CUNIT2": "deg",
        "CDELT1": -deg, "CDELT2": deg,
        "BAND": (config.bands[band_index], "filter"),
        "PIXSCALE": (scale, "arcsec / pixel"),
        "PSF": (config.psf_profile, "PSF profile"),
        "PSFFWHM": (config.psf_fwhm[band_index], "PSF FWHM, arcsec"),
        "NOISE": (config.noise_sigma[band_index], "background noise per pixel (usual depth)"),
    }


def psf_profile_1d(config: StrongSimConfig, band_index: int, offsets_arcsec: np.ndarray) -> np.ndarray:
    """Gaussian PSF along one axis (the Gaussian is separable), unnormalised."""
    sigma = config.psf_fwhm[band_index] / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    return np.exp(-0.5 * (offsets_arcsec / sigma) ** 2)


def psf_matrix(config: StrongSimConfig, band_index: int, ss: int) -> np.ndarray:
    """(n, n ss) matrix G of a Gaussian PSF: G @ image @ G.T blurs an image sampled at ss x ss
    sub-pixels and bins it to pixels in one go (the Gaussian is separable); edges are zero-padded."""
    n = config.image_size
    size = n * ss
    offsets = np.arange(-size + 1, size) * (config.pixel_scale / ss)
    g = psf_profile_1d(config, band_index, offsets)
    g[np.abs(offsets) > 3.0 * config.psf_fwhm[band_index]] = 0.0
    g /= g.sum()
    toeplitz = g[np.arange(size)[:, None] - np.arange(size)[None, :] + size - 1]
    return toeplitz.reshape(n, ss, size).mean(1)


def psf_image(config: StrongSimConfig, band_index: int, scale: float, radius: int | None = None) -> np.ndarray:
    """PSF sampled at pixel centres of a grid of `scale` arcsec, normalised to sum 1.

    By default the kernel reaches 3 FWHM (Gaussian: 7 sigma; Moffat beta 3: all but ~1% of the light).
    """
    fwhm = config.psf_fwhm[band_index]
    radius = int(math.ceil(3.0 * fwhm / scale)) if radius is None else radius
    offsets = np.arange(-radius, radius + 1) * scale
    if config.psf_profile == "gaussian":
        g = psf_profile_1d(config, band_index, offsets)
        kernel = np.outer(g, g)
    else:
        beta = config.psf_beta
        alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
        r2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
        kernel = (1.0 + r2 / alpha**2) ** (-beta)
    return kernel / kernel.sum()


def noise_variance(config: StrongSimConfig, clean: np.ndarray, noise_factor: float) -> np.ndarray:
    """Per-pixel variance of (bands, H, W): sky (scaled by the scene's noise factor) plus object shot noise."""
    sigma = np.asarray(config.noise_sigma, dtype=np.float32)[:, None, None]
    var = (sigma * np.float32(noise_factor)) ** 2
    if config.poisson_flux_sigma > 0:
        var = var + np.maximum(clean, 0) * (sigma / np.float32(config.poisson_flux_sigma))
    return var.astype(np.float32)


def observe(config: StrongSimConfig, clean: np.ndarray, noise_factor: float, noise_seed: int,
            mask: tuple[int, int, int, int, int] | None) -> np.ndarray:
    """Add noise to a noise-free (bands, H, W) scene and set masked pixels to the mask value."""
    rng = np.random.default_rng(noise_seed)
    normal = rng.standard_normal(clean.shape, dtype=np.float32)
    image = clean.astype(np.float32) + normal * np.sqrt(noise_variance(config, clean, noise_factor))
    if mask is not None:
        band, y0, y1, x0, x1 = mask
        image[band, y0:y1, x0:x1] = config.mask_value
    return image


def draw_mask(config: StrongSimConfig, rng: np.random.Generator) -> tuple[int, int, int, int, int] | None:
    """A bad-CCD region in one band of the written cutout: a square block, or a strip of rows or columns
    along one edge; as (band, y0, y1, x0, x1) on the square the scene is rendered on.

    Always draws the same number of variates, so the rest of the scene does not depend on it.
    """
    u_mask, u_kind, u_band, u_size, u_pos1, u_pos2, u_edge = rng.random(7)
    if u_mask >= config.mask_fraction:
        return None
    rows, cols = config.shape
    top, left = (config.image_size - rows) // 2, (config.image_size - cols) // 2  # where `crop` cuts
    band = int(u_band * config.n_bands)
    if u_kind < 0.5:
        side = 4 + int(u_size * 9)  # 4..12 pixels
        y0, x0 = int(u_pos1 * (rows - side)), int(u_pos2 * (cols - side))
        box = (y0, y0 + side, x0, x0 + side)
    else:
        width = 1 + int(u_size * 4)  # 1..4 rows or columns
        edge = int(u_edge * 4)
        along = cols if edge < 2 else rows
        length = along - int(u_pos1 * along * 0.4)  # the strip may stop short of the far edge
        box = [(0, width, 0, length), (rows - width, rows, cols - length, cols),
               (0, length, 0, width), (rows - length, rows, cols - width, cols)][edge]
    y0, y1, x0, x1 = box
    return band, y0 + top, y1 + top, x0 + left, x1 + left
