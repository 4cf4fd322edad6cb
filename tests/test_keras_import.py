"""`lensml import-keras`: each architecture built in Keras 3 (torch backend), saved as .h5, imported, and
required to give the same outputs on the same inputs."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported: no TensorFlow here

import json

import numpy as np
import pytest
import torch

import keras  # noqa: E402  (in the test extra)
from keras import layers as L  # noqa: E402

from lensml.cli import main  # noqa: E402
from lensml.modelfile import load_model  # noqa: E402

assert keras.backend.backend() == "torch"


def _same(x, filters, kernel, act=None, strides=1):
    return L.Conv2D(filters, kernel, strides=strides, padding="same", activation=act)(x)


def _preact_block(x, in_ch, width, out_ch, stride=1):
    """lensml's PreActBottleneck, layer for layer (BN-ELU, projection shortcut, three convolutions)."""
    act = L.Activation("elu")(L.BatchNormalization()(x))
    project = stride != 1 or in_ch != out_ch
    skip = L.Conv2D(out_ch, 1, strides=stride)(act) if project else x
    y = L.Conv2D(width, 1, strides=stride)(act)
    y = _same(L.Activation("elu")(L.BatchNormalization()(y)), width, 3)
    y = L.Conv2D(out_ch, 1)(L.Activation("elu")(L.BatchNormalization()(y)))
    return L.Add()([y, skip])


def cas_swinburne(x):
    for filters, kernel in ((96, 11), (128, 5), (256, 3)):
        x = L.MaxPooling2D(3)(_same(x, filters, kernel, "relu"))
    x = L.Flatten()(x)
    for _ in range(2):
        x = L.Dropout(0.5)(L.Dense(1024, activation="relu")(x))
    return L.Dense(1)(x)


def lastro_epfl(x):
    x = L.Conv2D(16, 4, activation="relu")(x)
    x = L.BatchNormalization()(L.MaxPooling2D(2)(L.Conv2D(16, 3, activation="relu")(x)))
    for filters in (32, 64):
        x = L.Conv2D(filters, 3, activation="relu")(x)
        x = L.BatchNormalization()(L.MaxPooling2D(2)(L.Conv2D(filters, 3, activation="relu")(x)))
    x = L.Dropout(0.1)(x)
    x = L.Dropout(0.1)(L.Conv2D(128, 3, activation="relu")(x))
    x = L.Dropout(0.1)(L.BatchNormalization()(L.Conv2D(128, 3, activation="relu")(x)))
    x = L.Flatten()(x)
    for _ in range(2):
        x = L.Dropout(0.1)(L.Dense(1024, activation="relu")(x))
    x = L.BatchNormalization()(L.Dense(1024, activation="relu")(x))
    return L.Dense(1)(x)


def cmu_deeplens(x):
    x = L.BatchNormalization()(L.Activation("elu")(_same(x, 32, 7)))
    channels = 32
    for i, width in enumerate((16, 32, 64, 128, 256)):
        x = _preact_block(x, channels, width, 2 * width, 1 if i == 0 else 2)
        for _ in range(2):
            x = _preact_block(x, 2 * width, width, 2 * width)
        channels = 2 * width
    return L.Dense(1)(L.Flatten()(L.AveragePooling2D(2)(x)))


def wsi_net(x):
    x = L.Activation("elu")(_same(x, 32, 7))
    x = _preact_block(x, 32, 16, 32)
    x = _preact_block(x, 32, 32, 64, 2)
    for filters, kernel in ((32, 1), (32, 5)):
        x = L.ReLU()(L.BatchNormalization()(L.Activation("elu")(_same(x, filters, kernel))))
    x = L.Flatten()(L.MaxPooling2D(2)(x))
    return L.Dense(1)(L.Dense(128)(x))


def lens_flow(x):
    x = L.AveragePooling2D(3)(x)
    for filters, kernel in ((16, 5), (25, 5), (36, 4)):
        x = L.MaxPooling2D(2)(_same(x, filters, kernel, "relu"))
    x = L.Dropout(0.5)(L.Dense(128, activation="relu")(L.Flatten()(x)))
    return L.Dense(1)(x)


def lens_finder(x):
    x = L.MaxPooling2D(2)(_same(x, 64, 5, "relu"))
    x = L.MaxPooling2D(2)(_same(x, 128, 3, "relu"))
    return L.Dense(1)(L.Dense(128, activation="relu")(L.Flatten()(x)))


def lensnet_vgg19(x):
    for block, (filters, convs) in enumerate(((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))):
        for _ in range(convs):
            x = _same(x, filters, 3, "relu")
        x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(512, activation="relu")(L.Dense(512, activation="relu")(x))
    return L.Dense(2)(x)


def _keras_model(builder, shape, seed=0):
    """The Keras network with every weight drawn anew (biases and BatchNorm moments too), so a
    misplaced or untransposed array cannot pass."""
    inputs = keras.Input(shape)
    model = keras.Model(inputs, builder(inputs))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        new = []
        for w in layer.weights:
            role, value = w.path.rsplit("/", 1)[-1], np.asarray(w.numpy())
            if role in ("gamma", "moving_variance"):
                value = rng.uniform(0.5, 1.5, value.shape)
            elif role in ("beta", "moving_mean", "bias"):
                value = rng.normal(0.0, 0.1, value.shape)
            new.append(value.astype("float32"))
        if new:
            layer.set_weights(new)
    return model


def _compare(builder, arch, shape, tmp_path, extra=()):
    model = _keras_model(builder, shape)
    h5 = tmp_path / f"{arch}.h5"
    model.save(h5)
    out = tmp_path / arch
    assert main(["-q", "import-keras", str(h5), "--arch", arch, "-o", str(out), *extra]) == 0
    net, info = load_model(out)
    images = np.random.default_rng(1).uniform(0.0, 1.0, (3, *shape)).astype("float32")
    expected = np.asarray(model(images, training=False).detach().cpu())
    with torch.no_grad():
        got = net(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()  # both before any output scaling
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(got - expected).max() / scale < 1e-5, (got, expected)
    assert np.abs(expected).max() > 1e-3  # not a network that outputs nothing
    return info


@pytest.mark.parametrize("builder", [cas_swinburne, lastro_epfl, cmu_deeplens, wsi_net, lens_flow, lens_finder],
                         ids=lambda b: b.__name__)
def test_lens_finder_imports_give_keras_outputs(builder, tmp_path):
    info = _compare(builder, builder.__name__, (101, 101, 1), tmp_path)
    assert info.task == "lens" and info.inputs == ["space"] and info.image_size == (101, 101)


def test_four_band_ground_model_keeps_its_band_order(tmp_path):
    info = _compare(lens_finder, "lens_finder", (101, 101, 4), tmp_path)
    assert info.inputs == ["ground"]


def test_lensnet_vgg19_with_its_config_scaling(tmp_path):
    """LensNet's [0, 1] outputs map back to [min, max] of each target, read from config.json."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"default": {"classes": ["g1", "g2"], "normalize_output": True},
                                  "lensnet_vgg19": {"min": [-0.4, -0.3], "max": [0.4, 0.5]}}))
    info = _compare(lensnet_vgg19, "lensnet_vgg19", (40, 40, 1), tmp_path, ["--config", str(config)])
    assert info.targets == ["g1", "g2"] and info.target_mean == [-0.4, -0.3]
    np.testing.assert_allclose(info.target_std, [0.8, 0.8])


def test_wrong_architecture_or_file_is_one_line(tmp_path, capsys):
    model = _keras_model(lens_finder, (101, 101, 1))
    model.save(tmp_path / "finder.h5")
    assert main(["-q", "import-keras", str(tmp_path / "finder.h5"), "--arch", "lens_flow", "-o",
                 str(tmp_path / "x")]) == 2
    assert "another architecture" in capsys.readouterr().err
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    assert main(["-q", "import-keras", str(tmp_path / "bad.h5"), "--arch", "lens_flow", "-o", str(tmp_path / "y")]) == 2
    assert "HDF5" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()


def test_a_damaged_keras_file_or_too_small_an_input_is_one_line(tmp_path, capsys):
    import h5py

    model = _keras_model(lens_finder, (101, 101, 1))
    model.save(tmp_path / "finder.h5")
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes((tmp_path / "finder.h5").read_bytes())
    with h5py.File(damaged, "r+") as f:  # a layer the file lists, but whose group is gone
        group = f["model_weights"]
        del group[next(n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]
                       if len(group[n.decode() if isinstance(n, bytes) else n].attrs["weight_names"]))]
    capsys.readouterr()
    assert main(["-q", "import-keras", str(damaged), "--arch", "lens_finder", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a damaged Keras file" in err, err
    assert main(["-q", "import-keras", str(tmp_path / "finder.h5"), "--arch", "cas_swinburne", "--image-size", "5", "5",
                 "-o", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "too small" in err, err
    assert not list(tmp_path.glob("*.safetensors"))
