"""Shared fixtures: tiny but real data sets made with GalSim, once per test session."""

from __future__ import annotations

import pytest

from lensml.simulate.weak import WeakSimConfig
from lensml.simulate.weak_files import simulate_weak

SHARED_DATA = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def weak_set(tmp_path_factory):
    """96 noisy stamps of round galaxies (LensNet's PSF and sizes), with 8-bit TIFF copies."""
    out = tmp_path_factory.mktemp("weak")
    config = WeakSimConfig(e_int_sigma=0.0, noise=True, snr=(80.0, 80.0))
    return simulate_weak(config, 96, out, seed=7, workers=1, tif=True, progress=False)


@pytest.fixture(scope="session")
def trained_model(weak_set, tmp_path_factory):
    """shear_cnn trained for two epochs on `weak_set`."""
    from lensml.workflows.shear_config import ShearTrainConfig
    from lensml.workflows.shear_train import train_shear

    out = tmp_path_factory.mktemp("model") / "net"
    config = ShearTrainConfig(epochs=2, batch_size=16, seed=3, val_fraction=0.25)
    return train_shear(str(weak_set), str(out), config, progress=False)


@pytest.fixture(scope="session")
def challenge_samples(tmp_path_factory):
    """The real challenge samples from ../shared/data, or, where a checkout has none beside it,
    simulated folders in the same layout with the IDs the tests name (100002 onwards)."""
    real = SHARED_DATA / "challenge_samples"
    if real.is_dir():
        return real
    from lensml.simulate.strong_files import simulate_strong

    root = tmp_path_factory.mktemp("samples")
    for survey, n in (("space", 8), ("ground", 6)):
        simulate_strong(survey, n, root / survey, seed=1, first_id=100002, progress=False, batch_size=n)
    return root
