"""Real source morphologies (`simulate strong --sources`): placed, lensed and convolved as lenstronomy
does it, drawn from their own stream, recorded, and refused cleanly when unusable."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from astropy.io import fits

from lensml.cli import main
from lensml.errors import BadInputError, MissingFileError
from lensml.simulate import real_sources, strong, surveys
from lensml.simulate.strong_files import simulate_strong

from test_simulate_strong import _lenstronomy_image

TINY = dict(batch_size=8, progress=False)


def _gaussian_stamp(sigma_px: float = 6.0, size: int = 71) -> np.ndarray:
    yy, xx = np.indices((size, size)) - (size - 1) / 2
    return np.exp(-(xx**2 + yy**2) / (2 * sigma_px**2))


def test_a_gaussian_stamp_lenses_like_lenstronomys_gaussian_source():
    """A stamp of a round Gaussian, scaled to the drawn half-light radius, must image through the SIE
    exactly as lenstronomy images a Gaussian (Sersic n = 0.5) source of that radius."""
    config = surveys.strong_config("space")
    bank = real_sources._bank([_gaussian_stamp()], origin="test")
    assert bank.hlr_pixels[0] == pytest.approx(1.1774 * 6.0, rel=0.01)  # the half-light radius of a Gaussian
    slots = strong.n_slots(config)
    light, flux = np.zeros((slots, 6)), np.zeros((slots, 1))
    light[1] = (0.12, 0.07, 1.0, 0.4, 0.5, 0.25)
    flux[1] = 5e-10
    mass = np.array([0.02, -0.01, 0.7, 0.4, 1.1, 0.02, -0.03])
    scene = strong.Scene(image_id=1, is_lens=True, kind="lens", theta_e=1.1, mass=mass, light=light, flux=flux,
                         noise_factor=1.0, mask=None, noise_seed=0)
    reference = _lenstronomy_image(config, scene)
    detached, total = real_sources.detach_source(scene, config)
    assert not detached.flux[1:].any() and total[0] == pytest.approx(5e-10)
    with strong.render_context():
        renderer = strong.StrongRenderer(config)
        images, alone = real_sources.render_real_sources(renderer, [detached], [total], bank, [(0, False)])
    ours = images[0, 0].double().numpy()
    assert np.abs(ours - reference).max() < 1e-2 * reference.max()
    assert ours.sum() == pytest.approx(reference.sum(), rel=5e-3)
    np.testing.assert_allclose(alone[0].numpy(), images[0, 0].numpy(), rtol=1e-6, atol=0)


@pytest.mark.parametrize("survey", ["space", "ground"])
def test_real_sources_keep_their_flux_however_compact(survey):
    """Unlensed compact stamps (0.1" half-light radius, half a Ground pixel) are sampled on the
    supersampled grid in every survey, so the image holds the drawn flux in every band."""
    config = surveys.strong_config(survey)
    yy, xx = np.indices((41, 41)) - 20.0
    bank = real_sources._bank([np.exp(-(xx**2 / 18 + yy**2 / 8))], origin="test")
    slots = strong.n_slots(config)
    light = np.zeros((slots, 6))
    light[1] = (0.013, -0.021, 1.0, 0.3, 0.5, 0.1)
    scenes, totals, picks = [], [], []
    for k, offset in enumerate((0.0, 0.05, 0.1)):  # sub-pixel positions
        light_k = light.copy()
        light_k[1, :2] += offset
        scenes.append(strong.Scene(image_id=k, is_lens=False, kind="companion", theta_e=0.0,
                                   mass=np.array([0.0, 0.0, 0.8, 0.0, 0.0, 0.0, 0.0]), light=light_k,
                                   flux=np.zeros((slots, config.n_bands)), noise_factor=1.0, mask=None, noise_seed=0))
        totals.append(np.arange(1.0, config.n_bands + 1.0))
        picks.append((0, False))
    with strong.render_context():
        images, _ = real_sources.render_real_sources(strong.StrongRenderer(config), scenes, totals, bank, picks)
    sums = images.double().sum((-2, -1)).numpy()
    np.testing.assert_allclose(sums, np.array(totals), rtol=0.01)


def test_stamp_angle_and_mirror_follow_the_drawn_orientation():
    """An elongated stamp (major axis along x) placed unlensed at angle phi has its major axis at phi."""
    config = surveys.strong_config("space")
    yy, xx = np.indices((61, 61)) - 30.0
    bank = real_sources._bank([np.exp(-(xx**2 / 200 + yy**2 / 20))], origin="test")
    slots = strong.n_slots(config)
    light, flux = np.zeros((slots, 6)), np.zeros((slots, 1))
    phi = 0.6
    light[1] = (0.0, 0.0, 1.0, phi, 0.5, 0.5)
    scene = strong.Scene(image_id=1, is_lens=False, kind="companion", theta_e=0.0,
                         mass=np.array([0.0, 0.0, 0.8, 0.0, 0.0, 0.0, 0.0]), light=light, flux=flux,
                         noise_factor=1.0, mask=None, noise_seed=0)
    for mirrored in (False, True):
        with strong.render_context():
            image, _ = real_sources.render_real_sources(strong.StrongRenderer(config), [scene], [np.array([1.0])],
                                                        bank, [(0, mirrored)])
        img = image[0, 0].double().numpy()
        y, x = np.indices(img.shape) - 50.0
        qxx, qyy, qxy = (img * x * x).sum(), (img * y * y).sum(), (img * x * y).sum()
        assert 0.5 * np.arctan2(2 * qxy, qxx - qyy) == pytest.approx(phi, abs=0.02)  # symmetric: mirror keeps it


def test_bank_from_a_cube_and_from_a_folder(tmp_path):
    stamps = np.stack([_gaussian_stamp(s, 41) for s in (3.0, 5.0)]).astype(np.float32)
    fits.PrimaryHDU(stamps).writeto(tmp_path / "cube.fits")
    (tmp_path / "folder").mkdir()
    for k, stamp in enumerate(stamps):
        fits.PrimaryHDU(stamp + 0.01).writeto(tmp_path / "folder" / f"g{k}.fits")  # a sky level is removed
    cube, folder = real_sources.load_sources(str(tmp_path / "cube.fits")), real_sources.load_sources(str(tmp_path / "folder"))
    assert len(cube) == len(folder) == 2
    np.testing.assert_allclose(cube.hlr_pixels, [1.1774 * 3, 1.1774 * 5], rtol=0.03)  # pixelised Gaussians
    np.testing.assert_allclose(folder.hlr_pixels, cube.hlr_pixels, rtol=1e-3)
    assert all(abs(s.sum() - 1) < 1e-5 and s.min() >= 0 for s in cube.stamps)


def test_hubble_deep_field_bank_holds_resolved_galaxies():
    bank = real_sources.load_sources("hdf")
    assert len(bank) > 100
    assert np.median(bank.hlr_pixels) > 2 and all(s.shape[0] >= 10 for s in bank.stamps)


def test_sources_change_only_the_sources_and_are_recorded(tmp_path, tmp_path_factory):
    folder = tmp_path / "stamps"
    folder.mkdir()
    fits.PrimaryHDU(_gaussian_stamp(4.0, 41).astype(np.float32)).writeto(folder / "g.fits")
    plain, real = tmp_path / "plain", tmp_path / "real"
    simulate_strong("space", 16, plain, seed=4, **TINY)
    simulate_strong("space", 16, real, seed=4, sources=str(folder), **TINY)
    config = surveys.strong_config("space")
    changed = 0
    for i in range(100000, 100016):
        name = f"Public/Band1/imageEUC_VIS-{i}.fits"
        same = (plain / name).read_bytes() == (real / name).read_bytes()
        kind = strong.draw_scene(config, 4, i, 0.5).kind
        assert same == (kind not in strong.SOURCE_KINDS), (i, kind)
        changed += not same
    assert changed > 0
    record = json.loads((real / "simulation.json").read_text())
    assert record["sources"]["galaxies"] == 1 and record["sources_origin"] == str(folder.resolve())
    with pytest.raises(BadInputError, match="sources"):  # the same folder with other sources
        simulate_strong("space", 16, real, seed=4, sources="hdf", **TINY)


def test_unusable_sources_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(MissingFileError):
        real_sources.load_sources(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no FITS"):
        real_sources.load_sources(str(tmp_path / "empty"))
    fits.PrimaryHDU(np.zeros((20, 20), np.float32)).writeto(tmp_path / "blank.fits")
    assert main(["simulate", "strong", "--survey", "space", "-n", "2", "-o", str(tmp_path / "out"),
                 "--sources", str(tmp_path / "blank.fits")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no usable galaxy image" in err
