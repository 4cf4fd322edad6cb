"""Lens finding end to end on the challenge sample files, real or stand-ins (copied, so caches stay in tmp)."""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import copy_samples
from lensml.cli import main
from lensml.data.lens_set import load_lens_set
from lensml.modelfile import load_model
from lensml.workflows.run_training import split_indices


@pytest.fixture(scope="module")
def challenge(tmp_path_factory, challenge_samples):
    root = tmp_path_factory.mktemp("challenge")
    for survey in ("space", "ground"):
        copy_samples(challenge_samples / survey, root / survey)
    return root


def run(*args):
    return main(["-q", *map(str, args)])


def test_cache_is_built_once_and_rebuilt_when_a_file_changes(challenge):
    first = load_lens_set(challenge / "ground", "zscale", progress=False)
    assert first.images.shape == (6, 4, 101, 101) and first.labels.tolist() == [1, 1, 0, 0, 0, 1]
    assert 0.0 <= float(np.min(first.images)) and float(np.max(first.images)) <= 1.0
    cache = challenge / "ground" / "lensml_cache" / "ground_zscale.npy"
    written = cache.stat()
    again = load_lens_set(challenge / "ground", "zscale", progress=False)
    assert cache.stat().st_ino == written.st_ino and cache.stat().st_mtime_ns == written.st_mtime_ns
    assert again.sha256 == first.sha256
    band = challenge / "ground" / "Public" / "Band2" / "imageSDSS_I-100004.fits"
    band.write_bytes(band.read_bytes())  # same bytes, new modification time: the cache must be checked again
    later = band.stat().st_mtime_ns + 10**9  # a second on, whatever the file system's clock resolution
    os.utime(band, ns=(later, later))
    rebuilt = load_lens_set(challenge / "ground", "zscale", progress=False)
    assert cache.stat().st_ino != written.st_ino  # written anew (atomic writes replace the file)
    np.testing.assert_array_equal(np.asarray(rebuilt.images), np.asarray(first.images))


def test_stratified_split_is_reproducible_and_keeps_both_classes():
    labels = np.array([1] * 30 + [0] * 70)
    train, val = split_indices(100, 0.2, seed=4, strata=labels)
    assert np.array_equal(val, split_indices(100, 0.2, seed=4, strata=labels)[1])
    assert labels[val].sum() == 6 and len(val) == 20 and len(np.intersect1d(train, val)) == 0


def test_train_evaluate_predict_features(challenge, tmp_path, capsys):
    model = tmp_path / "space_flow"
    assert run("train", "-i", challenge / "space", "-m", model, "--arch", "lens_flow", "--epochs", 2,
               "--batch-size", 4, "--val-fraction", 0.25, "--augment", "--seed", 5) == 0
    _, info = load_model(model.with_suffix(".safetensors"))
    val = info.training["val_indices"]
    assert len(val) == 2 and info.task == "lens" and info.norm == "asinh" and info.arch_kwargs["in_channels"] == 1

    report = tmp_path / "eval.json"
    assert run("evaluate", "-i", challenge / "space", "-m", model, "--json", report, "--plot", tmp_path / "roc.png") == 0
    results = json.loads(report.read_text())
    assert set(["n", "auc", "tpr", "fpr", "tpr0", "tpr10", "seconds_per_image", "device"]) <= set(results)
    assert results["n"] == 2 and "did not train on" in results["subset"] and results["seconds_per_image"] > 0
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"

    renamed = tmp_path / "moved.safetensors"
    shutil.copy(model.with_suffix(".safetensors"), renamed)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert run("predict", "-i", challenge / "space", "-m", model, "-o", a) == 0
    assert run("predict", "-i", challenge / "space", "-m", renamed, "-o", b) == 0
    assert a.read_text() == b.read_text() and a.read_text().splitlines()[0] == "ID,p_lens,is_lens"
    assert len(a.read_text().splitlines()) == 9

    capsys.readouterr()
    one = challenge / "space" / "Public" / "Band1" / "imageEUC_VIS-100008.fits"
    assert run("predict", "-i", one, "-m", model) == 0
    row = next(line for line in a.read_text().splitlines() if line.startswith("100008,"))
    printed = float(capsys.readouterr().out.split("=")[1])
    assert abs(printed - float(row.split(",")[1])) <= 6e-6  # 5 and 6 digits: rounding twice may differ in the last

    assert run("features", "-m", model, "-i", one, "-o", tmp_path / "maps") == 0
    assert len(list((tmp_path / "maps").glob("*.png"))) == 3  # lens_flow has three conv layers


def test_ground_model_on_space_data_is_a_clear_error(challenge, tmp_path, capsys):
    model = tmp_path / "ground_flow"
    assert run("train", "-i", challenge / "ground", "-m", model, "--arch", "lens_flow", "--epochs", 1,
               "--batch-size", 4, "--val-fraction", 0.34) == 0
    capsys.readouterr()
    assert run("evaluate", "-i", challenge / "space", "-m", model) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "4 band(s)" in err
    assert run("train", "-i", challenge / "space", "-m", tmp_path / "x", "--arch", "shear_cnn") == 2
    assert "lens finder" in capsys.readouterr().err
