import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits

from lensml.config import read_config_file
from lensml.errors import BadInputError
from lensml.preview import preview_grid
from lensml.simulate import strong, surveys
from lensml.simulate.record import parse_shard
from lensml.simulate.strong_files import COLUMNS, merge_shards, simulate_strong

TINY = dict(progress=False, batch_size=2)


def _files(folder):
    """Relative path -> bytes of every file a simulation leaves, the record aside (it holds no pixels)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "simulation.json"}


def _labels(folder):
    with (folder / "classifications.csv").open() as handle:
        return list(csv.DictReader(handle))


# --- (1) the physics against lenstronomy ------------------------------------------------------


def _lens_and_source(config):
    """One deflector (SIE + shear, n=4 light) and one off-axis elliptical source, nothing else."""
    slots = strong.n_slots(config)
    light, flux = np.zeros((slots, 6)), np.zeros((slots, 1))
    light[0] = (0.03, -0.02, 0.75, 0.5, 4.0, 0.6)
    flux[0] = 2e-9
    light[1] = (0.18, 0.11, 0.6, 1.1, 1.0, 0.2)  # off-axis, so any x/y or angle mix-up shows
    flux[1] = 6e-10
    mass = np.array([0.03, -0.02, 0.7, 0.4, 1.2, 0.03, -0.02])
    return strong.Scene(image_id=1, is_lens=True, kind="lens", theta_e=1.2, mass=mass, light=light, flux=flux,
                        noise_factor=1.0, mask=None, noise_seed=0)


def _lenstronomy_kwargs(config, scene, band=0):
    """The scene in lenstronomy's terms, from lenstronomy's own conventions and scipy, not lensml's translation.

    lensml's (q, phi) become lenstronomy's e1, e2 through `param_util.phi_q2_ellipticity`; lensml's
    Sersic radius is the half-light radius along the major axis, with the exact half-light constant
    (scipy's inverse incomplete gamma), where lenstronomy's R_sersic is along the intermediate axis
    with its own approximate constant `SersicUtil.b_n`; amplitudes come from lenstronomy's
    `total_flux`, so each light holds the scene's flux in total.
    """
    from lenstronomy.LensModel.Profiles.sersic_utils import SersicUtil
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.Util.param_util import phi_q2_ellipticity
    from scipy.special import gammaincinv

    x0, y0, q, phi, theta_e, g1, g2 = (float(v) for v in scene.mass)
    e1, e2 = phi_q2_ellipticity(phi, min(q, 1.0 - 1e-4))
    out = {"lens_model_list": ["SIE", "SHEAR"],
           "kwargs_lens": [dict(theta_E=theta_e, e1=e1, e2=e2, center_x=x0, center_y=y0),
                           dict(gamma1=g1, gamma2=g2, ra_0=0.0, dec_0=0.0)],
           "source_light_model_list": [], "kwargs_source": [], "lens_light_model_list": [], "kwargs_lens_light": []}
    lensed = strong.lensed_slots(config)
    for slot in range(scene.light.shape[0]):
        flux = float(scene.flux[slot, band])
        if flux == 0:
            continue
        x0, y0, q, phi, n, radius = (float(v) for v in scene.light[slot])
        e1, e2 = phi_q2_ellipticity(phi, q)
        b_exact, b_lenstronomy = gammaincinv(2.0 * n, 0.5), float(SersicUtil.b_n(n))
        kwargs = dict(R_sersic=math.sqrt(q) * radius * (b_lenstronomy / b_exact) ** n, n_sersic=n,
                      e1=e1, e2=e2, center_x=x0, center_y=y0)
        kwargs["amp"] = flux / LightModel(["SERSIC_ELLIPSE"]).total_flux([kwargs], norm=True)[0]
        model_list, kwargs_list = (("source_light_model_list", "kwargs_source") if lensed[slot]
                                   else ("lens_light_model_list", "kwargs_lens_light"))
        out[model_list].append("SERSIC_ELLIPSE")
        out[kwargs_list].append(kwargs)
    return out


def test_lensmls_lenstronomy_translation_agrees_with_lenstronomys_own_conventions():
    """`strong.lenstronomy_kwargs` (used by the simulation benchmark and offered to users) gives what
    lenstronomy's own conventions give: the same ellipticities, radii and amplitudes."""
    config = surveys.strong_config("ground")
    scenes = [strong.draw_scene(config, 5, i, 0.5) for i in range(20)]
    for scene in scenes:
        for band in range(scene.flux.shape[1]):
            ours, reference = strong.lenstronomy_kwargs(config, scene, band), _lenstronomy_kwargs(config, scene, band)
            assert ours.keys() == reference.keys()
            for key in ours:
                assert len(ours[key]) == len(reference[key]), key
                for a, b in zip(ours[key], reference[key]):
                    if isinstance(a, dict):
                        assert a.keys() == b.keys()
                        for name in a:  # the half-light constants differ by < 0.04% (series against exact)
                            assert a[name] == pytest.approx(b[name], rel=1e-3, abs=1e-12), (key, name)
                    else:
                        assert a == b
    assert sum(len(strong.lenstronomy_kwargs(config, s)["kwargs_source"]) for s in scenes) > 5  # sources were drawn


def _lenstronomy_image(config, scene):
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    n, scale = config.image_size, config.pixel_scale
    corner = -(n - 1) / 2 * scale  # pixel (0, 0) centre; x along columns, y along rows, as in lensml
    data = ImageData(image_data=np.zeros((n, n)), transform_pix2angle=np.diag([scale, scale]),
                     ra_at_xy_0=corner, dec_at_xy_0=corner)
    psf = PSF(psf_type="GAUSSIAN", fwhm=config.psf_fwhm[0], pixel_size=scale)
    kw = _lenstronomy_kwargs(config, scene)
    model = ImageModel(data, psf, LensModel(kw["lens_model_list"]), LightModel(kw["source_light_model_list"]),
                       LightModel(kw["lens_light_model_list"]),
                       kwargs_numerics={"supersampling_factor": config.supersampling,
                                        "supersampling_convolution": True})
    return model.image(kw["kwargs_lens"], kw["kwargs_source"], kw["kwargs_lens_light"])


@pytest.mark.parametrize("tolerance", [0.0, 0.02])
def test_render_matches_lenstronomy_pixel_by_pixel(tolerance):
    """Same scene, grid, 3x3 supersampling and Gaussian PSF (convolved at the sub-pixel scale), no noise.

    Tolerance: 0.2% of the peak per pixel and 0.2% in total flux; this scene agrees to 0.005%,
    full scenes with field objects and clumps to 0.1%. What differs legitimately is float32
    against float64, the PSF cut (7 sigma here, 5 sigma in lenstronomy), lenstronomy's smoothing
    of the Sersic cusp, and with tolerance 0.02 lensml's adaptive supersampling (errors up to
    ~0.02 noise sigma, 0.03% of this peak). A wrong convention (q/phi against e1/e2, intermediate
    against major-axis radius, Sersic k or amplitude, x/y swap, half-pixel offset) gives errors
    of 5% to 100%.
    """
    config = dataclasses.replace(surveys.strong_config("space"), adaptive_tolerance=tolerance)
    scene = _lens_and_source(config)
    with strong.render_context():
        ours, source = strong.StrongRenderer(config).render(strong.stack_scenes([scene]))
    ours = ours[0, 0].numpy().astype(np.float64)
    reference = _lenstronomy_image(config, scene)
    peak = reference.max()
    assert np.abs(ours - reference).max() < 2e-3 * peak
    assert ours.sum() == pytest.approx(reference.sum(), rel=2e-3)
    # and the lensed source alone is what lenstronomy gives without the deflector's light
    alone = dataclasses.replace(scene, flux=scene.flux * np.array([[0.0]] + [[1.0]] * (scene.flux.shape[0] - 1)))
    assert np.abs(source[0].numpy() - _lenstronomy_image(config, alone)).max() < 2e-3 * peak


@pytest.mark.parametrize("kind", strong.LOOKALIKE_KINDS)
def test_lookalike_non_lenses_are_unlensed_light(kind):
    """Companions, mergers and knot rings, as drawn, are lenstronomy's image of the same light with
    no lens at all: the look-alikes carry no lensing signal a finder could learn from."""
    config = surveys.strong_config("space")
    scene = next(s for s in (strong.draw_scene(config, 3, i, 0.0) for i in range(300)) if s.kind == kind)
    assert scene.flux[1].sum() > 0 and scene.theta_e == 0
    with strong.render_context():
        ours, _ = strong.StrongRenderer(config).render(strong.stack_scenes([scene]))
    reference = _lenstronomy_image(config, scene)  # its SIE with theta_E 0 and shear 0 deflects nothing
    assert np.abs(ours[0, 0].numpy() - reference).max() < 2e-3 * reference.max()


def test_population_reaches_wide_einstein_radii_and_invisible_sources():
    """Lenses span theta_E 0.5-5" log-uniformly (Ground too: 16% of independent Ground lenses are below
    0.7"), and some Space sources are too faint to see."""
    for survey in ("ground", "space"):
        config = surveys.strong_config(survey)
        lenses = [s for s in (strong.draw_scene(config, 9, i, 1.0) for i in range(600))]
        theta = np.array([s.theta_e for s in lenses])
        assert theta.min() >= 0.5 and theta.max() <= 5.0 and (theta > 4.0).mean() > 0.05 and (theta < 0.7).mean() > 0.08
        assert np.median(np.log(theta)) == pytest.approx(np.log(np.sqrt(0.5 * 5.0)), abs=0.15)
    total_source = np.array([s.flux[1 : 2 + config.clumps_max, 0].sum() for s in lenses])
    faint = -2.5 * np.log10(total_source) > 27.0  # well below the 10-sigma depth of 24.5
    assert 0.05 < faint.mean() < 0.25


@pytest.mark.parametrize("survey", ["space", "ground"])
def test_faint_population_file_redraws_the_same_scenes_fainter_and_with_one_seeing(survey):
    """docs/populations/faint_*.yaml gives the earlier population: every draw the same, only the deflector
    magnitude range and the per-scene seeing differ, and no galaxy is brighter there."""
    path = Path(__file__).resolve().parents[1] / "docs" / "populations" / f"faint_{survey}.yaml"
    faint = surveys.strong_config(survey, overrides=read_config_file(path))
    default = surveys.strong_config(survey, overrides={"theta_e": list(faint.theta_e)})  # Ground radii widened since
    assert default.psf_jitter > 0 and faint.psf_jitter == 0 and faint.lens_mag[0] > default.lens_mag[0] + 2
    brighter = 0
    for i in range(300):
        a, b = strong.draw_scene(default, 3, i, 0.5), strong.draw_scene(faint, 3, i, 0.5)
        assert (a.kind, a.theta_e, a.noise_seed) == (b.kind, b.theta_e, b.noise_seed) and b.seeing == 1.0
        np.testing.assert_array_equal(a.light, b.light)
        deflector_like = [0, 1] if a.kind == "merger" else [0]  # a merger's second galaxy follows the deflector
        others = np.setdiff1d(np.arange(len(a.flux)), deflector_like)
        np.testing.assert_array_equal(a.flux[others], b.flux[others])
        assert np.all(b.flux[deflector_like] <= a.flux[deflector_like] * (1 + 1e-12))
        if a.kind not in ("field", "merger"):
            brighter += bool(a.flux[0, 0] > 2 * b.flux[0, 0])
    assert brighter > 50  # the default population holds the bright deflectors the earlier one lacked


def test_sersic_is_caustics_sersic():
    import caustics

    light = torch.tensor([[0.1, -0.2, 0.6, 0.7, 2.5, 0.4, 3.0]], dtype=torch.float64)
    x = torch.linspace(-2, 2, 401, dtype=torch.float64)[None]
    y = 0.3 * x
    p = [light[:, i : i + 1] for i in range(7)]
    k = caustics.light.func.k_sersic(p[4])
    ours = strong.sersic_brightness(*p, x, y, k)
    theirs = caustics.Sersic(name="s").brightness(x, y, p)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=0)


def test_scene_kinds_and_units():
    config = surveys.strong_config("ground")
    scenes = [strong.draw_scene(config, 5, i, 0.5) for i in range(200)]
    kinds = {s.kind for s in scenes}
    assert kinds == {"lens", *surveys.NONLENS_KINDS}
    for s in scenes:
        source = s.flux[1 : 2 + config.clumps_max].sum()
        assert (source > 0) == (s.kind not in ("no_source", "field"))
        assert (s.theta_e == 0) == (s.kind in ("field", *strong.LOOKALIKE_KINDS))
        if s.kind in strong.LOOKALIKE_KINDS:  # no lensing at all: no mass, no external shear
            assert np.all(s.mass[4:] == 0)
    # lenses and non-lenses share deflectors: only the source decides the label
    a, b = strong.draw_scene(config, 5, 7, 0.0), strong.draw_scene(config, 5, 7, 1.0)
    assert not a.is_lens and b.is_lens
    np.testing.assert_array_equal(a.light[strong.n_slots(config) - config.neighbours_max :],
                                  b.light[strong.n_slots(config) - config.neighbours_max :])
    if a.kind != "field":
        np.testing.assert_array_equal(a.light[0], b.light[0])
    # red deflectors, blue sources: g - r larger for the deflector in every scene
    lens = [s for s in scenes if s.kind == "lens"]
    assert all(-2.5 * math.log10(s.flux[0, 2] / s.flux[0, 0]) > -2.5 * math.log10(s.flux[1, 2] / s.flux[1, 0])
               for s in lens if s.flux[1, 0] > 0)


# --- (2) layout, CSV and headers ----------------------------------------------------------------


@pytest.mark.parametrize("survey", ["space", "ground"])
def test_challenge_layout(tmp_path, survey):
    overrides = {"mask_fraction": 1.0} if survey == "ground" else None
    path = simulate_strong(survey, 6, tmp_path, seed=2, catalogue=True, config_overrides=overrides, **TINY)
    assert path == tmp_path / "classifications.csv"
    names = {"space": [("Band1", "EUC_VIS")],
             "ground": [("Band1", "SDSS_R"), ("Band2", "SDSS_I"), ("Band3", "SDSS_G"), ("Band4", "SDSS_U")]}[survey]
    masked = 0
    for folder, stem in names:
        files = sorted((tmp_path / "Public" / folder).iterdir())
        assert [f.name for f in files] == [f"image{stem}-{100000 + i}.fits" for i in range(6)]
        for f in files:
            with fits.open(f) as hdus:
                assert len(hdus) == 1 and hdus[0].header["BITPIX"] == -32 and hdus[0].data.shape == (101, 101)
                header = hdus[0].header
                assert header["BAND"] == stem.split("_")[1]
                assert header["PIXSCALE"] == (0.1 if survey == "space" else 0.2)
                assert header["PSFFWHM"] > 0 and header["CTYPE1"] == "RA---TAN"
                data = hdus[0].data
                masked += int((data == 100).any())
                good = data[data != 100]
                assert 1e-13 < np.median(np.abs(good)) < 1e-10  # the challenge's flux scale
    assert (masked > 0) == (survey == "ground")
    with (tmp_path / "classifications.csv").open() as handle:
        assert handle.readline().strip() == ",".join(COLUMNS)
    rows = _labels(tmp_path)
    assert [int(r["ID"]) for r in rows] == list(range(100000, 100006))
    for r in rows:
        lens = r["is_lens"] == "1"
        assert (float(r["Einstein_area"]) > 0) == lens
        if not lens:
            assert r["numb_pix_lensed_image"] == "0" and float(r["flux_lensed_image_in_sigma"]) == 0
    catalogue = (tmp_path / f"{survey}_image_catalog.csv").read_text().splitlines()
    assert catalogue[0].startswith("#")
    body = [line for line in catalogue if not line.startswith("#")]
    assert body[0] == "ID,no_source"
    assert [line.split(",") for line in body[1:]] == [[r["ID"], str(1 - int(r["is_lens"]))] for r in rows]
    record = json.loads((tmp_path / "simulation.json").read_text())
    assert record["kind"] == "strong" and record["survey"] == survey and record["seed"] == 2
    assert not (tmp_path / ".parts").exists()


# --- (3) reproducibility and the lens fraction --------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    simulate_strong("space", 4, tmp_path / "a", seed=11, **TINY)
    simulate_strong("space", 4, tmp_path / "b", seed=11, **TINY)
    simulate_strong("space", 4, tmp_path / "c", seed=12, **TINY)
    a, b, c = (_files(tmp_path / k) for k in "abc")
    assert a == b
    images = [k for k in a if k.endswith(".fits")]
    assert len(images) == 4 and all(a[k] != c[k] for k in images)


def test_workers_do_not_change_the_bytes(tmp_path):
    simulate_strong("ground", 4, tmp_path / "one", seed=8, workers=1, **TINY)
    simulate_strong("ground", 4, tmp_path / "two", seed=8, workers=2, **TINY)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_lens_fraction_extremes(tmp_path, fraction):
    simulate_strong("space", 4, tmp_path, seed=1, lens_fraction=fraction, **TINY)
    assert {r["is_lens"] for r in _labels(tmp_path)} == {str(int(fraction))}


def test_prefix_and_refusal(tmp_path):
    """A longer run extends a shorter one file by file; other settings are refused."""
    simulate_strong("space", 3, tmp_path / "short", seed=4, **TINY)
    simulate_strong("space", 5, tmp_path / "long", seed=4, **TINY)
    short, long = _files(tmp_path / "short"), _files(tmp_path / "long")
    assert all(long[k] == v for k, v in short.items() if k.endswith(".fits"))
    with pytest.raises(BadInputError, match="seed"):
        simulate_strong("space", 3, tmp_path / "short", seed=5, **TINY)
    with pytest.raises(BadInputError):
        simulate_strong("space", 3, tmp_path / "x", config_overrides={"no_such_setting": 1}, **TINY)


# --- (4) shards ---------------------------------------------------------------------------------


def test_two_shards_and_merge_equal_one_run(tmp_path):
    kwargs = dict(seed=9, config_overrides={"mask_fraction": 0.5}, **TINY)
    simulate_strong("ground", 5, tmp_path / "one", catalogue=True, **kwargs)
    sharded = tmp_path / "sharded"
    first = simulate_strong("ground", 5, sharded, shard=parse_shard("1/2"), **kwargs)
    assert first.name == "classifications.shard-1-of-2.csv"
    with pytest.raises(BadInputError, match="shard"):
        merge_shards(sharded)
    simulate_strong("ground", 5, sharded, shard=(2, 2), **kwargs)
    assert merge_shards(sharded, catalogue=True) == sharded / "classifications.csv"
    assert _files(sharded) == _files(tmp_path / "one")
    with pytest.raises(BadInputError):
        parse_shard("0/2")


# --- (5) resuming -------------------------------------------------------------------------------


def test_rerun_restores_a_deleted_file(tmp_path):
    simulate_strong("ground", 4, tmp_path, seed=6, **TINY)
    before = _files(tmp_path)
    victim = tmp_path / "Public" / "Band3" / "imageSDSS_G-100002.fits"
    victim.unlink()
    (tmp_path / "classifications.csv").unlink()
    simulate_strong("ground", 4, tmp_path, seed=6, **TINY)
    assert _files(tmp_path) == before


# --- preview ------------------------------------------------------------------------------------


@pytest.mark.parametrize("survey", ["space", "ground"])
def test_preview_of_real_challenge_samples(challenge_samples, tmp_path, survey):
    """Six panels in one row (1.6" x 2.2" at 100 dpi); Ground in colour from its bands, Space in grey."""
    from PIL import Image

    out = preview_grid(challenge_samples / survey, tmp_path / "grid.png", n_lenses=3, n_nonlenses=3)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert pixels.shape == (220, 960, 3)
    assert all(panel.std() > 5 for panel in np.split(pixels, 6, axis=1))  # every panel holds an image
    coloured = (np.abs(pixels[..., 0] - pixels[..., 2]) > 10).mean()  # the titles aside
    assert coloured > 0.2 if survey == "ground" else coloured < 0.02


def test_psf_jitter_gives_each_scene_its_own_seeing(tmp_path):
    """With psf_jitter j, scene IDs draw one of PSF_LEVELS seeings in [1 - j, 1 + j]; the file's header
    says which, and the image is the scene rendered with that PSF (a wider PSF: a fainter peak)."""
    overrides = {"psf_jitter": 0.3, "neighbours_mean": 0.0}
    simulate_strong("space", 24, tmp_path, seed=6, config_overrides=overrides, **TINY)
    config = surveys.strong_config("space", overrides=overrides)
    scenes = [strong.draw_scene(config, 6, 100000 + i, 0.5) for i in range(24)]
    levels = np.linspace(0.7, 1.3, surveys.PSF_LEVELS)
    assert {round(s.seeing, 9) for s in scenes} <= {round(v, 9) for v in levels}
    assert len({s.seeing for s in scenes}) >= 3
    peaks = {}
    for scene in scenes:
        path = tmp_path / f"Public/Band1/imageEUC_VIS-{scene.image_id}.fits"
        assert fits.getheader(path)["PSFFWHM"] == pytest.approx(0.18 * scene.seeing)
        with strong.render_context():
            alone, _ = strong.StrongRenderer(config.with_seeing(scene.seeing)).render(strong.stack_scenes([scene]))
            wide, _ = strong.StrongRenderer(config.with_seeing(1.5)).render(strong.stack_scenes([scene]))
        written = fits.getdata(path).astype(np.float64)
        noise = written - alone[0, 0].numpy()
        assert noise.std() < 1.2 * config.noise_sigma[0]  # the rest is the survey's noise
        peaks[scene.image_id] = (float(alone.max()), float(wide.max()))
    assert all(sharp > broad for sharp, broad in peaks.values())


def test_min_lensed_pixels_labels_invisible_lenses_as_non_lenses(tmp_path):
    """The label rule: with min_lensed_pixels N, a lens whose arcs exceed 1 sigma in fewer than N
    pixels is labelled 0; the visibility columns still say what it holds; the images do not change."""
    plain, strict = tmp_path / "plain", tmp_path / "strict"
    simulate_strong("space", 40, plain, seed=8, lens_fraction=1.0, **TINY)
    simulate_strong("space", 40, strict, seed=8, lens_fraction=1.0, config_overrides={"min_lensed_pixels": 60}, **TINY)
    a = list(csv.DictReader(open(plain / "classifications.csv")))
    b = list(csv.DictReader(open(strict / "classifications.csv")))
    assert all(r["is_lens"] == "1" for r in a)
    for before, after in zip(a, b):
        pixels = int(before["numb_pix_lensed_image"])
        assert after["is_lens"] == ("1" if pixels >= 60 else "0")
        assert after["numb_pix_lensed_image"] == before["numb_pix_lensed_image"]
    assert 0 < sum(r["is_lens"] == "0" for r in b) < len(b)
    name = "Public/Band1/imageEUC_VIS-100005.fits"
    assert (plain / name).read_bytes() == (strict / name).read_bytes()
