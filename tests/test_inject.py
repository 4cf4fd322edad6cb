"""Arcs painted into real cutouts: the cutout is conserved to the last bit outside the arcs, the copies
are the untouched files, and the deflector is measured from the cutout's own light."""

from __future__ import annotations

import csv
import math

import galsim
import numpy as np
import pytest

from lensml.cli import main
from lensml.io.challenge import band_path, list_ids, read_scene
from lensml.simulate.inject import measure_deflector


def run(*args):
    return main(["-q", *map(str, args)])


@pytest.mark.parametrize("survey", ["space", "ground"])
def test_injection_conserves_the_cutout_outside_the_arcs(challenge_samples, tmp_path, survey):
    backgrounds = challenge_samples / survey
    out = tmp_path / "injected"
    assert run("simulate", "strong", "--backgrounds", backgrounds, "-o", out, "-n", 3, "--seed", 4) == 0
    with (out / "classifications.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["is_lens"] for r in rows] == ["1", "0"] * 3
    assert all(float(r["Einstein_area"]) > 0 for r in rows[::2])
    for k, background_id in enumerate(list_ids(backgrounds, survey)[:3]):
        lens_id, copy_id = 100000 + 2 * k, 100000 + 2 * k + 1
        n_bands = read_scene(backgrounds, survey, background_id).shape[0]
        for b in range(n_bands):  # the non-lens is the untouched file
            assert band_path(out, survey, b, copy_id).read_bytes() == band_path(backgrounds, survey, b, background_id).read_bytes()
        cutout = read_scene(backgrounds, survey, background_id).astype(np.float32)
        injected = read_scene(out, survey, lens_id)
        changed = injected.view(np.uint32) != cutout.view(np.uint32)  # to the last bit
        assert changed.sum() > 20 and changed.mean() < 0.5  # an arc, and only there
        assert np.all(injected[changed] > cutout[changed])  # arcs add light
        assert not np.any(changed & (cutout == 100.0))  # masked pixels stay masked


def test_rerun_into_another_simulation_is_refused(challenge_samples, tmp_path, capsys):
    out = tmp_path / "x"
    assert run("simulate", "strong", "--backgrounds", challenge_samples / "space", "-o", out, "-n", 1) == 0
    assert run("simulate", "strong", "--backgrounds", challenge_samples / "space", "-o", out, "-n", 1, "--seed", 9) == 2
    assert "different simulation" in capsys.readouterr().err
    assert run("simulate", "strong", "--backgrounds", challenge_samples / "space", "-o", tmp_path / "y",
               "--survey", "space") == 2
    assert run("simulate", "strong", "-o", tmp_path / "z", "-n", 2) == 2
    assert "--survey and -n" in capsys.readouterr().err


def test_deflector_centre_and_angle_from_its_light():
    """A GalSim Sersic galaxy off centre and turned: centre to 0.01", angle to 1 degree, elongated."""
    scale, x0, y0, q, phi_deg = 0.1, 0.23, -0.31, 0.5, 35.0
    galaxy = galsim.Sersic(n=3, half_light_radius=0.6).shear(q=q, beta=phi_deg * galsim.degrees).shift(x0, y0)
    image = galsim.Convolve(galaxy, galsim.Gaussian(fwhm=0.18)).drawImage(nx=101, ny=101, scale=scale).array
    x, y, q_measured, phi = measure_deflector(image, scale)
    assert (x, y) == pytest.approx((x0, y0), abs=0.01)  # GalSim's x runs along columns, y along rows
    assert math.degrees(phi) == pytest.approx(phi_deg, abs=1.0)
    assert q < q_measured < 0.8  # a round weight makes weighted moments rounder
