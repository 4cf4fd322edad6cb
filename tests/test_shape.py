"""The shape target: the sheared galaxy's ellipticity, checked against GalSim, and its mean is the shear."""

from __future__ import annotations

import galsim
import numpy as np
import pytest

from lensml.shear.shape import distortion_to_shear, shape_from_entries, sheared_shape


@pytest.mark.parametrize("e_int, beta_deg, g1, g2", [(0.3, 20.0, 0.05, -0.03), (0.55, 100.0, -0.2, 0.1), (0.0, 0.0, 0.02, 0.0)])
def test_shape_equals_galsims_sheared_profile(e_int, beta_deg, g1, g2):
    """lensml's simulator: distortion |e| at angle beta, then the shear; GalSim's adaptive moments of
    the drawn, unconvolved Gaussian give the composed shape."""
    galaxy = galsim.Gaussian(sigma=1.5).shear(e=e_int, beta=beta_deg * galsim.degrees).shear(g1=g1, g2=g2)
    measured = galaxy.drawImage(nx=160, ny=160, scale=0.1, method="no_pixel").FindAdaptiveMom().observed_shape
    expected = shape_from_entries([{"e_int": e_int, "beta_int_deg": beta_deg, "g1": g1, "g2": g2}])[0]
    np.testing.assert_allclose(expected, [measured.g1, measured.g2], atol=2e-4)


def test_shear_type_components_compose_like_galsim():
    """The independent validation sets give the intrinsic shape as shear-type components."""
    entry = {"e_int1": 0.25, "e_int2": -0.1, "g1": -0.04, "g2": 0.03}
    composed = galsim.Shear(g1=entry["g1"], g2=entry["g2"]) + galsim.Shear(g1=entry["e_int1"], g2=entry["e_int2"])
    np.testing.assert_allclose(shape_from_entries([entry])[0], [composed.g1, composed.g2], atol=1e-12)
    assert distortion_to_shear(np.array(0.6)) == pytest.approx(galsim.Shear(e=0.6, beta=0 * galsim.degrees).g)


def test_mean_shape_over_a_ring_is_the_shear():
    """<eps> = g for an isotropic population (Seitz & Schneider 1997): a ring of 64 orientations."""
    angles = np.linspace(0.0, np.pi, 64, endpoint=False)
    for size in (0.1, 0.4, 0.7):
        eps_int = size * np.stack([np.cos(2 * angles), np.sin(2 * angles)], 1)
        g = np.tile([0.03, -0.02], (64, 1))
        np.testing.assert_allclose(sheared_shape(eps_int, g).mean(0), [0.03, -0.02], atol=1e-12)
        if size > 0.5:  # the composition is far from additive here, so the mean is a real test
            assert np.abs(sheared_shape(eps_int, g) - eps_int - g).max() > 1e-2
