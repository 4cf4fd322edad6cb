import galsim
import numpy as np
import pytest
import torch

from lensml.data.transforms import d4_images, d4_target_signs, normalise, random_d4


@pytest.mark.parametrize("element", range(8))
def test_d4_views_match_galsim_drawing_of_the_transformed_shear(element):
    """The sign rules agree with GalSim: a view of a stamp sheared by g is a stamp sheared by g'."""
    g = np.array([0.21, -0.13])
    base = galsim.Sersic(n=1.5, half_light_radius=2.0)
    psf = galsim.Gaussian(fwhm=1.5)

    def draw(g1, g2):
        return galsim.Convolve(base.shear(g1=g1, g2=g2), psf).drawImage(nx=32, ny=32, scale=0.5).array

    view = d4_images(torch.from_numpy(draw(*g)), element).numpy()
    signs = d4_target_signs(["g1", "g2"], element).numpy()
    expected = draw(*(g * signs))
    np.testing.assert_allclose(view, expected, atol=1e-5 * expected.max())
    if element in (1, 3, 4):  # these views change the shear, so a wrong sign would be caught
        np.testing.assert_raises(AssertionError, np.testing.assert_allclose, view, draw(*g), atol=1e-3 * expected.max())


def test_scalar_targets_do_not_change_sign():
    assert d4_target_signs(["hlr", "g1"], 1).tolist() == [1.0, -1.0]


def test_random_d4_is_seeded_and_transforms_targets_consistently():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2 * 3, 1, 4, 4)
    y = torch.tensor([[0.1, 0.2]] * 6)
    a = random_d4(x, y, torch.Generator().manual_seed(1), names=["g1", "g2"])
    b = random_d4(x, y, torch.Generator().manual_seed(1), names=["g1", "g2"])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for i in range(6):
        element = next(e for e in range(8) if torch.equal(d4_images(x[i], e), a[0][i]))
        assert torch.allclose(a[1][i], y[i] * d4_target_signs(["g1", "g2"], element))


def test_normalise_methods():
    images = np.random.default_rng(0).normal(5.0, 2.0, size=(3, 2, 8, 8)).astype(np.float32)
    rms = normalise(images, "rms")
    np.testing.assert_allclose(np.sqrt((rms**2).mean(axis=(-2, -1))), 1.0, rtol=1e-5)
    mm = normalise(images * 1e-12, "minmax")
    assert mm.min() == 0.0 and mm.max() == pytest.approx(1.0)
    assert normalise(images, "none") is not None and np.array_equal(normalise(images, "none"), images)


@pytest.mark.parametrize("method", ["rms", "minmax", "none"])
def test_normalise_gives_a_tensor_for_a_tensor_with_the_arrays_values(method):
    images = np.random.default_rng(1).normal(5.0, 2.0, size=(3, 2, 8, 8))
    from_array = normalise(images, method)
    from_tensor = normalise(torch.from_numpy(images), method)
    assert isinstance(from_array, np.ndarray) and isinstance(from_tensor, torch.Tensor)
    assert from_array.dtype == np.float32 and from_tensor.dtype == torch.float32
    np.testing.assert_allclose(from_tensor.numpy(), from_array, rtol=1e-6)
    # the hand calculation, in float64
    if method == "rms":
        np.testing.assert_allclose(from_array, images / np.sqrt((images**2).mean(axis=(-2, -1), keepdims=True)),
                                   rtol=1e-6)


def test_random_d4_of_a_part_equals_the_slice_of_the_whole():
    from lensml.training import BatchPart

    x, y = torch.randn(9, 2, 6, 6), torch.randn(9, 2)
    whole = random_d4(x, y, torch.Generator().manual_seed(2), names=["g1", "g2"])
    part = random_d4(x[5:], y[5:], torch.Generator().manual_seed(2), BatchPart(9, 5, 9), names=["g1", "g2"])
    assert torch.equal(part[0], whole[0][5:]) and torch.equal(part[1], whole[1][5:])
