import json

import galsim
import numpy as np
import pytest
from astropy.io import fits

from lensml.baselines.hsm import hsm_shear
from lensml.errors import BadInputError
from lensml.io.manifest import read_manifest
from lensml.metrics.shear import shear_bias
from lensml.simulate.weak import WeakSimConfig, WeakStampRenderer, draw_params
from lensml.simulate.weak_files import simulate_weak


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_manifest_has_lensnet_keys_and_extras(weak_set):
    manifest = read_manifest(weak_set)
    entry = manifest.entries[5]
    assert list(entry)[:6] == ["galaxy", "psf", "e1", "e2", "g1", "g2"]
    assert entry["galaxy"] == "gal_5.fits" and entry["galaxy_tif"] == "gal_5.tif"
    assert entry["snr"] == 80.0 and entry["e_int"] == 0.0 and "hlr" in entry
    g = np.array(manifest.values("g1") + manifest.values("g2"))
    e = np.array(manifest.values("e1") + manifest.values("e2"))
    assert np.abs(g).max() <= 0.4 and np.abs(e).max() <= 0.04
    with fits.open(weak_set.parent / "gal_5.fits") as hdus:
        assert hdus[0].data.shape == (40, 40) and hdus[0].header["BITPIX"] == -32
        assert hdus[0].header["G1"] == pytest.approx(entry["g1"])
    record = json.loads((weak_set.parent / "simulation.json").read_text())
    assert record["seed"] == 7 and record["config"]["snr"] == [80.0, 80.0]


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    config = WeakSimConfig(noise=True, galaxy_profile="sersic")
    simulate_weak(config, 12, tmp_path / "a", seed=11, workers=1, progress=False)
    simulate_weak(config, 12, tmp_path / "b", seed=11, workers=2, progress=False)
    simulate_weak(config, 12, tmp_path / "c", seed=12, workers=1, progress=False)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert a["gal_3.fits"] != c["gal_3.fits"]


def test_rerun_draws_only_missing_stamps_and_matches(tmp_path):
    config = WeakSimConfig(noise=True)
    simulate_weak(config, 10, tmp_path / "full", seed=5, progress=False)
    part = tmp_path / "part"
    simulate_weak(config, 10, part, seed=5, progress=False)
    (part / "gal_4.fits").unlink()
    (part / "data.json").unlink()
    simulate_weak(config, 10, part, seed=5, progress=False)
    assert _files(part) == _files(tmp_path / "full")
    with pytest.raises(BadInputError, match="different simulation"):
        simulate_weak(config, 10, part, seed=6, progress=False)


def test_stamp_is_independent_of_the_others():
    config = WeakSimConfig(noise=True)
    renderer = WeakStampRenderer(config)
    alone = renderer.render(draw_params(config, 3, 42, renderer.psf_hlr))
    WeakStampRenderer(config).render(draw_params(config, 3, 41, renderer.psf_hlr))
    again = renderer.render(draw_params(config, 3, 42, renderer.psf_hlr))
    np.testing.assert_array_equal(alone[0], again[0])


def test_galaxy_matches_a_direct_galsim_drawing():
    """The stamp equals GalSim drawing the documented LensNet objects by hand."""
    config = WeakSimConfig()
    renderer = WeakStampRenderer(config)
    p = draw_params(config, 1, 0, renderer.psf_hlr)
    psf = galsim.Moffat(beta=3, fwhm=2.85, trunc=5.7).shear(e1=p["e1"], e2=p["e2"])
    gal = galsim.Exponential(half_light_radius=0.98 * psf.original.half_light_radius)
    gal = gal.shear(e=p["e_int"], beta=p["beta_int_deg"] * galsim.degrees).shear(g1=p["g1"], g2=p["g2"])
    gal = gal.shift(p["dx"], p["dy"])
    expected = galsim.Convolve(gal, psf).drawImage(nx=40, ny=40, scale=1.0).array
    got, _ = renderer.render(p)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * expected.max())


@pytest.mark.parametrize("profile", ["exponential", "sersic"])
def test_hsm_recovers_the_manifest_shear_on_noise_free_round_galaxies(tmp_path, profile):
    """Cross-check against an independent estimator: GalSim's HSM on our stamps gives our g1, g2."""
    config = WeakSimConfig(e_int_sigma=0.0, galaxy_profile=profile, sersic_n=(0.8, 2.0))
    manifest = read_manifest(simulate_weak(config, 40, tmp_path, seed=2, workers=2, progress=False))
    gal = np.stack([fits.getdata(manifest.image_path(i, "galaxy")) for i in range(40)])
    psf = np.stack([fits.getdata(manifest.image_path(i, "psf")) for i in range(40)])
    measured = hsm_shear(gal, psf, "REGAUSS", progress=False)
    assert np.isfinite(measured).all()
    for k, key in enumerate(["g1", "g2"]):
        fit = shear_bias(manifest.values(key), measured[:, k])
        assert abs(fit["m"]) < 0.02, fit
        assert abs(fit["c"]) < 2e-3, fit


def test_snr_option_sets_the_noise_level():
    """GalSim's SNR definition: sqrt(sum I^2) / sigma, with sigma^2 the sky variance per pixel."""
    config = WeakSimConfig(noise=True, snr=(30.0, 30.0), e_int_sigma=0.0, stamp_size=64)
    renderer = WeakStampRenderer(config)
    ratios = []
    for i in range(8):
        p = draw_params(config, 0, i, renderer.psf_hlr)
        noisy, _ = renderer.render(p)
        clean, _ = WeakStampRenderer(WeakSimConfig(e_int_sigma=0.0, stamp_size=64)).render(p)
        scale = np.sum(noisy * clean) / np.sum(clean * clean)  # flux rescaling applied by addNoiseSNR
        sigma = np.std(noisy - scale * clean)
        ratios.append(np.sqrt(np.sum((scale * clean) ** 2)) / sigma)
    assert np.median(ratios) == pytest.approx(30.0, rel=0.1)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"stamp_size": 4}, "stamp_size"),
        ({"galaxy_profile": "blob"}, "galaxy_profile"),
        ({"psf_e_max": 0.7}, "psf_e_max"),
        ({"snr": (50.0, 10.0)}, "above high"),
        ({"sersic_n": (0.1, 2.0)}, "sersic_n"),
    ],
)
def test_bad_settings_are_clear_errors(settings, message):
    with pytest.raises(BadInputError, match=message):
        WeakSimConfig(**settings)


def test_shards_plus_merge_equal_one_run(tmp_path, capsys):
    from lensml.cli import main

    config = WeakSimConfig(noise=True)
    simulate_weak(config, 11, tmp_path / "one", seed=9, progress=False)
    for k in (1, 2, 3):
        assert main(["-q", "simulate", "weak", "-n", "11", "--noise", "--seed", "9", "--workers", "1",
                     "-o", str(tmp_path / "sharded"), "--shard", f"{k}/3"]) == 0
        if k == 2:
            assert main(["simulate", "merge", "-o", str(tmp_path / "sharded")]) == 2
            assert "no finished shard" in capsys.readouterr().err
    assert main(["simulate", "merge", "-o", str(tmp_path / "sharded")]) == 0
    sharded = {k: v for k, v in _files(tmp_path / "sharded").items() if ".shard-" not in k}
    assert sharded == _files(tmp_path / "one")


def test_psf_drawn_per_stamp_from_a_range(tmp_path):
    """A PSF range draws FWHM and beta per stamp (recorded), and the PSF file is that Moffat, as GalSim draws it."""
    import json

    import galsim
    from astropy.io import fits

    from lensml.simulate.weak import WeakSimConfig
    from lensml.simulate.weak_files import simulate_weak

    config = WeakSimConfig(stamp_size=32, pixel_scale=0.2, psf_fwhm=(0.6, 1.0), psf_beta=(2.5, 4.5), psf_e_max=0.0)
    manifest = simulate_weak(config, 6, tmp_path, seed=2, progress=False)
    entries = json.loads(manifest.read_text())
    fwhm = [e["psf_fwhm"] for e in entries]
    assert all(0.6 <= f <= 1.0 for f in fwhm) and len(set(fwhm)) == 6
    for e in entries[:2]:
        psf = galsim.Moffat(beta=e["psf_beta"], fwhm=e["psf_fwhm"], trunc=2.0 * e["psf_fwhm"])
        expected = psf.drawImage(nx=32, ny=32, scale=0.2).array
        np.testing.assert_allclose(fits.getdata(tmp_path / e["psf"]), expected, atol=1e-7)
    # one fixed PSF draws nothing more: the stamps of LensNet's distribution are unchanged
    fixed = simulate_weak(WeakSimConfig(stamp_size=32), 2, tmp_path / "fixed", seed=2, progress=False)
    assert "psf_fwhm" not in json.loads(fixed.read_text())[0]
