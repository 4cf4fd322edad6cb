"""Trained models that come with lensml: listed, usable as -m pretrained:NAME, read-only, in the wheel."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import galsim
import numpy as np
import pytest
import torch

from lensml.cli import main
from lensml.modelfile import load_model
from lensml.pretrained import catalogue
from lensml.models.shear import leading_crop
from lensml.shear.network_metacal import network_metacal
from lensml.workflows.lens_predict import predict_lens

from conftest import SAMPLE_LABELS

ROOT = Path(__file__).resolve().parents[1]
SCALE_ARCSEC = 0.2
FINDERS = [("space", "pretrained:lastro_epfl_space"), ("space", "pretrained:cas_swinburne_space"),
           ("ground", "pretrained:lastro_epfl_ground")]
CONVOLUTIONS = {"lastro_epfl": 8, "cas_swinburne": 3}  # the architectures' Conv2d layers, one grid each


def run(*args):
    return main(["-q", *map(str, args)])


def _ring(g1: float, g2: float, n_orient: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """An elliptical exponential at `n_orient` ring orientations, sheared by (g1, g2), Moffat 0.8" PSF."""
    psf = galsim.Moffat(beta=3.5, fwhm=0.8)
    psf_image = psf.drawImage(nx=64, ny=64, scale=SCALE_ARCSEC).array
    stamps = []
    for k in range(n_orient):
        galaxy = galsim.Exponential(half_light_radius=0.6).shear(g=0.25, beta=(20 + 180 * k / n_orient) * galsim.degrees)
        drawn = galsim.Convolve(galaxy.shear(g1=g1, g2=g2), psf).drawImage(nx=64, ny=64, scale=SCALE_ARCSEC)
        stamps.append(drawn.array)
    return np.stack(stamps), np.stack([psf_image] * n_orient)


def test_models_pretrained_lists_every_shipped_model(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    shipped_files = {path.name for path in (ROOT / "src" / "lensml" / "pretrained").glob("*.safetensors")}
    assert len(shipped_files) >= 4  # a shear network, lens finders for Space and Ground
    assert {entry["file"] for entry in catalogue().values()} == shipped_files  # every file listed, nothing else
    assert run("models", "--pretrained") == 0
    out = capsys.readouterr().out
    assert all(f"pretrained:{name}" in out for name in catalogue())
    assert max(len(line) for line in out.splitlines()) <= 80  # wrapped to the terminal
    words = " ".join(out.split())
    assert all(" ".join(e[key].split()) in words for e in catalogue().values() for key in ("trained_on", "scores"))
    assert all((ROOT / "src" / "lensml" / "pretrained" / e["file"]).is_file() for e in catalogue().values())


def test_shipped_shear_network_measures_a_ring_shear():
    """Metacalibrated, the shipped network recovers a shear of a few percent from one ring of a galaxy
    it never saw (Moffat PSF, exponential profile), with no calibration step."""
    net, info = load_model("pretrained:shear_net_ground")
    assert info.metacal and info.task == "shear"
    galaxies, psfs = _ring(0.03, -0.02)
    g, r = network_metacal(net, info, galaxies, psfs, torch.device("cpu"), tta=2)
    shear = g.mean(0) / np.diagonal(r.mean(0))
    np.testing.assert_allclose(shear, [0.03, -0.02], atol=2e-3)


def test_cutting_stamps_to_the_networks_crop_early_changes_no_answer(monkeypatch):
    """network_metacal cuts the normalised images to shear_net's 32x32 crop before the network sees them;
    normalised over the whole stamp first, the answers are those of the full stamps."""
    net, info = load_model("pretrained:shear_net_ground")
    galaxies, psfs = _ring(0.03, -0.02, n_orient=2)
    rng = np.random.default_rng(0)
    galaxies = galaxies + rng.normal(0.0, 1e-4, galaxies.shape)
    sigma = np.full(len(galaxies), 1e-4)
    early = network_metacal(net, info, galaxies, psfs, torch.device("cpu"), noise_sigma=sigma, tta=2)
    assert leading_crop(net) == (32, 32)
    monkeypatch.setattr("lensml.shear.network_metacal.leading_crop", lambda _: None)
    whole = network_metacal(net, info, galaxies, psfs, torch.device("cpu"), noise_sigma=sigma, tta=2)
    for cut, full in zip(early, whole):
        np.testing.assert_allclose(cut, full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("survey, model", FINDERS)
def test_shipped_finders_score_the_challenge_samples_with_no_training(survey, model, challenge_samples, tmp_path):
    """`predict`, `evaluate` and `features` take each shipped lens finder on its survey's samples
    (real ones from ../shared, or their stand-ins on a checkout without it): calibrated probabilities
    for every scene, no training step."""
    folder = challenge_samples / survey
    out = tmp_path / "scores.csv"
    assert run("predict", "-i", folder, "-m", model, "-o", out) == 0
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    assert sorted(int(r[0]) for r in rows) == sorted(SAMPLE_LABELS[survey])
    assert all(0.0 < float(r[1]) <= 1.0 for r in rows)
    # scenes the network tells apart stay apart in the file, however close to 1 their p
    assert len({r[1] for r in rows}) == len(set(predict_lens(str(folder), model, progress=False).tolist()))
    assert run("evaluate", "-i", folder, "-m", model, "--json", tmp_path / "e.json") == 0
    assert json.loads((tmp_path / "e.json").read_text())["n"] == len(rows)
    assert run("features", "-m", model, "-i", next((folder / "Public" / "Band1").glob("*.fits")),
               "-o", tmp_path / "maps") == 0
    assert len(list((tmp_path / "maps").glob("*.png"))) == CONVOLUTIONS[load_model(model)[1].arch]


def test_the_two_shipped_space_finders_form_a_committee(challenge_samples, tmp_path):
    """`ensemble` takes shipped finders by name; from one view, the committee's probability of each scene
    is the mean of its members' calibrated ones (docs/pretrained.md: what the pair scores)."""
    folder, members = challenge_samples / "space", [m for survey, m in FINDERS if survey == "space"]
    probabilities = []
    for k, model in enumerate([*members, tmp_path / "committee.safetensors"]):
        if k == len(members):
            assert run("ensemble", "-m", *members, "-o", model) == 0
        assert run("predict", "-i", folder, "-m", model, "--views", 1, "-o", tmp_path / f"{k}.csv") == 0
        rows = [line.split(",") for line in (tmp_path / f"{k}.csv").read_text().splitlines()[1:]]
        probabilities.append(np.array([float(r[1]) for r in sorted(rows)]))
    np.testing.assert_allclose(probabilities[-1], np.mean(probabilities[:-1], axis=0), atol=2e-6)


@pytest.mark.parametrize("survey, model", FINDERS)
def test_shipped_finders_separate_bright_lenses_from_hard_non_lenses(survey, model, tmp_path):
    """On 32 scenes with bright sources and Einstein radii of 1.5-3" (non-lenses of every kind,
    look-alikes included), each shipped finder ranks lenses above non-lenses (AUC 0.945 Space, 0.969
    Ground when recorded)."""
    config = tmp_path / "bright.yaml"
    config.write_text("theta_e: [1.5, 3.0]\nsource_mag: [21.0, 22.5]\n")
    scenes = tmp_path / "bright"
    assert run("simulate", "strong", "--survey", survey, "-n", 32, "-o", scenes, "--seed", 5,
               "--config", config, "--workers", 1) == 0
    assert run("evaluate", "-i", scenes, "-m", model, "--json", tmp_path / "e.json") == 0
    assert json.loads((tmp_path / "e.json").read_text())["auc"] >= 0.85


def test_pretrained_models_are_read_only_and_unknown_names_are_one_line(tmp_path, capsys):
    shipped = ROOT / "src" / "lensml" / "pretrained" / catalogue()["shear_net_ground"]["file"]
    before = shipped.read_bytes()
    assert run("models", "--task", "shear") == 0
    data = tmp_path / "set"
    assert run("simulate", "weak", "-n", 8, "-o", data, "--stamp-size", 64, "--pixel-scale", 0.2,
               "--psf-fwhm", 0.8, "--seed", 1, "--workers", 1) == 0
    capsys.readouterr()
    assert run("train", "-i", data, "-m", "pretrained:shear_net_ground", "--epochs", 1) == 2
    assert "read-only" in capsys.readouterr().err
    assert run("train", "-i", data, "-m", "pretrained:shear_net_ground", "--epochs", 1, "-r") == 2
    assert run("train", "-i", data, "-m", shipped, "--epochs", 1) == 2  # named by its path
    assert "read-only" in capsys.readouterr().err
    assert run("predict", "-i", data / "gal_0.fits", "--psf", data / "psf_0.fits", "-m", "pretrained:nope") == 2
    assert "models --pretrained" in capsys.readouterr().err
    assert run("predict", "-i", data / "gal_0.fits", "--psf", data / "psf_0.fits", "-m",
               "pretrained:shear_net_ground") == 0
    assert "R11" in capsys.readouterr().out
    assert shipped.read_bytes() == before


@pytest.mark.slow
def test_the_built_wheel_holds_the_weights(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                             "-q", "-w", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next(tmp_path.glob("lensml-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for entry in catalogue().values():
        assert f"lensml/pretrained/{entry['file']}" in names
    assert "lensml/pretrained/catalogue.json" in names
    assert wheel.stat().st_size < 40e6
