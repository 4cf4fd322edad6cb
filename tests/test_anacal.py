"""AnaCal, the optional analytic-calibration baseline: its install hint, and its paired m and c.

AnaCal is an optional extra (lensml[baselines]); the test extra includes it, so these tests run
in CI rather than skip. Without it, the science test fails with the install line instead of
passing silently.
"""

import importlib.util
import sys

import galsim
import numpy as np
import pytest

from lensml.baselines.anacal import anacal_shear, response_matrix, stamp_centroid
from lensml.errors import BadInputError
from lensml.metrics.shear import paired_shear_bias

HAVE_ANACAL = importlib.util.find_spec("anacal") is not None
SCALE, SIZE, G, RING = 0.2, 64, 0.02, 4


def paired_set(n_base=50, seed=11):
    """The reference distribution, noise-free: Sersic n U(0.8, 2.5), hlr U(0.4, 1.0)", e1, e2 ~ N(0, 0.2)
    truncated at |e| < 0.8, round Moffat (beta 3.5, FWHM 0.7"), offsets U(-0.5, 0.5) px, ring 4, |g| = 0.02."""
    psf = galsim.Moffat(beta=3.5, fwhm=0.7)
    psf_image = psf.drawImage(nx=SIZE, ny=SIZE, scale=SCALE).array
    rng = np.random.default_rng(seed)
    gals, cols = [], {k: [] for k in ("sign", "component", "pair", "base")}
    for b in range(n_base):
        e = rng.normal(0, 0.2, 2)
        while np.hypot(*e) >= 0.8:
            e = rng.normal(0, 0.2, 2)
        profile = galsim.Sersic(n=rng.uniform(0.8, 2.5), half_light_radius=rng.uniform(0.4, 1.0))
        offset = rng.uniform(-0.5, 0.5, 2) * SCALE
        for k in range(RING):
            e_rot = complex(*e) * np.exp(2j * np.pi * k / RING)
            for sign in (1, -1):
                shear = (sign * G, 0.0) if b % 2 == 0 else (0.0, sign * G)
                gal = profile.shear(g1=e_rot.real, g2=e_rot.imag).shear(g1=shear[0], g2=shear[1]).shift(*offset)
                gals.append(galsim.Convolve(gal, psf).drawImage(nx=SIZE, ny=SIZE, scale=SCALE).array)
                for key, value in zip(cols, (sign, 1 + b % 2, b * RING + k, b)):
                    cols[key].append(value)
    return np.array(gals), psf_image, {k: np.array(v) for k, v in cols.items()}


@pytest.fixture(scope="module")
def noise_free_pairs():
    return paired_set()


def test_without_anacal_the_error_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "anacal" or m.startswith("anacal.")] + ["anacal"]:
        monkeypatch.setitem(sys.modules, name, None)  # import anacal now raises ImportError
    stamps = np.zeros((2, 16, 16))
    with pytest.raises(BadInputError) as info:
        anacal_shear(stamps, stamps, 0.2)
    message = str(info.value)
    assert "\n" not in message
    assert "lensml[baselines]" in message and "pip install anacal" in message


def _require_anacal():
    if not HAVE_ANACAL:
        pytest.fail("anacal is not installed; it is part of lensml's test extra (pip install -e '.[test]' or "
                    "pip install anacal), so this test runs instead of skipping")


def test_anacal_paired_m_and_c_on_noise_free_pairs(noise_free_pairs):
    """Forced at each galaxy's measured centroid, AnaCal's analytic response leaves |m| < 1e-2, |c| < 1e-3."""
    _require_anacal()
    gals, psf, cols = noise_free_pairs
    e, r = anacal_shear(gals, psf, SCALE)
    assert np.isfinite(e).all() and np.isfinite(r).all()
    assert (r > 0.2).all()  # a response of order 0.5 for these sizes
    out = paired_shear_bias(e, **cols, pair_shear=G, response=response_matrix(r), n_boot=200)
    assert out["n_pairs"] == len(gals) // 2
    for k in ("m1", "m2"):
        assert abs(out[k]) < 1e-2, out
    for k in ("c1", "c2"):
        assert abs(out[k]) < 1e-3, out


def test_forcing_at_the_stamp_centre_biases_m(noise_free_pairs):
    """Why the centroid: measured at the stamp centre, half-pixel offsets cost a few per cent in m."""
    _require_anacal()
    gals, psf, cols = noise_free_pairs
    centre = np.full((len(gals), 2), (SIZE - 1) / 2)  # where GalSim puts an unshifted profile
    e, r = anacal_shear(gals, psf, SCALE, centres=centre)
    out = paired_shear_bias(e, **cols, pair_shear=G, response=response_matrix(r), n_boot=50)
    assert out["m1"] < -1e-2 and out["m2"] < -1e-2, out


def test_centroid_convention():
    """stamp_centroid is 0-based (x, y), as GalSim's true centre of a shifted profile."""
    image = galsim.Gaussian(sigma=0.4).shift(0.3 * SCALE, -0.2 * SCALE).drawImage(nx=32, ny=32, scale=SCALE).array
    x, y = stamp_centroid(image)
    assert (x, y) == pytest.approx((15.5 + 0.3, 15.5 - 0.2), abs=1e-3)


def test_input_shapes_are_checked_before_any_measurement():
    _require_anacal()
    with pytest.raises(BadInputError, match="psfs must be"):
        anacal_shear(np.zeros((3, 32, 32)), np.zeros((2, 32, 32)), SCALE)
    with pytest.raises(BadInputError, match="centres must be"):
        anacal_shear(np.zeros((3, 32, 32)), np.zeros((32, 32)), SCALE, centres=np.zeros((3, 3)))
