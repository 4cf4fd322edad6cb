"""Metacalibration images against GalSim, the analytic response of a moment estimator, symmetries, noise."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
import torch

from lensml.shear.metacal import (
    METACAL_TYPES,
    gaussian_image,
    metacal_images,
    metacal_response,
    metacal_shears,
    response_from_estimates,
    weighted_centroid,
)

PIXEL_SCALE_ARCSEC = 0.2
STAMP_PIXELS = 64
PSF_PIXELS = 32
DELTA = 0.01


def _psf(g1: float = 0.03, g2: float = -0.02) -> galsim.GSObject:
    """A slightly elliptical Moffat, truncated so that its whole light fits the PSF stamp."""
    return galsim.Moffat(beta=3.5, fwhm=0.8, trunc=2.4).shear(g1=g1, g2=g2)


def _draw(obj: galsim.GSObject, pixels: int | tuple[int, int], method: str = "auto") -> np.ndarray:
    """Square stamps of `pixels`, or (ny, nx) ones."""
    ny, nx = pixels if isinstance(pixels, tuple) else (pixels, pixels)
    return obj.drawImage(nx=nx, ny=ny, scale=PIXEL_SCALE_ARCSEC, method=method).array


def _psf_array(psf: galsim.GSObject) -> np.ndarray:
    array = _draw(psf, PSF_PIXELS)
    return array / array.sum()


def _as_batch(*arrays: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.stack(arrays), dtype=torch.float64)


def _galsim_metacal(image: np.ndarray, psf_image: np.ndarray, sigma_arcsec: float) -> list[np.ndarray]:
    """ngmix's recipe in GalSim: lanczos15 InterpolatedImages, Deconvolve, shear, Gaussian, no_pixel."""
    scale = PIXEL_SCALE_ARCSEC
    galaxy = galsim.InterpolatedImage(galsim.Image(image, scale=scale), x_interpolant="lanczos15")
    psf = galsim.InterpolatedImage(galsim.Image(psf_image, scale=scale), x_interpolant="lanczos15")
    deconvolved = galsim.Convolve(galaxy, galsim.Deconvolve(psf))
    reconv = galsim.Gaussian(sigma=sigma_arcsec)
    out = []
    for g1, g2 in metacal_shears(DELTA):
        sheared = deconvolved.shear(g1=g1, g2=g2) if (g1 or g2) else deconvolved
        out.append(_draw(galsim.Convolve(sheared, reconv), image.shape, method="no_pixel"))
    return out


@pytest.fixture(scope="module")
def sersic_case():
    """A sheared Sersic galaxy, off centre by a fraction of a pixel, through the elliptical Moffat."""
    psf = _psf()
    galaxy = galsim.Sersic(n=1.5, half_light_radius=0.5).shear(g1=0.2, g2=0.1).shift(0.03, -0.05)
    return _draw(galsim.Convolve(galaxy, psf), STAMP_PIXELS), _psf_array(psf)


def test_counterfactual_images_match_galsim(sersic_case):
    image, psf_image = sersic_case
    result = metacal_images(_as_batch(image), _as_batch(psf_image), DELTA, shear_centre="stamp")
    sigma_arcsec = float(result.reconv_sigma_pixels[0]) * PIXEL_SCALE_ARCSEC
    references = _galsim_metacal(image, psf_image, sigma_arcsec)
    assert result.images.shape == (1, len(METACAL_TYPES), STAMP_PIXELS, STAMP_PIXELS)
    for k, (name, reference) in enumerate(zip(METACAL_TYPES, references)):
        peak = reference.max()
        diff = np.abs(result.images[0, k].numpy() - reference).max() / peak
        assert diff < 1e-4, f"{name}: max |diff| / peak = {diff:.2e}"
        if k:  # the shear itself is ~30x the tolerance, so a wrong sign or axis cannot pass
            assert np.abs(reference - references[0]).max() / peak > 2e-3
    gamma = _draw(galsim.Gaussian(sigma=sigma_arcsec), STAMP_PIXELS, method="no_pixel")
    np.testing.assert_allclose(result.reconv_psf[0].numpy(), gamma, atol=1e-10)


OFFSET_PIXELS = (0.37, -0.21)


def test_recentred_counterfactuals_are_the_galaxy_sheared_about_its_own_centre():
    """An off-centre elliptical galaxy: the recentred 1p..2m images are the galaxy, centred, sheared
    by +-delta and convolved with Gamma, drawn by GalSim from the true profile (not from the image)."""
    psf = _psf()
    galaxy = galsim.Sersic(n=1.2, half_light_radius=0.4).shear(g1=0.15, g2=-0.1)
    shift = tuple(o * PIXEL_SCALE_ARCSEC for o in OFFSET_PIXELS)
    image = _draw(galsim.Convolve(galaxy.shift(*shift), psf), STAMP_PIXELS)
    result = metacal_images(_as_batch(image), _as_batch(_psf_array(psf)), DELTA, recentre=True)
    np.testing.assert_allclose(result.centre_pixels[0].numpy(), OFFSET_PIXELS, atol=1e-5)
    reconv = galsim.Gaussian(sigma=float(result.reconv_sigma_pixels[0]) * PIXEL_SCALE_ARCSEC)
    for k, (g1, g2) in enumerate(metacal_shears(DELTA)):
        sheared = galaxy.shear(g1=g1, g2=g2) if (g1 or g2) else galaxy
        reference = _draw(galsim.Convolve(sheared, reconv), STAMP_PIXELS, method="no_pixel")
        diff = np.abs(result.images[0, k].numpy() - reference).max() / reference.max()
        assert diff < 1e-4, f"{METACAL_TYPES[k]}: max |diff| / peak = {diff:.2e}"


def test_stamps_taller_than_wide_match_galsim():
    """Non-square stamps pad each axis on its own (48 x 64 pads to 72 x 96)."""
    psf = _psf()
    galaxy = galsim.Sersic(n=1.5, half_light_radius=0.5).shear(g1=0.2, g2=0.1).shift(0.03, -0.05)
    image = _draw(galsim.Convolve(galaxy, psf), (48, 64))
    result = metacal_images(_as_batch(image), _as_batch(_psf_array(psf)), DELTA, shear_centre="stamp")
    references = _galsim_metacal(image, _psf_array(psf), float(result.reconv_sigma_pixels[0]) * PIXEL_SCALE_ARCSEC)
    assert result.images.shape == (1, len(METACAL_TYPES), 48, 64)
    for k, reference in enumerate(references):
        assert np.abs(result.images[0, k].numpy() - reference).max() / reference.max() < 1e-4


def test_in_place_counterfactuals_shear_about_the_centroid():
    """Without recentring, the galaxy stays where it was and is sheared about its own centre."""
    psf = _psf()
    galaxy = galsim.Exponential(half_light_radius=0.35).shear(g1=-0.2, g2=0.05)
    shift = galsim.PositionD(*(o * PIXEL_SCALE_ARCSEC for o in OFFSET_PIXELS))
    image = _draw(galsim.Convolve(galaxy.shift(shift), psf), STAMP_PIXELS)
    result = metacal_images(_as_batch(image), _as_batch(_psf_array(psf)), DELTA)
    reconv = galsim.Gaussian(sigma=float(result.reconv_sigma_pixels[0]) * PIXEL_SCALE_ARCSEC)
    for k, (g1, g2) in enumerate(metacal_shears(DELTA)):
        sheared = (galaxy.shear(g1=g1, g2=g2) if (g1 or g2) else galaxy).shift(shift)
        reference = _draw(galsim.Convolve(sheared, reconv), STAMP_PIXELS, method="no_pixel")
        assert np.abs(result.images[0, k].numpy() - reference).max() / reference.max() < 1e-4


def test_weighted_centroid_newton_steps_use_the_light_s_tilt():
    """An elongated galaxy tilted at 30 degrees, off centre along a diagonal: its weighted covariance
    has a large cross term, and Newton's step (exact in one for a Gaussian) needs it to land in three."""
    offset = (1.2, 0.9)
    galaxy = (galsim.Gaussian(sigma=4.0 * PIXEL_SCALE_ARCSEC).shear(g=0.6, beta=30 * galsim.degrees)
              .shift(*(o * PIXEL_SCALE_ARCSEC for o in offset)))
    image = _draw(galaxy, STAMP_PIXELS, method="no_pixel")
    np.testing.assert_allclose(weighted_centroid(_as_batch(image), 2.0, iterations=3).numpy()[0], offset, atol=1e-6)


def test_unskewed_types_are_summed_straight_from_the_spectrum_as_the_two_passes_would():
    """noshear, 1p and 1m skip the FFTs between the passes: the same images to float64 rounding."""
    from lensml.shear.metacal import _resample_unskewed, _resample_x, _resample_y, inverse_shear_matrix

    rng = np.random.default_rng(2)
    inverse = torch.tensor([inverse_shear_matrix(*g) for g in metacal_shears(DELTA)[:3]], dtype=torch.float64)
    images = torch.from_numpy(rng.normal(size=(2, 48, 48)))  # padded (y, x); the spectrum is x-frequency-major
    spectrum = torch.fft.rfft2(images.transpose(-1, -2), dim=(-1, -2))  # (2, 25, 48)
    spectrum[:, 24, :] = 0  # the reconvolution PSF zeroes the Nyquist bins
    spectrum[:, :, 24] = 0
    spectrum = spectrum[None] * torch.from_numpy(rng.uniform(0.5, 1.0, (3, 1, 25, 48)))  # a different Gamma per type
    spectrum[:, :, 0, 1:] = 0.5 * (spectrum[:, :, 0, 1:] + spectrum[:, :, 0, 1:].flip(-1).conj())  # kx = 0 Hermitian
    two_pass = _resample_y(_resample_x(spectrum, inverse, 48, 32), inverse, 32, 25)
    direct = _resample_unskewed(spectrum, inverse, 48, 32, 32)
    assert float((direct - two_pass).abs().max()) < 1e-12 * float(two_pass.abs().max())


def test_weighted_centroid_finds_the_centre_of_symmetric_profiles():
    offsets = [(0.0, 0.0), (0.5, -0.5), (-1.3, 0.8)]
    stamps = [_draw(galsim.Convolve(galsim.Sersic(n=2.0, half_light_radius=0.5).shear(g1=0.3, g2=0.2)
                                    .shift(dx * PIXEL_SCALE_ARCSEC, dy * PIXEL_SCALE_ARCSEC), _psf()), STAMP_PIXELS)
              for dx, dy in offsets]
    np.testing.assert_allclose(weighted_centroid(_as_batch(*stamps), 3.0).numpy(), offsets, atol=3e-5)


def test_weighted_centroid_reaches_the_fixed_point_where_plain_iteration_crawls():
    """A large round galaxy under a narrow weight: plain iteration contracts by s^2 / (s^2 + sigma^2)
    = 0.9 per step (30 steps would leave 4% of the offset); the centroid lands on it all the same,
    and on noisy stamps it satisfies its own fixed-point equation, checked with the full 2-D weight."""
    offset = (1.3, -0.7)
    galaxy = galsim.Gaussian(sigma=6.0 * PIXEL_SCALE_ARCSEC).shift(*(o * PIXEL_SCALE_ARCSEC for o in offset))
    big = _draw(galaxy, STAMP_PIXELS, method="no_pixel")
    np.testing.assert_allclose(weighted_centroid(_as_batch(big), 2.0).numpy()[0], offset, atol=1e-6)

    rng = np.random.default_rng(5)
    stamps = [_draw(galsim.Convolve(galsim.Sersic(n=1.5, half_light_radius=0.6).shift(dx, dy), _psf()), STAMP_PIXELS)
              for dx, dy in rng.uniform(-0.2, 0.2, (4, 2))]
    noisy = np.stack(stamps) + rng.normal(0.0, 0.02 * max(s.max() for s in stamps), (4, STAMP_PIXELS, STAMP_PIXELS))
    centres = weighted_centroid(torch.from_numpy(noisy), 4.0).numpy()
    c = np.arange(STAMP_PIXELS) - (STAMP_PIXELS - 1) / 2
    for image, (x0, y0) in zip(noisy, centres):
        weighted = image * np.exp(-0.5 * ((c[None, :] - x0) ** 2 + (c[:, None] - y0) ** 2) / 4.0**2)
        mean = np.array([(weighted * c[None, :]).sum(), (weighted * c[:, None]).sum()]) / weighted.sum()
        np.testing.assert_allclose(mean, (x0, y0), atol=1e-9)


def _fixed_weight_e(images: torch.Tensor, sigma_pixels: float = 2.5) -> torch.Tensor:
    """Distortion of Gaussian-weighted moments about the stamp's centre: not translation invariant,
    like a network's output."""
    c = torch.arange(images.shape[-1], dtype=images.dtype) - (images.shape[-1] - 1) / 2
    y, x = c[:, None], c[None, :]
    weighted = images * torch.exp(-0.5 * (x * x + y * y) / sigma_pixels**2)
    q11, q22, q12 = ((weighted * m).sum((-2, -1)) for m in (x * x, y * y, x * y))
    return torch.stack([(q11 - q22) / (q11 + q22), 2 * q12 / (q11 + q22)], -1)


def test_shearing_about_the_centroid_removes_the_offset_response():
    """+-G pairs of off-centre galaxies (a ring of 2): an estimator that is not translation invariant,
    metacalibrated about the stamp's centre, counts the galaxy's motion as response (m of -2% here);
    about the centroid, m is the O(G^2) term alone."""
    shear, psf = 0.02, _psf(0.0, 0.0)
    rng = np.random.default_rng(4)
    stamps, signed = [], []
    for _ in range(12):
        e1, e2 = rng.normal(0, 0.2, 2)
        dx, dy = rng.uniform(-1.0, 1.0, 2) * PIXEL_SCALE_ARCSEC
        for angle in (0.0, 90.0):
            base = galsim.Exponential(half_light_radius=rng.uniform(0.3, 0.6) if angle == 0 else hlr)
            hlr = base.half_light_radius
            base = base.shear(g1=e1, g2=e2).rotate(angle * galsim.degrees)
            for sign in (1, -1):
                stamps.append(_draw(galsim.Convolve(base.shear(g1=sign * shear).shift(dx, dy), psf), STAMP_PIXELS))
                signed.append(sign)
    images, psfs = _as_batch(*stamps), _as_batch(*[_psf_array(psf)] * len(stamps))
    sign = torch.tensor(signed, dtype=torch.float64)

    def m1(**kwargs) -> float:
        g, response = metacal_response(_fixed_weight_e, metacal_images(images, psfs, DELTA, **kwargs).images, DELTA)
        return float((g[:, 0] * sign).sum() / response[:, 0, 0].sum() / shear - 1.0)

    assert m1(shear_centre="stamp") < -0.01
    assert abs(m1(shear_centre="centroid")) < 1e-3
    assert abs(m1(shear_centre="centroid", recentre=True)) < 1e-3


def _unweighted_distortion(images: torch.Tensor) -> torch.Tensor:
    """(Q11 - Q22, 2 Q12) / (Q11 + Q22) of unweighted moments about the centroid; (N, 2)."""
    images = images.to(torch.float64)
    y = torch.arange(images.shape[-2], dtype=images.dtype)[:, None]
    x = torch.arange(images.shape[-1], dtype=images.dtype)[None, :]
    flux = images.sum(dim=(-2, -1))
    dx = x - ((images * x).sum(dim=(-2, -1)) / flux)[:, None, None]
    dy = y - ((images * y).sum(dim=(-2, -1)) / flux)[:, None, None]
    q11, q22, q12 = ((images * m).sum(dim=(-2, -1)) / flux for m in (dx * dx, dy * dy, dx * dy))
    return torch.stack([(q11 - q22) / (q11 + q22), 2 * q12 / (q11 + q22)], dim=-1)


def test_response_of_unweighted_moments_is_analytic():
    """Round Gaussian of T_g = 2 sigma_g^2, sheared by g and convolved with the round Gaussian Gamma
    (T_r = 2 sigma_r^2) has covariance (T_g / 2) S^2 + (T_r / 2) I, so its distortion is
    e1 = 2 g T_g / (T_g (1 + g^2) + T_r (1 - g^2)); e1 is odd in g, so the finite-difference
    response is exactly e1(delta) / delta.  The elliptical PSF must leave no trace (round Gamma)."""
    psf = _psf(g1=0.05, g2=-0.03)
    psf_image = _psf_array(psf)
    sigmas_arcsec = (0.3, 0.6)
    stamps = [_draw(galsim.Convolve(galsim.Gaussian(sigma=s), psf), STAMP_PIXELS) for s in sigmas_arcsec]
    result = metacal_images(_as_batch(*stamps), _as_batch(psf_image, psf_image), DELTA)
    g, response = metacal_response(_unweighted_distortion, result.images, DELTA)
    t_g = 2.0 * (torch.tensor(sigmas_arcsec, dtype=torch.float64) / PIXEL_SCALE_ARCSEC) ** 2
    t_r = 2.0 * result.reconv_sigma_pixels**2
    expected = 2.0 * t_g / (t_g * (1 + DELTA**2) + t_r * (1 - DELTA**2))
    for i in range(2):
        torch.testing.assert_close(response[:, i, i], expected, rtol=1e-3, atol=0.0)
    assert response[:, 0, 1].abs().max() < 1e-4 and response[:, 1, 0].abs().max() < 1e-4
    assert g.abs().max() < 1e-4


def test_response_from_estimates_is_a_central_difference():
    estimates = torch.zeros(2, 5, 2, dtype=torch.float64)
    estimates[:, 0] = torch.tensor([0.1, -0.2])
    estimates[:, 1:3, 0] = torch.tensor([0.012, -0.008])  # g1 at 1p, 1m
    estimates[:, 3:5, 0] = torch.tensor([0.003, 0.001])  # g1 at 2p, 2m
    estimates[:, 3:5, 1] = torch.tensor([0.01, -0.01])  # g2 at 2p, 2m
    g, response = response_from_estimates(estimates, DELTA)
    torch.testing.assert_close(g, torch.tensor([[0.1, -0.2]] * 2, dtype=torch.float64))
    expected = torch.tensor([[1.0, 0.1], [0.0, 1.0]], dtype=torch.float64).expand(2, 2, 2)
    torch.testing.assert_close(response, expected)


@pytest.fixture(scope="module")
def mixed_batch():
    """Three different galaxies with three different PSFs, one of them round."""
    psfs = [_psf(0.03, -0.02), _psf(0.0, 0.0), _psf(-0.04, 0.05)]
    galaxies = [
        galsim.Exponential(half_light_radius=0.4).shear(g1=0.1, g2=-0.3).shift(0.07, 0.02),
        galsim.Sersic(n=2.5, half_light_radius=0.7).shear(g1=-0.2, g2=0.05),
        galsim.Gaussian(sigma=0.3).shift(-0.04, 0.09),
    ]
    images = _as_batch(*(_draw(galsim.Convolve(g, p), STAMP_PIXELS) for g, p in zip(galaxies, psfs)))
    return images, _as_batch(*(_psf_array(p) for p in psfs))


@pytest.mark.parametrize("block_stamps", [None, 2])
def test_batch_equals_single_stamps(mixed_batch, block_stamps, monkeypatch):
    """Also when the batch is worked through in blocks (each with its own PSFs and frequency band)."""
    if block_stamps is not None:
        monkeypatch.setattr("lensml.shear.metacal.BLOCK_STAMPS", block_stamps)
    images, psfs = mixed_batch
    assert block_stamps is None or len(images) > block_stamps
    batched = metacal_images(images, psfs, DELTA)
    for i in range(len(images)):
        single = metacal_images(images[i : i + 1], psfs[i : i + 1], DELTA)
        torch.testing.assert_close(batched.images[i : i + 1], single.images, rtol=0, atol=1e-12)
        torch.testing.assert_close(batched.reconv_sigma_pixels[i : i + 1], single.reconv_sigma_pixels)


def test_rotating_the_input_by_90_degrees_flips_the_shears(mixed_batch):
    """Shear is spin-2: a 90-degree rotation maps (g1, g2) to (-g1, -g2), so 1p <-> 1m and 2p <-> 2m."""
    images, psfs = mixed_batch
    base = metacal_images(images, psfs, DELTA).images
    rotated = metacal_images(torch.rot90(images, 1, (-2, -1)), torch.rot90(psfs, 1, (-2, -1)), DELTA).images
    swap = [0, 2, 1, 4, 3]
    expected = torch.rot90(base[:, swap], 1, (-2, -1))
    peak = base.abs().amax()
    assert (rotated - expected).abs().max() / peak < 1e-6


def _correlation_e1(images: torch.Tensor) -> torch.Tensor:
    """e1 of the noise autocorrelation: sum (kx^2 - ky^2) |F|^2 / sum k^2 |F|^2 per image.

    A linear statistic of zero-mean noise averages to zero whatever the shear, so the spurious
    shear response of noise shows up in quadratic ones like this (what biases noisy shapes)."""
    power = torch.fft.rfft2(images).abs() ** 2
    ky = torch.fft.fftfreq(images.shape[-2], dtype=images.dtype)[:, None]
    kx = torch.fft.rfftfreq(images.shape[-1], dtype=images.dtype)[None, :]
    return (power * (kx**2 - ky**2)).sum(dim=(-2, -1)) / (power * (kx**2 + ky**2)).sum(dim=(-2, -1))


def test_rotated_noise_cancels_the_noise_shear_response():
    """Pure noise: sheared noise is anisotropic in step with the shear, unless the rotated-noise
    correction adds the opposite anisotropy."""
    n_stamps, pixels, sigma = 64, 32, 1.0  # small stamps keep it cheap; many keep it significant
    psfs = _as_batch(*[_psf_array(_psf(0.06, -0.04))] * n_stamps)
    noise = torch.randn(n_stamps, pixels, pixels, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    plain = metacal_images(noise, psfs, DELTA).images
    fixed = metacal_images(noise, psfs, DELTA, noise_sigma=sigma, generator=torch.Generator().manual_seed(12)).images

    def z_score(images_5):
        diff = _correlation_e1(images_5[:, 1]) - _correlation_e1(images_5[:, 2])
        return diff.mean() / (diff.std() / n_stamps**0.5), diff.mean()

    z_plain, mean_plain = z_score(plain)
    z_fixed, mean_fixed = z_score(fixed)
    assert z_plain.abs() > 10
    assert z_fixed.abs() < 4 and mean_fixed.abs() < 0.1 * mean_plain.abs()
    variance_ratio = fixed[:, 0].var() / plain[:, 0].var()
    assert 1.8 < variance_ratio < 2.2  # the correction doubles the noise variance


def test_noise_sigma_with_generator_equals_the_same_noise_image(mixed_batch):
    images, psfs = mixed_batch
    drawn = torch.randn(images.shape, dtype=images.dtype, generator=torch.Generator().manual_seed(5)) * 0.01
    from_image = metacal_images(images, psfs, DELTA, noise=drawn).images
    generator = torch.Generator().manual_seed(5)
    from_sigma = metacal_images(images, psfs, DELTA, noise_sigma=0.01, generator=generator).images
    torch.testing.assert_close(from_image, from_sigma, rtol=0, atol=1e-14)


def test_neighbours_that_share_noise_and_psf_share_one_correction(mixed_batch):
    """A pair (neighbouring stamps with one noise image and one PSF) gets its correction made once:
    each stamp's images are those it gets on its own, whatever the neighbours share.  One PSF for all
    (with several, a block's frequency band follows its widest, which moves the noise's by 1e-6)."""
    images, psfs = mixed_batch
    order = [0, 0, 1, 2, 2]  # stamps 0-1 and 3-4 are pairs; 1-2 do not share their noise
    noise = torch.randn(3, *images.shape[1:], dtype=images.dtype, generator=torch.Generator().manual_seed(8)) * 1e-3
    galaxies = images[order] * (1.0 + 0.1 * torch.arange(5, dtype=images.dtype))[:, None, None]  # every stamp differs
    psf = psfs[[1]]
    together = metacal_images(galaxies, psf.expand(5, -1, -1), DELTA, noise=noise[order]).images
    alone = torch.cat([metacal_images(galaxies[[i]], psf, DELTA, noise=noise[[k]]).images for i, k in enumerate(order)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)


def test_neighbours_that_share_only_their_noise_keep_their_own_corrections(mixed_batch):
    """The same noise image beside a different PSF, or a different reconvolution width, is not the same
    correction: those neighbours get their own (checked to 1e-4 of the noise; the frequency band that
    a block's widest PSF sets moves the noise's images by 1e-6 of it)."""
    images, psfs = mixed_batch
    noise = torch.randn(images.shape[1:], dtype=images.dtype, generator=torch.Generator().manual_seed(9)) * 1e-3
    galaxies, psf_of = images[[0, 0, 1, 1]], [0, 1, 1, 1]
    sigma = torch.tensor([1.9, 1.9, 1.9, 2.0], dtype=images.dtype)  # stamps 2 and 3: same PSF, other widths
    together = metacal_images(galaxies, psfs[psf_of], DELTA, noise=noise.expand(4, -1, -1),
                              reconv_sigma_pixels=sigma).images
    alone = torch.cat([metacal_images(galaxies[[i]], psfs[[k]], DELTA, noise=noise[None],
                                      reconv_sigma_pixels=sigma[i]).images for i, k in enumerate(psf_of)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-7)


def test_float32_input_comes_back_float32_and_gaussian_image_has_unit_sum(sersic_case):
    image, psf_image = sersic_case
    result = metacal_images(_as_batch(image).float(), _as_batch(psf_image).float(), DELTA)
    assert result.images.dtype == torch.float32 and result.reconv_psf.dtype == torch.float32
    total = gaussian_image(torch.tensor([2.0], dtype=torch.float64), (STAMP_PIXELS, STAMP_PIXELS)).sum()
    assert abs(float(total) - 1.0) < 1e-10


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="same B"):
        metacal_images(torch.zeros(2, 8, 8), torch.zeros(1, 5, 5))
    with pytest.raises(ValueError, match="noise must have"):
        metacal_images(torch.zeros(1, 8, 8), torch.ones(1, 5, 5) / 25, noise=torch.zeros(1, 8, 9))
