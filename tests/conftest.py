"""Shared fixtures: tiny but real data sets made with GalSim, once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lensml.simulate.weak import WeakSimConfig
from lensml.simulate.weak_files import simulate_weak

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# LENSML_TEST_NO_SHARED=1 hides ../shared/data, so a checkout that has it can run the tests as a
# clean clone does: `challenge_samples` then builds its stand-ins.
if os.environ.get("LENSML_TEST_NO_SHARED"):
    SHARED_DATA = Path("/nonexistent/lensml-shared-data")

# ID -> is_lens of the real samples, copied from ../shared/data/challenge_samples/<survey>/classifications.csv:
# the stand-ins carry the same IDs and classes, so a test names the same scenes on either.
SAMPLE_LABELS = {
    "space": {100002: 1, 100003: 1, 100004: 0, 100008: 1, 100010: 1, 100012: 0, 100023: 0, 100026: 0},
    "ground": {100002: 1, 100003: 1, 100004: 0, 100008: 0, 100010: 0, 100014: 1},
}
# The real samples' masked (value 100) pixels as (rows, columns) blocks by (survey, ID, band index): in
# the ground U band, a 7x7 square (49 pixels) in 100003 and an edge strip of 2 rows + 10 pixels (212) in 100008.
SAMPLE_MASKS = {
    ("ground", 100003, 3): [(slice(61, 68), slice(78, 85))],
    ("ground", 100008, 3): [(slice(0, 2), slice(None)), (2, slice(0, 10))],
}


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


@pytest.fixture(scope="session", autouse=True)
def private_cache_home(tmp_path_factory):
    """Caches of read-only data sets (../shared) go under ~/.cache/lensml: keep the tests' out of the home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache_home")))
        yield


def copy_samples(source: Path, target: Path) -> Path:
    """A user's own copy of a sample folder: writable, unlike the read-only ../shared release it
    may come from (copytree would carry over its missing write bits)."""
    shutil.copytree(source, target, copy_function=shutil.copyfile)
    for folder, _, _ in os.walk(target):
        os.chmod(folder, 0o755)
    return target


@pytest.fixture(scope="session")
def challenge_samples(tmp_path_factory):
    """The real challenge samples from ../shared/data, or, where a checkout has none beside it,
    simulated stand-ins with their layout, IDs, labels and masked pixels, so no test needs to skip."""
    real = SHARED_DATA / "challenge_samples"
    if real.is_dir():
        return real
    root = tmp_path_factory.mktemp("samples")
    for survey, labels in SAMPLE_LABELS.items():
        _stand_ins(survey, labels, root / survey, tmp_path_factory.mktemp(f"{survey}_pool"))
    return root


def _stand_ins(survey, labels, out, pool_dir, pool_size=32):
    """Simulate `pool_size` scenes, then copy ones like the real samples, of the right class, to the sample IDs.

    Like the real ones, a stand-in has no masked pixels but those of SAMPLE_MASKS, and in every band a
    source that stands out of the sky (its brightest pixel lies above the band's zscale upper limit).
    """
    from astropy.io import fits
    from astropy.visualization import ZScaleInterval

    from lensml.io.challenge import band_path, get_survey, masked_pixels, read_labels, read_scene
    from lensml.simulate.strong_files import simulate_strong

    simulate_strong(survey, pool_size, pool_dir, seed=1, first_id=200000, progress=False, batch_size=pool_size)
    pool = {0: [], 1: []}
    for image_id, label in read_labels(pool_dir).items():
        scene = read_scene(pool_dir, survey, image_id)
        if not masked_pixels(scene).any() and all(b.max() > ZScaleInterval().get_limits(b)[1] for b in scene):
            pool[label].append(image_id)
    for image_id, label in labels.items():
        source = pool[label].pop(0)
        for b in range(len(get_survey(survey).bands)):
            target = band_path(out, survey, b, image_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(band_path(pool_dir, survey, b, source), target)
            with fits.open(target, mode="update") as hdus:
                hdus[0].header["IMAGEID"] = image_id
                for rows, cols in SAMPLE_MASKS.get((survey, image_id, b), ()):
                    hdus[0].data[rows, cols] = 100.0  # the challenge's value of a masked pixel
    (out / "classifications.csv").write_text("ID,is_lens\n" + "".join(f"{i},{v}\n" for i, v in labels.items()))
    shutil.rmtree(pool_dir)
