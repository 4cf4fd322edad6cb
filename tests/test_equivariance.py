"""Shear estimates turn with the image: rotated and transposed copies of an independent set give the
rotated shears exactly, which removes the additive bias a network's grid-fixed offset leaves."""

import galsim
import numpy as np
import torch

from lensml.data.transforms import normalise
from lensml.inference import predict_array
from lensml.modelfile import ModelInfo


def _galsim_stamps(n=12, size=40, seed=1):
    """Sheared, PSF-convolved Sersic galaxies and their PSFs drawn directly with GalSim (not lensml)."""
    rng = np.random.default_rng(seed)
    gals, psfs = [], []
    for _ in range(n):
        psf = galsim.Moffat(beta=3.5, fwhm=0.7).shear(e1=rng.uniform(-0.03, 0.03), e2=rng.uniform(-0.03, 0.03))
        gal = galsim.Sersic(n=rng.uniform(0.8, 2.5), half_light_radius=rng.uniform(0.4, 1.0))
        gal = gal.shear(g1=rng.normal(0, 0.2), g2=rng.normal(0, 0.2)).shift(*rng.uniform(-0.1, 0.1, 2))
        gals.append(galsim.Convolve(gal, psf).drawImage(nx=size, ny=size, scale=0.2).array)
        psfs.append(psf.drawImage(nx=size, ny=size, scale=0.2).array)
    return np.stack([gals, psfs], axis=1)


def _untrained_shear_cnn():
    info = ModelInfo(arch="shear_cnn", arch_kwargs={"in_channels": 2, "out_features": 2, "image_size": [40, 40]},
                     task="shear", inputs=["galaxy", "psf"], norm="rms", targets=["g1", "g2"], target_mean=[0.0, 0.0],
                     target_std=[0.1, 0.1])
    torch.manual_seed(0)
    net = info.build().eval()
    with torch.no_grad():  # an untrained net is far from equivariant: a clear offset, as training leaves a small one
        net[-1][-1].bias.fill_(0.5)
    return net, info


def test_rotated_and_transposed_sets_give_rotated_shears():
    x = normalise(_galsim_stamps(), "rms")
    rotated = np.ascontiguousarray(np.rot90(x, 1, axes=(2, 3)))
    transposed = np.ascontiguousarray(np.swapaxes(x, 2, 3))
    net, info = _untrained_shear_cnn()
    cpu = torch.device("cpu")
    g = predict_array(net, info, x, cpu)
    # a 90-degree rotation maps (g1, g2) to (-g1, -g2); swapping x and y to (-g1, g2)
    np.testing.assert_allclose(predict_array(net, info, rotated, cpu), -g, atol=1e-6)
    np.testing.assert_allclose(predict_array(net, info, transposed, cpu), g * [-1, 1], atol=1e-6)
    # the grid-fixed part cancels: the single-view network carries an offset of ~0.05, the estimator none
    single = predict_array(net, info, x, cpu, tta=False)
    single_rotated = predict_array(net, info, rotated, cpu, tta=False)
    assert np.abs(single_rotated + single).mean() > 1e-2  # what the checks above would catch
