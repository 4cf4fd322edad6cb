#!/usr/bin/env python
"""An independent lens-finding test set, drawn with lenstronomy + numpy + astropy (no lensml import).

lensml's lens-finding scores are claimed on scenes that lensml's own simulator did not draw. This
script shares no code and no population with `lensml simulate strong`, only the challenge's folder
layout, so `lensml evaluate -i DIR -m MODEL` reads it:

    DIR/Public/Band1/imageEUC_VIS-<ID>.fits                  (space: VIS, 0.1"/px)
    DIR/Public/Band{1..4}/imageSDSS_{R,I,G,U}-<ID>.fits      (ground: R, I, G, U, 0.2"/px)
    DIR/classifications.csv   ID,is_lens,Einstein_area,numb_pix_lensed_image,flux_lensed_image_in_sigma,
                              theta_E,source_mag,kind (the challenge's columns, from the lensed source
                              alone in the reference band against the scene's sky sigma)
    DIR/truth.json            settings, seed and versions

Population (physical rather than lensml's ranges):
- deflectors: a singular isothermal ellipsoid plus external shear. Velocity dispersion ~ N(240, 40)
  km/s for galaxies, U(350, 600) km/s for the 15% that are groups; z_l ~ U(0.2, 0.7), z_s ~ z_l +
  U(0.4, 2.5); theta_E = 4 pi (sigma / c)^2 D_ls / D_s (flat LambdaCDM, H0 70, Om 0.3), clipped to
  0.3-6". Light: elliptical Sersic n ~ U(3, 6), its axis and angle scattered about the mass's,
  magnitude from a Faber-Jackson relation (L ~ sigma^4) and the distance modulus.
- lensed sources: a Sersic disc (n ~ U(0.5, 2)) plus 0-4 Gaussian star-forming clumps, magnitude
  U(22.5, 26.5) in the reference band (the faint ones are invisible: labelled lenses all the same),
  inside 0.7 theta_E of the axis (uniform in area).
- non-lenses: 50% the deflector alone; 20% a source 1.5-4 theta_E off the axis (one weakly
  distorted image); 15% a late-type central galaxy (bulge + disc down to edge-on) and no lensing;
  15% a blue galaxy beside the deflector, unlensed, half of them tangential.
- every scene: Poisson(2.5) field galaxies and stars; a Gaussian PSF per band, its FWHM jittered per
  scene; Gaussian sky noise per band (the challenge's measured levels) scaled by U(0.8, 1.3) per scene.
- flux unit: 1 AB maggie (the challenge's pixel values are within half a magnitude of it).

Scene i draws from numpy's generator seeded by (seed, i): the set does not depend on --workers.

    python validation/lens_set_lenstronomy.py --survey space -n 3000 -o /tmp/indep_space --workers 2
    python validation/lens_set_lenstronomy.py --survey ground -n 2000 -o /tmp/indep_ground --workers 2
    lensml evaluate -i /tmp/indep_space -m MODEL
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing as mp
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

SURVEYS = {
    # band file names, pixel scale (arcsec), PSF FWHM per band (arcsec), sky noise per band (maggies)
    "space": dict(files=[("Band1", "imageEUC_VIS-")], scale=0.1, fwhm=[0.18], sky=[7.8e-13]),
    "ground": dict(files=[("Band1", "imageSDSS_R-"), ("Band2", "imageSDSS_I-"), ("Band3", "imageSDSS_G-"),
                          ("Band4", "imageSDSS_U-")],
                   scale=0.2, fwhm=[0.70, 0.80, 0.85, 1.00], sky=[1.53e-12, 3.2e-12, 1.25e-12, 2.0e-12]),
}
SIZE = 101  # pixels per side
# colours m_band - m_reference per band (mean, scatter); reference band first; space has one band
COLOURS = {
    "space": {"red": [(0.0, 0.0)], "blue": [(0.0, 0.0)], "any": [(0.0, 0.0)]},
    "ground": {"red": [(0.0, 0.0), (-0.45, 0.1), (1.2, 0.15), (2.6, 0.3)],
               "blue": [(0.0, 0.0), (-0.1, 0.15), (0.3, 0.2), (0.6, 0.4)],
               "any": [(0.0, 0.0), (-0.3, 0.25), (0.7, 0.4), (1.5, 0.8)]},
}
C_KM_S = 299792.458
ARCSEC = math.pi / 180 / 3600


def _cosmology():
    from astropy.cosmology import FlatLambdaCDM
    return FlatLambdaCDM(H0=70, Om0=0.3)


def _ellipticity(q: float, phi: float) -> tuple[float, float]:
    c = (1 - q) / (1 + q)
    return c * math.cos(2 * phi), c * math.sin(2 * phi)


def _sersic(x, y, q, phi, n, r_half_major, mag):
    """lenstronomy SERSIC_ELLIPSE kwargs with unit amplitude (rescaled to the magnitude later)."""
    e1, e2 = _ellipticity(q, phi)
    return ("SERSIC_ELLIPSE", dict(amp=1.0, R_sersic=r_half_major * math.sqrt(q), n_sersic=n, e1=e1, e2=e2,
                                   center_x=x, center_y=y), mag)


def _gaussian(x, y, sigma, mag):
    return ("GAUSSIAN", dict(amp=1.0, sigma=sigma, center_x=x, center_y=y), mag)


def draw_scene(survey: str, seed: int, image_id: int, lens_fraction: float) -> dict:
    """All parameters of one scene: components as (model, kwargs, magnitude, colour kind)."""
    rng = np.random.default_rng([seed, image_id])
    cosmo = _cosmology()
    half = SIZE * SURVEYS[survey]["scale"] / 2
    is_lens = bool(rng.random() < lens_fraction)
    kind = "lens" if is_lens else str(rng.choice(["alone", "far_source", "late_type", "companion"],
                                                 p=[0.5, 0.2, 0.15, 0.15]))
    group = rng.random() < 0.15
    sigma_v = rng.uniform(350, 600) if group else max(rng.normal(240, 40), 120)
    z_l = rng.uniform(0.2, 0.7)
    z_s = z_l + rng.uniform(0.4, 2.5)
    d_s, d_ls = cosmo.angular_diameter_distance(z_s), cosmo.angular_diameter_distance(z_l, z_s)
    theta_e = float(np.clip(4 * math.pi * (sigma_v / C_KM_S) ** 2 * float(d_ls / d_s) / ARCSEC, 0.3, 6.0))
    cx, cy = rng.uniform(-0.3, 0.3, 2) * SURVEYS[survey]["scale"]
    q_m, phi_m = rng.uniform(0.5, 0.98), rng.uniform(0, math.pi)
    gamma, phi_g = rng.uniform(0, 0.1), rng.uniform(0, math.pi)
    dist_mod = float(cosmo.distmod(z_l).value)
    lens_mag = -21.2 - 10 * math.log10(sigma_v / 240) + dist_mod + rng.normal(0, 0.3) + 0.8 * (z_l - 0.2)
    lens_re = float(np.clip(theta_e * rng.uniform(0.5, 1.5), 0.3, 4.0))
    lights = []  # unlensed: (model, kwargs, mag, colour kind)
    sources = []  # lensed
    if kind == "late_type":  # a disc galaxy (bulge + disc) at the centre, no lens
        q_d, phi_d = rng.uniform(0.12, 0.9), rng.uniform(0, math.pi)
        disc_mag = lens_mag + rng.uniform(0.0, 1.0)
        lights.append(_sersic(cx, cy, q_d, phi_d, 1.0, lens_re * rng.uniform(0.8, 1.6), disc_mag) + ("blue",))
        lights.append(_sersic(cx, cy, 0.8, phi_d, 4.0, lens_re * 0.3, disc_mag + rng.uniform(0.5, 2.0)) + ("red",))
    else:
        q_l = float(np.clip(q_m + rng.normal(0, 0.08), 0.4, 0.98))
        lights.append(_sersic(cx, cy, q_l, phi_m + rng.normal(0, 0.15), rng.uniform(3, 6), lens_re, lens_mag) + ("red",))
    src_mag = rng.uniform(22.5, 26.5)
    src_re = math.exp(rng.uniform(math.log(0.1), math.log(0.6)))
    src_q, src_phi, src_n = rng.uniform(0.3, 1.0), rng.uniform(0, math.pi), rng.uniform(0.5, 2.0)
    angle = rng.uniform(0, 2 * math.pi)
    n_clumps = int(rng.integers(0, 5))
    clumps = [(rng.normal(0, 1, 2) * src_re, rng.uniform(0.03, 0.1), rng.uniform(0.05, 0.25)) for _ in range(n_clumps)]

    def add_source(sx, sy, target):
        share = sum(c[2] for c in clumps)
        target.append(_sersic(sx, sy, src_q, src_phi, src_n, src_re, src_mag - 2.5 * math.log10(1 - share)) + ("blue",))
        for (dx, dy), size, frac in clumps:
            target.append(_gaussian(sx + dx, sy + dy, size, src_mag - 2.5 * math.log10(frac)) + ("blue",))

    if kind == "lens":
        beta = 0.7 * theta_e * math.sqrt(rng.random())
        add_source(cx + beta * math.cos(angle), cy + beta * math.sin(angle), sources)
    elif kind == "far_source":
        beta = theta_e * rng.uniform(1.5, 4.0) + 2 * src_re
        add_source(cx + beta * math.cos(angle), cy + beta * math.sin(angle), sources)
    elif kind == "companion":
        r = theta_e * rng.uniform(0.7, 1.8)
        sx, sy = cx + r * math.cos(angle), cy + r * math.sin(angle)
        if rng.random() < 0.5:
            src_q, src_phi = rng.uniform(0.15, 0.45), angle + math.pi / 2
        add_source(sx, sy, lights)
    for _ in range(int(rng.poisson(2.5))):
        x, y = rng.uniform(-0.95 * half, 0.95 * half, 2)
        if math.hypot(x - cx, y - cy) < 1.0:
            continue
        mag = rng.uniform(20.5, 26.0)
        if rng.random() < 0.2:
            lights.append(_gaussian(x, y, 0.01, mag) + ("any",))
        else:
            lights.append(_sersic(x, y, rng.uniform(0.15, 1.0), rng.uniform(0, math.pi), rng.uniform(0.5, 4),
                                  math.exp(rng.uniform(math.log(0.1), math.log(0.8))), mag) + ("any",))
    nb = len(SURVEYS[survey]["files"])
    colour = {k: np.array([rng.normal(m, s) for m, s in v]) for k, v in COLOURS[survey].items()}
    e1, e2 = _ellipticity(q_m, phi_m)
    lensing = kind in ("lens", "far_source")
    return dict(
        image_id=image_id, is_lens=is_lens, kind=kind, theta_e=theta_e if lensing else 0.0, source_mag=src_mag,
        kwargs_lens=[dict(theta_E=theta_e if lensing else 0.0, e1=e1, e2=e2, center_x=cx, center_y=cy),
                     dict(gamma1=gamma * math.cos(2 * phi_g) if lensing else 0.0,
                          gamma2=gamma * math.sin(2 * phi_g) if lensing else 0.0, ra_0=0.0, dec_0=0.0)],
        lights=lights, sources=sources, colour=colour,
        psf_fwhm=np.array(SURVEYS[survey]["fwhm"]) * (rng.uniform(0.95, 1.1) if survey == "space" else rng.uniform(0.85, 1.2)),
        sky=np.array(SURVEYS[survey]["sky"]) * rng.uniform(0.8, 1.3),
        noise_seed=int(rng.integers(0, 2**63 - 1)), n_bands=nb,
    )


def _scaled(components, band: int, colour) -> tuple[list[str], list[dict]]:
    """Model names and kwargs with amplitudes set so each component has its magnitude's total flux."""
    from lenstronomy.LightModel.light_model import LightModel

    names, kwargs = [], []
    for model, kw, mag, ckind in components:
        unit = LightModel([model]).total_flux([dict(kw, amp=1.0)])[0]
        flux = 10 ** (-0.4 * (mag + colour[ckind][band]))
        names.append(model)
        kwargs.append(dict(kw, amp=flux / unit))
    return names, kwargs


def render(survey: str, scene: dict) -> tuple[np.ndarray, np.ndarray]:
    """(bands, SIZE, SIZE) float32 image with noise, maggies per pixel, and the lensed source alone
    in the reference band (noise-free; zeros without a lensed source)."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    scale = SURVEYS[survey]["scale"]
    origin = -(SIZE - 1) / 2 * scale
    data = ImageData(image_data=np.zeros((SIZE, SIZE)), ra_at_xy_0=origin, dec_at_xy_0=origin,
                     transform_pix2angle=np.array([[scale, 0], [0, scale]]))
    lens = LensModel(["SIE", "SHEAR"])
    noise = np.random.default_rng(scene["noise_seed"])
    out = np.empty((scene["n_bands"], SIZE, SIZE), dtype=np.float32)
    source_alone = np.zeros((SIZE, SIZE))
    for band in range(scene["n_bands"]):
        psf = PSF(psf_type="GAUSSIAN", fwhm=float(scene["psf_fwhm"][band]), pixel_size=scale, truncation=5)
        light_names, light_kwargs = _scaled(scene["lights"], band, scene["colour"])
        source_names, source_kwargs = _scaled(scene["sources"], band, scene["colour"])
        model = ImageModel(data, psf, lens_model_class=lens,
                           source_model_class=LightModel(source_names) if source_names else None,
                           lens_light_model_class=LightModel(light_names),
                           kwargs_numerics={"supersampling_factor": 3})
        image = model.image(kwargs_lens=scene["kwargs_lens"], kwargs_source=source_kwargs or None,
                            kwargs_lens_light=light_kwargs, source_add=bool(source_names))
        out[band] = image + noise.normal(0.0, scene["sky"][band], image.shape)
        if band == 0 and source_names:
            source_alone = model.image(kwargs_lens=scene["kwargs_lens"], kwargs_source=source_kwargs,
                                       kwargs_lens_light=light_kwargs, lens_light_add=False)
    return out, source_alone


def _work(args: tuple) -> list:
    survey, seed, image_id, lens_fraction, out = args
    scene = draw_scene(survey, seed, image_id, lens_fraction)
    image, source = render(survey, scene)
    for band, (folder, prefix) in enumerate(SURVEYS[survey]["files"]):
        path = Path(out) / "Public" / folder / f"{prefix}{image_id}.fits"
        tmp = path.with_suffix(".tmp")
        fits.PrimaryHDU(image[band]).writeto(tmp, overwrite=True)
        tmp.replace(path)
    if scene["is_lens"]:  # the challenge's columns: lensed pixels above 1 sigma of the sky, and their flux
        sky = scene["sky"][0]
        above = source > sky
        visibility = [f"{math.pi * scene['theta_e'] ** 2:.4f}", int(above.sum()), f"{source[above].sum() / sky:.4g}"]
    else:
        visibility = [0, 0, 0]
    return [image_id, int(scene["is_lens"]), *visibility, f"{scene['theta_e']:.4f}", f"{scene['source_mag']:.3f}",
            scene["kind"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--survey", choices=sorted(SURVEYS), required=True)
    parser.add_argument("-n", "--number", type=int, required=True)
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--lens-fraction", type=float, default=None, help="default 0.4 space, 0.5 ground")
    parser.add_argument("--first-id", type=int, default=300000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.number < 1 or args.workers < 1:
        parser.error("-n and --workers must be at least 1")
    fraction = args.lens_fraction if args.lens_fraction is not None else {"space": 0.4, "ground": 0.5}[args.survey]
    out = Path(args.output)
    truth = out / "truth.json"
    settings = dict(survey=args.survey, seed=args.seed, lens_fraction=fraction, first_id=args.first_id)
    if truth.is_file() and json.loads(truth.read_text()).get("settings") != settings:
        print(f"error: {out} holds a set with other settings ({truth})", file=sys.stderr)
        return 2
    for folder, _ in SURVEYS[args.survey]["files"]:
        (out / "Public" / folder).mkdir(parents=True, exist_ok=True)
    import lenstronomy
    import astropy
    truth.write_text(json.dumps(dict(settings=settings, number=args.number, versions=dict(
        lenstronomy=lenstronomy.__version__, astropy=astropy.__version__, numpy=np.__version__)), indent=1))
    jobs = [(args.survey, args.seed, args.first_id + i, fraction, str(out)) for i in range(args.number)]
    with mp.Pool(args.workers) as pool:
        rows = []
        for k, row in enumerate(pool.imap(_work, jobs, chunksize=8)):
            rows.append(row)
            if (k + 1) % 500 == 0:
                print(f"{k + 1}/{args.number}", file=sys.stderr, flush=True)
    tmp = out / "classifications.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "is_lens", "Einstein_area", "numb_pix_lensed_image", "flux_lensed_image_in_sigma",
                         "theta_E", "source_mag", "kind"])
        writer.writerows(rows)
    tmp.replace(out / "classifications.csv")
    print(f"wrote {args.number} {args.survey} scenes to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
