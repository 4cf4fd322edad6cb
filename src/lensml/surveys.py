"""The survey registry: one entry per survey, read by the reader, both simulators, previews and the CLI.

A survey says how its cutouts are stored and observed:

- bands in file order, each with its folder under ``Public/`` and file-name prefix (the Lens
  Finding Challenge layout, ``Public/Band<k>/<prefix><ID>.fits``), PSF FWHM and noise;
- pixel scale (arcsec / pixel), the usual cutout size (rows, columns), the value that flags a
  masked pixel (or none), and the bands shown as red, green and blue in previews;
- the simulation preset: which population of lenses to draw (``space`` or ``ground``) and any
  further `StrongSimConfig` settings.

Flux unit: 1 is AB magnitude 0 (the challenge's pixel values are within 0.5 mag of that), so a
band's noise can be given as a 5-sigma point-source depth: ``depth_mag`` m gives a noise per pixel
of 10**(-0.4 m) / 5 / sqrt(N), N the number of pixels in a 2"-diameter aperture. That is a
background-limited estimate; measured noise (``noise_sigma``) takes precedence.

Users add a survey with a YAML file (``--survey-file``); see docs/surveys.md for a worked example.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import BadInputError

APERTURE_DIAMETER_ARCSEC = 2.0  # aperture of the depths quoted for ground surveys
POPULATIONS = ("space", "ground")  # the lens populations of lensml.simulate.surveys.POPULATIONS
MAX_IMAGE_SIZE = 1024  # pixels per side: a cutout, not a tile


@dataclass(frozen=True)
class Band:
    """One filter of a survey and where its files live."""

    name: str  # filter, e.g. "VIS" or "r"
    folder: str  # folder under Public/, e.g. "Band1"
    prefix: str  # file name up to the ID, e.g. "imageEUC_VIS-"
    psf_fwhm_arcsec: float
    noise_sigma: float  # background noise per pixel, flux units (1 = AB mag 0)

    def filename(self, image_id: int) -> str:
        return f"{self.prefix}{int(image_id)}.fits"

    def match_id(self, filename: str) -> int | None:
        """The ID in a file name of this band, or None if the name is not one of its files."""
        m = re.fullmatch(re.escape(self.prefix) + r"(\d+)\.fits", filename)
        return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Survey:
    """A survey's bands, pixel grid, masks, preview colours and simulation preset."""

    name: str
    bands: tuple[Band, ...]
    pixel_scale_arcsec: float
    image_size: tuple[int, int]  # (rows, columns) of its usual cutouts
    mask_value: float | None = None  # pixels of exactly this value carry no measurement
    rgb_bands: tuple[str, str, str] | None = None  # band names shown as red, green, blue
    population: str = "space"  # which lens population the simulator starts from
    simulation: Mapping[str, Any] = field(default_factory=dict)  # further StrongSimConfig settings
    description: str = ""

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)

    def rgb_indices(self) -> tuple[int, int, int] | None:
        """Band indices shown as red, green and blue, or None for a grey preview."""
        if self.rgb_bands is None:
            return None
        return tuple(self.band_names.index(b) for b in self.rgb_bands)  # type: ignore[return-value]

    def layout(self) -> dict[str, Any]:
        """What reading its files depends on: band names, folders, prefixes and the mask value."""
        return {"bands": [(b.name, b.folder, b.prefix) for b in self.bands], "mask_value": self.mask_value}

    def to_dict(self) -> dict[str, Any]:
        """The survey as a YAML-ready mapping that `survey_from_mapping` reads back unchanged."""
        return {
            "name": self.name, "description": self.description, "pixel_scale_arcsec": self.pixel_scale_arcsec,
            "image_size": list(self.image_size), "mask_value": self.mask_value,
            "rgb_bands": None if self.rgb_bands is None else list(self.rgb_bands),
            "bands": [{"name": b.name, "folder": b.folder, "prefix": b.prefix, "psf_fwhm_arcsec": b.psf_fwhm_arcsec,
                       "noise_sigma": b.noise_sigma} for b in self.bands],
            "population": self.population, "simulation": {k: _plain(v) for k, v in self.simulation.items()},
        }


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def noise_from_depth(depth_mag: float, pixel_scale_arcsec: float) -> float:
    """Noise per pixel (flux units) of a 5-sigma point-source depth in a 2"-diameter aperture."""
    pixels = math.pi * (APERTURE_DIAMETER_ARCSEC / 2.0) ** 2 / pixel_scale_arcsec**2
    return 10.0 ** (-0.4 * depth_mag) / 5.0 / math.sqrt(pixels)


_BAND_KEYS = {"name", "folder", "prefix", "psf_fwhm_arcsec", "noise_sigma", "depth_mag"}
_SURVEY_KEYS = {"name", "description", "pixel_scale_arcsec", "image_size", "mask_value", "rgb_bands", "bands",
                "file_prefix", "population", "simulation"}


def survey_from_mapping(raw: Mapping[str, Any], source: str = "survey") -> Survey:
    """A Survey from a mapping (a YAML file's content); every mistake is a one-line BadInputError.

    Band folders default to Band1, Band2, ...; prefixes to ``image<FILE_PREFIX>_<band>-`` with
    ``file_prefix`` defaulting to the upper-case survey name.
    """
    def fail(message: str) -> BadInputError:
        return BadInputError(f"{source}: {message}")

    if not isinstance(raw, Mapping):
        raise fail("a survey must be a mapping of settings")
    unknown = sorted(set(raw) - _SURVEY_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_SURVEY_KEYS))}")
    for key in ("name", "pixel_scale_arcsec", "bands"):
        if key not in raw:
            raise fail(f"needs {key!r}")
    name = str(raw["name"])
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name):
        raise fail(f"name {name!r}: use letters, digits, '_' and '-', starting with a letter")
    scale = _positive(raw["pixel_scale_arcsec"], "pixel_scale_arcsec", fail)
    size = raw.get("image_size", [101, 101])
    size = [size, size] if isinstance(size, int) else list(size)
    if len(size) != 2 or not all(isinstance(s, int) and 16 <= s <= MAX_IMAGE_SIZE for s in size):
        raise fail(f"image_size must be one whole number from 16 to {MAX_IMAGE_SIZE}, or [rows, columns], "
                   f"got {raw.get('image_size')!r}")
    file_prefix = str(raw.get("file_prefix", name.upper()))
    if not isinstance(raw["bands"], list) or not raw["bands"]:
        raise fail("bands must be a list of at least one band")
    bands = []
    for k, entry in enumerate(raw["bands"]):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise fail(f"band {k + 1} must be a mapping with a 'name'")
        extra = sorted(set(entry) - _BAND_KEYS)
        if extra:
            raise fail(f"band {entry['name']!r}: unknown key(s) {', '.join(extra)}; known: {', '.join(sorted(_BAND_KEYS))}")
        band_name = str(entry["name"])
        if "noise_sigma" in entry:
            noise = _positive(entry["noise_sigma"], f"band {band_name!r} noise_sigma", fail)
        elif "depth_mag" in entry:
            noise = noise_from_depth(_number(entry["depth_mag"], f"band {band_name!r} depth_mag", fail), scale)
        else:
            raise fail(f"band {band_name!r} needs noise_sigma (flux units) or depth_mag (5-sigma, 2\" aperture)")
        if "psf_fwhm_arcsec" not in entry:
            raise fail(f"band {band_name!r} needs psf_fwhm_arcsec")
        folder = _file_name(entry.get("folder", f"Band{k + 1}"), f"band {band_name!r} folder", fail)
        prefix = _file_name(entry.get("prefix", f"image{file_prefix}_{band_name}-"), f"band {band_name!r} prefix", fail)
        bands.append(Band(band_name, folder, prefix,
                          _positive(entry["psf_fwhm_arcsec"], f"band {band_name!r} psf_fwhm_arcsec", fail), noise))
    names = [b.name for b in bands]
    for what, values in (("band names", names), ("band folders", [b.folder for b in bands])):
        if len(set(values)) != len(values):
            raise fail(f"{what} must differ: {', '.join(values)}")
    rgb = raw.get("rgb_bands")
    if rgb is not None:
        rgb = tuple(str(b) for b in rgb)
        if len(rgb) != 3 or any(b not in names for b in rgb):
            raise fail(f"rgb_bands must name three of the bands ({', '.join(names)}), got {list(rgb)}")
    mask = raw.get("mask_value")
    population = str(raw.get("population", "space"))
    if population not in POPULATIONS:
        raise fail(f"population must be one of {', '.join(POPULATIONS)}, got {population!r}")
    simulation = raw.get("simulation") or {}
    if not isinstance(simulation, Mapping):
        raise fail("simulation must be a mapping of strong-simulation settings")
    mask = None if mask is None else _number(mask, "mask_value", fail)
    return Survey(name, tuple(bands), scale, (size[0], size[1]), mask, rgb,
                  population, dict(simulation), str(raw.get("description", "")))


def _number(value: Any, what: str, fail) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise fail(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise fail(f"{what} must be finite, got {value!r}")
    return number


def _file_name(value: Any, what: str, fail) -> str:
    """A folder or file-name prefix: one path component, so files stay inside the data folder."""
    text = str(value)
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", text) or text in (".", ".."):
        raise fail(f"{what} {text!r}: use letters, digits and '_.+-' only (one name, no '/')")
    return text


def _positive(value: Any, what: str, fail) -> float:
    number = _number(value, what, fail)
    if not number > 0:
        raise fail(f"{what} must be positive, got {value!r}")
    return number


def _challenge_bands(survey: str, names: str | tuple[str, ...], fwhm: tuple[float, ...], noise: tuple[float, ...]):
    code = {"space": "EUC", "ground": "SDSS"}[survey]
    return [{"name": n, "prefix": f"image{code}_{n}-", "psf_fwhm_arcsec": f, "noise_sigma": s}
            for n, f, s in zip(names, fwhm, noise)]


# Depths are 5-sigma point-source magnitudes (2" aperture); PSF FWHM the survey's median seeing.
_BUILTIN: tuple[dict[str, Any], ...] = (
    {"name": "space", "description": "Lens Finding Challenge 1.0 Space set: Euclid VIS-like, 0.1\"/px",
     "pixel_scale_arcsec": 0.1, "image_size": 101, "mask_value": 100.0, "population": "space",
     "bands": _challenge_bands("space", ("VIS",), (0.18,), (7.8e-13,)), "simulation": {"psf_jitter": 0.1}},
    {"name": "ground", "description": "Lens Finding Challenge 1.0 Ground set: KiDS-like R, I, G, U, 0.2\"/px",
     "pixel_scale_arcsec": 0.2, "image_size": 101, "mask_value": 100.0, "rgb_bands": ["I", "R", "G"],
     "population": "ground",
     "bands": _challenge_bands("ground", tuple("RIGU"), (0.70, 0.80, 0.85, 1.00), (1.53e-12, 3.2e-12, 1.25e-12, 2.0e-12)),
     "simulation": {"psf_profile": "moffat", "psf_supersampled": False, "noisy_fraction": 0.15, "mask_fraction": 0.2,
                    "psf_jitter": 0.15}},
    {"name": "euclid", "description": "Euclid wide survey: VIS and NISP Y, J, H resampled onto one 0.1\"/px grid",
     "pixel_scale_arcsec": 0.1, "image_size": 100, "rgb_bands": ["H", "Y", "VIS"], "population": "space",
     "file_prefix": "EUCLID",
     "bands": [{"name": "VIS", "psf_fwhm_arcsec": 0.16, "noise_sigma": 7.8e-13},
               {"name": "Y", "psf_fwhm_arcsec": 0.33, "depth_mag": 24.0},
               {"name": "J", "psf_fwhm_arcsec": 0.35, "depth_mag": 24.0},
               {"name": "H", "psf_fwhm_arcsec": 0.36, "depth_mag": 24.0}],
     "simulation": {"psf_profile": "gaussian", "psf_supersampled": True}},
    {"name": "lsst", "description": "Rubin LSST ten-year depth: u, g, r, i, z, y at 0.2\"/px",
     "pixel_scale_arcsec": 0.2, "image_size": 64, "rgb_bands": ["i", "r", "g"], "population": "ground",
     "bands": [{"name": n, "psf_fwhm_arcsec": f, "depth_mag": d} for n, f, d in
               zip("ugrizy", (0.92, 0.87, 0.83, 0.80, 0.78, 0.76), (25.6, 26.9, 26.9, 26.4, 25.6, 24.8))],
     "simulation": {"psf_profile": "moffat", "psf_supersampled": False}},
    {"name": "hsc", "description": "Hyper Suprime-Cam SSP Wide: g, r, i, z, y at 0.168\"/px",
     "pixel_scale_arcsec": 0.168, "image_size": 64, "rgb_bands": ["i", "r", "g"], "population": "ground",
     "bands": [{"name": n, "psf_fwhm_arcsec": f, "depth_mag": d} for n, f, d in
               zip("grizy", (0.77, 0.76, 0.58, 0.68, 0.68), (26.5, 26.1, 25.9, 25.1, 24.4))],
     "simulation": {"psf_profile": "moffat", "psf_supersampled": False}},
    {"name": "des", "description": "Dark Energy Survey wide field: g, r, i, z at 0.263\"/px",
     "pixel_scale_arcsec": 0.263, "image_size": 45, "rgb_bands": ["i", "r", "g"], "population": "ground",
     "bands": [{"name": n, "psf_fwhm_arcsec": f, "depth_mag": d} for n, f, d in
               zip("griz", (1.11, 0.95, 0.88, 0.83), (25.4, 25.1, 24.5, 23.8))],
     "simulation": {"psf_profile": "moffat", "psf_supersampled": False}},
)

_REGISTRY: dict[str, Survey] = {}
for _raw in _BUILTIN:
    _REGISTRY[_raw["name"]] = survey_from_mapping(_raw, f"built-in survey {_raw['name']}")
BUILTIN_SURVEYS = tuple(_REGISTRY)


def survey_names() -> tuple[str, ...]:
    """Every registered survey, built-in ones first."""
    return tuple(_REGISTRY)


def get_survey(name: str) -> Survey:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BadInputError(f"unknown survey {name!r}; known: {', '.join(_REGISTRY)} (add one with "
                            "--survey-file FILE.yaml)") from None


def register_survey(survey: Survey, source: str = "survey", reading: bool = False) -> Survey:
    """Add a survey; the same definition again is a no-op, another one under a known name an error.

    With `reading` (a data folder's survey.yaml, a model file's record), a definition whose file
    layout (bands, folders, prefixes, mask value) agrees with the registered one is accepted as
    it: those files read alike, whatever their simulation settings or description say.
    """
    old = _REGISTRY.get(survey.name)
    if old is None or old == survey:
        _REGISTRY[survey.name] = survey
        return survey
    if reading and old.layout() == survey.layout():
        return old
    ours, theirs = survey.to_dict(), old.to_dict()
    differ = [k for k in ours if ours[k] != theirs[k] and k != "description"] or ["description"]
    raise BadInputError(f"{source}: survey {survey.name!r} is already defined with other {', '.join(differ)}"
                        + (" (a built-in survey; choose another name)" if survey.name in BUILTIN_SURVEYS else ""))


def load_survey_file(path: str | os.PathLike, reading: bool = False) -> Survey:
    """Read a survey from a YAML (or JSON) file and register it (see `register_survey` for `reading`)."""
    from .config import read_config_file

    return register_survey(survey_from_mapping(read_config_file(path), str(path)), str(path), reading)


def survey_yaml(survey: Survey) -> str:
    """The survey as YAML text, as `load_survey_file` reads it."""
    import yaml

    return yaml.safe_dump(survey.to_dict(), sort_keys=False)


FOLDER_SURVEY_FILE = "survey.yaml"  # written beside Public/ by `lensml simulate strong`


def folder_survey(root: Path) -> Survey | None:
    """The survey a folder describes in its own survey.yaml (registered), or None."""
    path = Path(root) / FOLDER_SURVEY_FILE
    return load_survey_file(path, reading=True) if path.is_file() else None
