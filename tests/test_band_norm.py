"""Per-band normalisation: agreement with astropy's ZScaleInterval, masks, clipping, flat bands."""

import numpy as np
import pytest
from astropy.stats import mad_std
from astropy.visualization import AsinhStretch, ZScaleInterval

from lensml.data.band_norm import METHODS, _dilate, normalise_bands, zscale_limits, zscale_limits_astropy
from lensml.errors import BadInputError
from lensml.io.challenge import CHALLENGE_MASK_VALUE, list_ids, masked_pixels, read_scene


def _sample_scenes(samples, survey):
    """Every scene of the challenge samples (real, or their stand-ins) of `survey`, stacked."""
    root = samples / survey
    return np.stack([read_scene(root, survey, i) for i in list_ids(root, survey)])


def _reference(images, method):
    """Straightforward per-band normalisation on the unmasked pixels: astropy's ZScale limits, min/max,
    or astropy's asinh stretch of (x - median) / mad_std."""
    out = np.zeros(images.shape, dtype=np.float64)
    for index in np.ndindex(images.shape[:2]):
        band = images[index].astype(np.float64)
        good = np.isfinite(band) & (band != CHALLENGE_MASK_VALUE)
        if not good.any():
            continue
        if method == "asinh":
            sigma = mad_std(band[good])
            if sigma > 0:
                stretch = AsinhStretch(a=3 / 1000)  # asinh(x / a) / asinh(1 / a) of x in units of 1000 sigma
                out[index] = np.where(good, stretch((band - np.median(band[good])) / (1000 * sigma), clip=False), 0)
            continue
        if method == "zscale":
            lo, hi = ZScaleInterval().get_limits(images[index][good])
        else:
            lo, hi = band[good].min(), band[good].max()
        if hi > lo:
            out[index] = np.where(good, np.clip((band - lo) / (hi - lo), 0, 1), 0)
    return out


@pytest.mark.parametrize("survey", ["space", "ground"])
@pytest.mark.parametrize("method", ["zscale", "minmax", "asinh"])
def test_real_images_agree_with_astropy_reference(challenge_samples, survey, method):
    scenes = _sample_scenes(challenge_samples, survey)
    out = normalise_bands(scenes, method)
    assert out.dtype == np.float32 and out.shape == scenes.shape
    np.testing.assert_allclose(out, _reference(scenes, method), rtol=0, atol=2e-6)
    if method == "asinh":  # not clipped: the sky goes below 0, the brightest cores above 1000 sigma
        assert out.min() < -0.05 and 0.3 < out.max() < 2
    else:
        assert out.min() == 0.0 and out.max() == 1.0


def _deflector_with_arc(arc_flux_sigma: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A bright round deflector (peak 2000 sigma) with a faint ring at 1 arcsec in Space pixels, and the ring's pixels."""
    y, x = np.mgrid[:101, :101] - 50.0
    r = np.hypot(x, y)
    deflector = 2000.0 * np.exp(-3.0 * np.sqrt(r / 4.0))  # about 17 sigma at the ring
    ring = np.abs(r - 10.0) < 1.0
    image = deflector + arc_flux_sigma * ring + rng.normal(size=r.shape)
    return image[None, None].astype(np.float32) * 7.8e-13, ring


def test_asinh_keeps_an_arc_that_zscale_saturates_on_a_bright_deflector():
    rng = np.random.default_rng(5)
    with_arc, ring = _deflector_with_arc(10.0, rng)
    without = with_arc - (10.0 * 7.8e-13) * ring[None, None].astype(np.float32)
    zscale = [normalise_bands(im, "zscale")[0, 0] for im in (with_arc, without)]
    asinh = [normalise_bands(im, "asinh")[0, 0] for im in (with_arc, without)]
    # Under the deflector's light the ring sits above ZScale's upper limit: both images are 1 there.
    assert np.all(zscale[0][ring] == 1.0) and np.all(zscale[1][ring] == 1.0)
    # The asinh stretch is strictly increasing and never clips: the ring stays brighter than its absence.
    assert np.all(asinh[0][ring] > asinh[1][ring])
    assert np.abs(asinh[0][~ring] - asinh[1][~ring]).max() < 0.01  # the sky level and sigma barely move


def test_zscale_limits_match_astropy_on_real_bands(challenge_samples):
    bands = np.concatenate([_sample_scenes(challenge_samples, s).reshape(-1, 101, 101) for s in ("space", "ground")])
    good = ~masked_pixels(bands)
    assert (~good).sum() == 49 + 212  # the two masked U bands of the ground samples
    lo, hi = zscale_limits(bands, good)
    ref_lo, ref_hi = zscale_limits_astropy(bands, good)
    span = ref_hi - ref_lo
    assert np.all(span > 0)
    np.testing.assert_allclose(lo, ref_lo, rtol=0, atol=1e-12 * span.min())
    np.testing.assert_allclose(hi, ref_hi, rtol=0, atol=1e-12 * span.min())
    # Limits are much narrower than the full range: most pixels are sky, a few are bright galaxies.
    full = bands.reshape(len(bands), -1)
    assert np.all(hi < np.where(good.reshape(len(bands), -1), full, -np.inf).max(axis=1))


@pytest.mark.parametrize("kind", ["student_t", "lognormal", "ties", "bimodal", "heavy"])
def test_zscale_limits_match_astropy_on_random_bands_with_masks(kind):
    rng = np.random.default_rng(["student_t", "lognormal", "ties", "bimodal", "heavy"].index(kind))
    shape = (48, 101, 101)
    values = {
        "student_t": lambda: rng.standard_t(2, shape),
        "lognormal": lambda: rng.lognormal(size=shape),
        "ties": lambda: np.round(rng.normal(size=shape) * 2),
        "bimodal": lambda: rng.normal(size=shape) + 50 * (np.arange(101) < 60),
        "heavy": lambda: rng.exponential(size=shape) ** 3,
    }[kind]()
    bands = (values * 1e-12).astype(np.float32)
    good = np.ones(shape, dtype=bool)
    good[8:24] = rng.random((16, 101, 101)) > rng.random((16, 1, 1))  # random share masked
    good[24:32, 30:60, :] = False  # a masked strip
    good[32:36] = False
    for k in range(32, 36):  # almost everything masked: a few good pixels only
        good[k].flat[rng.choice(good[k].size, 3 + 20 * (k - 32), replace=False)] = True
    lo, hi = zscale_limits(bands, good)
    ref_lo, ref_hi = zscale_limits_astropy(bands, good)
    span = np.maximum(ref_hi - ref_lo, 1e-30)
    assert np.max(np.abs(lo - ref_lo) / span) < 1e-9
    assert np.max(np.abs(hi - ref_hi) / span) < 1e-9


def test_zscale_limits_on_noise_free_bands_match_astropy():
    """Exactly flat or linear samples: astropy's rejections are decided by rounding; the result must still agree."""
    yy, xx = np.mgrid[:101, :101]
    bands = np.zeros((5, 101, 101), dtype=np.float32)
    bands[0] = 3.3e-12
    bands[1] = np.exp(-((xx - 50) ** 2 + (yy - 50) ** 2) / 50) * 1e-11
    bands[2] = 1e-12 * (xx > 50)
    bands[3] = 7e-13
    bands[3, 50, 50] = 1e-10
    bands[4] = xx + yy
    lo, hi = zscale_limits(bands)
    ref_lo, ref_hi = zscale_limits_astropy(bands)
    np.testing.assert_allclose(lo, ref_lo, rtol=1e-12)
    np.testing.assert_allclose(hi, ref_hi, rtol=1e-12)


def test_dilation_is_numpy_convolve_same():
    rng = np.random.default_rng(2)
    for width in range(1, 25):
        rejected = rng.random((6, 1000)) < 0.03
        expected = np.stack([np.convolve(r, np.ones(width, dtype=bool), mode="same") for r in rejected])
        assert np.array_equal(_dilate(rejected, width), expected)


@pytest.mark.parametrize("method", METHODS)
def test_masked_pixels_do_not_move_limits_and_are_zeroed(challenge_samples, method):
    scenes = _sample_scenes(challenge_samples, "ground")
    masked = scenes.copy()
    region = (slice(0, 2), 2, slice(10, 30), slice(40, 101))  # G band of two scenes
    masked[region] = CHALLENGE_MASK_VALUE
    masked[0, 1, 5, 5] = np.nan
    masked[1, 0, 7, 7] = np.inf
    out = normalise_bands(masked, method)
    assert np.isfinite(out).all()
    assert np.all(out[region] == 0) and out[0, 1, 5, 5] == 0 and out[1, 0, 7, 7] == 0
    if method == "none":
        np.testing.assert_array_equal(out[~masked_pixels(masked)], masked[~masked_pixels(masked)])
        return
    np.testing.assert_allclose(out, _reference(masked, method), rtol=0, atol=2e-6)
    # A masked pixel's value never reaches the limits: the same band with the masked pixels at
    # another value normalises identically.
    other = masked.copy()
    other[region] = np.nan
    np.testing.assert_array_equal(normalise_bands(other, method), out)
    assert out[2:].tolist() == normalise_bands(scenes[2:], method).tolist()


def test_real_masked_u_bands(challenge_samples):
    scenes = _sample_scenes(challenge_samples, "ground")
    out = normalise_bands(scenes, "zscale")
    mask = masked_pixels(scenes)
    assert mask.sum() == 49 + 212 and np.all(out[mask] == 0)
    assert np.all(out[:, :3][~mask[:, :3]] >= 0)


def test_clipping_to_unit_interval():
    rng = np.random.default_rng(0)
    image = rng.normal(0, 1e-12, (1, 1, 101, 101)).astype(np.float32)
    image[0, 0, 50, 50] = 1e-9  # a bright core far above the zscale limits
    image[0, 0, 10, 10] = -1e-9
    lo, hi = ZScaleInterval().get_limits(image[0, 0])
    out = normalise_bands(image, "zscale")
    assert out[0, 0, 50, 50] == 1.0 and out[0, 0, 10, 10] == 0.0
    assert out.min() == 0.0 and out.max() == 1.0
    inside = (image[0, 0] > lo) & (image[0, 0] < hi)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(out[0, 0][inside], (image[0, 0][inside] - lo) / (hi - lo), atol=1e-6)
    assert np.all((out[0, 0][inside] > 0) & (out[0, 0][inside] < 1))


@pytest.mark.parametrize("method", ["zscale", "minmax", "asinh"])
def test_constant_and_fully_masked_bands_are_zero(method):
    images = np.zeros((2, 3, 101, 101), dtype=np.float32)
    images[0, 0] = 4e-12
    images[0, 1] = CHALLENGE_MASK_VALUE
    images[0, 2] = np.nan
    images[1, 0] = 4e-12
    images[1, 0, :10] = CHALLENGE_MASK_VALUE  # constant apart from masked rows
    images[1, 1] = np.random.default_rng(1).normal(size=(101, 101))
    images[1, 2] = -7.0
    out = normalise_bands(images, method)
    assert not np.isnan(out).any()
    assert np.all(out[0] == 0) and np.all(out[1, 0] == 0) and np.all(out[1, 2] == 0)
    assert out[1, 1].max() == 1.0 if method != "asinh" else 0 < out[1, 1].max() < 1


def test_minmax_spans_unit_interval_per_band():
    rng = np.random.default_rng(3)
    images = (rng.normal(size=(4, 2, 101, 101)) * np.array([1e-12, 5.0])[None, :, None, None]).astype(np.float32)
    out = normalise_bands(images, "minmax")
    assert np.all(out.min(axis=(2, 3)) == 0) and np.all(out.max(axis=(2, 3)) == 1)
    x = images[2, 1].astype(np.float64)
    np.testing.assert_allclose(out[2, 1], (x - x.min()) / (x.max() - x.min()), atol=1e-6)


def test_none_keeps_values_but_zeroes_masks():
    images = np.full((1, 1, 4, 4), 2e-12, dtype=np.float32)
    images[0, 0, 0, 0] = CHALLENGE_MASK_VALUE
    out = normalise_bands(images, "none")
    assert out[0, 0, 0, 0] == 0 and np.all(out.ravel()[1:] == np.float32(2e-12))


@pytest.mark.parametrize("method", ["zscale", "asinh"])
def test_large_batches_match_small_ones(method):
    rng = np.random.default_rng(4)
    images = rng.lognormal(size=(90, 3, 101, 101)).astype(np.float32) * 1e-12
    images[5, 1, :20] = CHALLENGE_MASK_VALUE
    whole = normalise_bands(images, method)
    parts = np.concatenate([normalise_bands(images[k : k + 7], method) for k in range(0, 90, 7)])
    np.testing.assert_array_equal(whole, parts)


def test_bad_arguments():
    with pytest.raises(BadInputError, match="unknown normalisation 'rms'"):
        normalise_bands(np.zeros((1, 1, 8, 8)), "rms")
    with pytest.raises(ValueError, match=r"\(N, bands, H, W\)"):
        normalise_bands(np.zeros((1, 8, 8)), "zscale")
