"""`train --metacal`: a network trained on the images metacalibration shows it, and applied through it alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lensml.cli import main
from lensml.modelfile import read_info
from lensml.shear.network_metacal import correction_noise, metacal_network_inputs, metacal_training_inputs
from lensml.simulate.weak import WeakSimConfig, WeakStampRenderer, draw_params
from lensml.simulate.weak_files import simulate_weak

SMALL = dict(stamp_size=32, pixel_scale=0.2, psf_fwhm=(0.6, 0.8), psf_beta=(3.5, 3.5), galaxy_profile="sersic",
             sersic_n=(0.8, 2.0), hlr=(0.3, 0.6), e_int_sigma=0.3, shear_max=0.05, shift_radius=0.5)


def run(*args):
    return main(["-q", *map(str, args)])


@pytest.fixture(scope="module")
def noisy_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("metacal_train")
    return simulate_weak(WeakSimConfig(**SMALL, noise=True, snr=(40.0, 40.0)), 64, out, seed=5, workers=1,
                         progress=False).parent


def test_recorded_noise_sigma_is_the_noise_in_the_stamps(noisy_set):
    """Sky-noise stamps record sigma = sqrt(sky level) x pixel scale; the drawn noise has that spread."""
    config = WeakSimConfig(**SMALL, noise=True, snr=(40.0, 40.0))
    renderer, clean_renderer = WeakStampRenderer(config), WeakStampRenderer(WeakSimConfig(**SMALL))
    entries = json.loads((noisy_set / "data.json").read_text())
    residuals = []
    for i in range(16):
        params = draw_params(config, 5, i, renderer.psf_hlr)
        noisy, clean = renderer.render(params)[0], clean_renderer.render(params)[0]
        scale = np.sum(noisy * clean) / np.sum(clean * clean)  # addNoiseSNR rescales the flux
        residuals.append(noisy - scale * clean)
    sigma = entries[0]["noise_sigma"]
    assert all(e["noise_sigma"] == sigma for e in entries)
    assert np.std(residuals) == pytest.approx(sigma, rel=0.05)


def test_training_images_are_the_noshear_images_metacal_shows(noisy_set):
    from lensml.data.stamps import load_stamps
    from lensml.io.manifest import read_manifest

    manifest = read_manifest(noisy_set)
    raw = load_stamps(manifest, ("galaxy", "psf"), "none", indices=range(6), progress=False)
    sigma = np.array([e["noise_sigma"] for e in manifest.entries[:6]])
    training = metacal_training_inputs(("galaxy", "psf"), "rms", raw[:, 0], raw[:, 1], sigma, 9, torch.device("cpu"))
    noise = correction_noise(raw.shape[-2:], sigma, range(6), 9)
    shown = metacal_network_inputs(("galaxy", "psf"), "rms", raw[:, 0], raw[:, 1], torch.device("cpu"), noise)
    np.testing.assert_array_equal(training, shown[:, 0])
    assert not np.allclose(shown[:, 0], shown[:, 1])  # noshear is not 1p


def test_every_image_the_network_sees_is_centred_on_its_own_centroid(noisy_set):
    """The centroid belongs to the estimator: measured on each noise-corrected counterfactual, not
    carried over from the original stamp (whose centroid noise then biases the response, -0.5% in m
    at SNR 30). Each of the five images' weighted centroids sits on the stamp's centre."""
    from lensml.data.stamps import load_stamps
    from lensml.io.manifest import read_manifest
    from lensml.shear.metacal import CENTROID_WEIGHT_PER_SIGMA, reconv_sigma_from_psf, weighted_centroid

    manifest = read_manifest(noisy_set)
    raw = load_stamps(manifest, ("galaxy", "psf"), "none", indices=range(6), progress=False)
    sigma = np.array([e["noise_sigma"] for e in manifest.entries[:6]])
    noise = correction_noise(raw.shape[-2:], sigma, range(6), 9)
    shown = metacal_network_inputs(("galaxy",), "rms", raw[:, 0], raw[:, 1], torch.device("cpu"), noise)[:, :, 0]
    weight = CENTROID_WEIGHT_PER_SIGMA * reconv_sigma_from_psf(torch.from_numpy(raw[:, 1]).double())
    centres = weighted_centroid(torch.from_numpy(shown).flatten(0, 1), weight.repeat_interleave(5))
    assert float(centres.abs().max()) < 1e-4


def _chunking_changes_nothing(pairs, model, tmp_path, monkeypatch) -> None:
    """Scored a few stamps at a time (pairs split across chunks), every estimator's m and c and every
    per-stamp metacal answer are those of one pass: correction noises are keyed by pair, not by position."""
    whole, chunked, csv_whole, csv_chunked = (tmp_path / name for name in ("w.json", "c.json", "w.csv", "c.csv"))
    assert run("evaluate", "-i", pairs, "-m", model, "--anacal", "--json", whole) == 0
    assert run("predict", "-i", pairs, "-m", model, "-o", csv_whole) == 0
    monkeypatch.setattr("lensml.workflows.shear_eval.EVAL_CHUNK_STAMPS", 3)
    assert run("evaluate", "-i", pairs, "-m", model, "--anacal", "--json", chunked) == 0
    assert run("predict", "-i", pairs, "-m", model, "-o", csv_chunked) == 0
    # the baselines (float64, stamp by stamp) exactly as in one pass
    expected, got = (json.loads(path.read_text()) for path in (whole, chunked))
    for name in ("hsm", "anacal"):
        assert got[name] == expected[name]
    # the network's answers to float32 rounding, which its batch size moves (R is a difference / 0.02)
    np.testing.assert_allclose(np.loadtxt(csv_chunked, delimiter=",", skiprows=1, usecols=range(2, 8)),
                               np.loadtxt(csv_whole, delimiter=",", skiprows=1, usecols=range(2, 8)),
                               rtol=0, atol=2e-5)


def test_metacal_model_end_to_end(noisy_set, tmp_path, capsys, monkeypatch):
    model = tmp_path / "mc"
    assert run("train", "-i", noisy_set, "-m", model, "--metacal", "--epochs", 1, "--batch-size", 16,
               "--seed", 2, "--width", 8) == 0
    info = read_info(model)
    assert info.metacal and info.arch == "shear_net" and info.training["config"]["target"] == "shape"
    assert info.arch_kwargs["width"] == 8 and info.build()[0][1].out_channels == 8
    assert not info.calibration  # its response calibrates it
    pairs = tmp_path / "pairs"
    assert run("simulate", "weak", "--pairs", "-n", 4, "--ring", 2, "-o", pairs, "--stamp-size", 32,
               "--pixel-scale", 0.2, "--psf-fwhm", 0.7, "--psf-beta", 3.5, "--hlr", 0.4, "--snr", 40,
               "--seed", 3, "--workers", 1) == 0
    capsys.readouterr()
    assert run("evaluate", "-i", pairs, "-m", model, "--hsm", "none", "--json", tmp_path / "e.json") == 0
    results = json.loads((tmp_path / "e.json").read_text())
    assert "paired" in results["metacal"] and np.shape(results["metacal"]["response_mean"]) == (2, 2)
    assert "shear_net metacal" in capsys.readouterr().out
    _chunking_changes_nothing(pairs, model, tmp_path, monkeypatch)
    assert run("predict", "-i", pairs / "gal_0.fits", "--psf", pairs / "psf_0.fits", "-m", model) == 0
    assert "R11" in capsys.readouterr().out
    assert run("calibrate", "-i", pairs, "-m", model) == 2
    assert "calibrated by its own response" in capsys.readouterr().err


def test_metacal_and_shape_target_refusals(noisy_set, tmp_path, capsys):
    assert run("train", "-i", noisy_set, "-m", tmp_path / "v", "--metacal", "--arch", "lensnet_vgg19") == 2
    assert "takes the PSF image" in capsys.readouterr().err
    entries = json.loads((noisy_set / "data.json").read_text())
    bare = tmp_path / "bare"
    bare.mkdir()
    for e in entries:
        for key in ("galaxy", "psf"):
            (bare / e[key]).symlink_to(noisy_set / e[key])
        del e["e_int"]
    (bare / "data.json").write_text(json.dumps(entries))
    assert run("train", "-i", bare, "-m", tmp_path / "s", "--target", "shape", "--epochs", 1) == 2
    assert "intrinsic shape" in capsys.readouterr().err
    assert run("train", "-i", bare, "-m", tmp_path / "t", "--target", "shape", "--targets", "g1", "e1") == 2
