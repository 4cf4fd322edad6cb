"""Lensed arcs painted into real cutouts: training sets whose deflectors, neighbours, noise and
artefacts are real (as the HOLISMOKES, DES and Euclid searches build theirs).

For every background cutout (a folder in the challenge layout), the deflector's centre, axis ratio
and angle are measured from the cutout's own light in the reference band (Gaussian-weighted
centroid and second moments, weight sigma `WEIGHT_ARCSEC`).  A scene is drawn as `simulate strong`
draws a lens (seed, ID), its mass moved onto the measured galaxy and turned to its shape; only its
source and clumps are rendered (ray-traced, PSF-convolved, noise-free), with no lens light and no
neighbours: the cutout supplies them.  Arc pixels below ARC_FLOOR of the band's noise are set to
exactly zero, as are masked pixels, so the cutout is unchanged to the last bit wherever no arc
falls.  Each background gives two scenes: ID first_id + 2k holds the injected arcs (a lens), ID
first_id + 2k + 1 a byte-for-byte copy of the untouched cutout (a non-lens), so a network must look
at the arcs, not at the galaxy.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import BadInputError
from ..io.challenge import band_path, detect_survey, list_ids, masked_pixels, read_scene
from ..io.fits import write_fits_image
from ..io.tables import write_csv
from ..surveys import get_survey
from .record import claim_folder
from .surveys import band_header, strong_config

WEIGHT_ARCSEC = 1.0  # sigma of the round Gaussian weight that measures the deflector's light
ARC_FLOOR = 1e-3  # arc pixels below this fraction of the band's noise sigma are exactly zero
Q_RANGE = (0.3, 0.99)
GUARDED = ("kind", "survey", "backgrounds", "seed", "first_id", "config")


def measure_deflector(image: np.ndarray, pixel_scale: float, mask: np.ndarray | None = None) -> tuple[float, ...]:
    """(x, y, q, phi) of the light in one band: centre in arcsec from the cutout's centre (x along
    columns, y along rows), axis ratio from Gaussian-weighted second moments, angle from +x to +y."""
    from ..shear.metacal import weighted_centroid

    work = np.where(mask, 0.0, image) if mask is not None else image
    sigma_px = WEIGHT_ARCSEC / pixel_scale
    centre = weighted_centroid(torch.from_numpy(np.asarray(work, np.float64))[None], sigma_px)[0].numpy()
    rows, cols = np.indices(work.shape, dtype=np.float64)
    dx = cols - (work.shape[1] - 1) / 2.0 - centre[0]
    dy = rows - (work.shape[0] - 1) / 2.0 - centre[1]
    weighted = work * np.exp(-0.5 * (dx * dx + dy * dy) / sigma_px**2)
    total = weighted.sum()
    if total <= 0:
        return float(centre[0] * pixel_scale), float(centre[1] * pixel_scale), 1.0, 0.0
    m_xx, m_yy, m_xy = ((weighted * a * b).sum() / total for a, b in ((dx, dx), (dy, dy), (dx, dy)))
    spread = math.hypot(0.5 * (m_xx - m_yy), m_xy)
    mean = 0.5 * (m_xx + m_yy)
    q = math.sqrt(max(mean - spread, 1e-12) / max(mean + spread, 1e-12))
    phi = 0.5 * math.atan2(2.0 * m_xy, m_xx - m_yy)
    return float(centre[0] * pixel_scale), float(centre[1] * pixel_scale), float(np.clip(q, *Q_RANGE)), phi


def inject_scene(config, seed: int, image_id: int, deflector: tuple[float, ...]):
    """The lens scene (seed, ID) with its mass on the measured deflector, and only its source lit."""
    from .strong import draw_scene

    scene = draw_scene(config, seed, image_id, lens_fraction=1.0)
    x, y, q, phi = deflector
    mass, light, flux = scene.mass.copy(), scene.light.copy(), scene.flux.copy()
    shift = np.array([x - mass[0], y - mass[1]])
    mass[:4] = (x, y, q, phi)
    lensed = slice(1, 2 + config.clumps_max)
    light[lensed, :2] += shift  # the source keeps its place relative to the caustics
    flux[0] = 0.0  # the cutout's own galaxy is the lens light
    flux[2 + config.clumps_max:] = 0.0  # and its own neighbours the field
    light[0, :2] = (x, y)
    return dataclasses.replace(scene, mass=mass, light=light, flux=flux, noise_factor=1.0, mask=None)


def inject_arcs(backgrounds: str, out_dir: str, seed: int = 0, first_id: int = 100000, number: int | None = None,
                batch_size: int = 32, progress: bool = True) -> Path:
    """Write injected lenses and untouched copies of the cutouts in `backgrounds`; returns the labels' path."""
    from .strong import StrongRenderer, render_context, stack_scenes
    from .strong_files import COLUMNS, LABELS_NAME, _row

    source_dir = Path(backgrounds)
    survey_name = detect_survey(source_dir)
    survey = get_survey(survey_name)
    ids = list_ids(source_dir, survey_name)
    if number is not None:
        ids = ids[:number]
    if not ids:
        raise BadInputError(f"{source_dir}: no cutouts to inject into")
    first = read_scene(source_dir, survey_name, ids[0])
    config = strong_config(survey, tuple(first.shape[1:]))
    out = Path(out_dir)
    if out.resolve() == source_dir.resolve():
        raise BadInputError("--backgrounds and -o must be different folders")
    out.mkdir(parents=True, exist_ok=True)
    record = {"kind": "strong-injection", "survey": survey_name, "backgrounds": str(source_dir.resolve()),
              "seed": int(seed), "first_id": int(first_id), "config": config.to_dict(), "n": len(ids)}
    claim_folder(out, record, guarded=GUARDED, foreign=("Public", LABELS_NAME))
    renderer = StrongRenderer(config)
    headers = [band_header(config, b) for b in range(config.n_bands)]
    floors = np.asarray(config.noise_sigma, np.float64)[:, None, None] * ARC_FLOOR
    rows = []
    for start in tqdm(range(0, len(ids), batch_size), desc="inject", unit="batch", disable=not progress):
        chunk = ids[start : start + batch_size]
        cutouts = [read_scene(source_dir, survey_name, i, first.shape[1:]) for i in chunk]
        scenes = []
        for k, cutout in enumerate(cutouts):
            mask = masked_pixels(cutout[config.reference_band], survey.mask_value)
            deflector = measure_deflector(cutout[config.reference_band], config.pixel_scale, mask)
            scenes.append(inject_scene(config, seed, first_id + 2 * (start + k), deflector))
        with render_context():
            clean, source = renderer.render(stack_scenes(scenes))
        for k, (background_id, cutout, scene) in enumerate(zip(chunk, cutouts, scenes)):
            arcs = config.crop(clean[k].cpu().numpy().astype(np.float64))
            arcs[(arcs < floors) | masked_pixels(cutout, survey.mask_value)] = 0.0
            injected = (cutout + arcs.astype(np.float32)).astype(np.float32)
            copy_id = scene.image_id + 1
            for b in range(config.n_bands):
                write_fits_image(band_path(out, survey_name, b, scene.image_id), injected[b],
                                 {**headers[b], "IMAGEID": scene.image_id, "BGID": (background_id, "background cutout")})
                target = band_path(out, survey_name, b, copy_id)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(band_path(source_dir, survey_name, b, background_id), target)
            rows.append(_row(config, scene, config.crop(source[k].cpu().numpy())))
            rows.append([str(copy_id), "0", "0", "0", "0"])
    labels = out / LABELS_NAME
    write_csv(labels, COLUMNS, rows)
    return labels
