"""The Python API: the CLI's operations as functions that return values and print nothing."""

import numpy as np
import pytest

import lensml


def test_help_lists_the_operations():
    import pydoc

    text = pydoc.render_doc(lensml, renderer=pydoc.plaintext)
    for name in ("simulate_weak", "simulate_strong", "train", "evaluate", "predict", "calibrate", "load_model",
                 "roc_auc", "shear_bias", "get_survey"):
        assert f"{name}(" in text


@pytest.mark.slow
def test_lens_finding_from_a_notebook(tmp_path, capsys):
    labels_csv = lensml.simulate_strong("des", 24, tmp_path / "des", seed=3)
    assert labels_csv.name == "classifications.csv"
    model = lensml.train(tmp_path / "des", tmp_path / "m", arch="lens_flow", epochs=1, batch_size=8, seed=1)
    scores = lensml.evaluate(tmp_path / "des", model)
    assert {"auc", "tpr0", "tpr10", "n"} <= set(scores) and 0 <= scores["auc"] <= 1
    p = lensml.predict(tmp_path / "des", model, workers=0)
    assert p.shape == (24,) and np.all((p >= 0) & (p <= 1))
    net, info = lensml.load_model(model)
    assert info.task == "lens" and info.survey["name"] == "des"
    assert capsys.readouterr().out == ""  # quiet unless verbose=True
    lensml.predict(tmp_path / "des", model, workers=0, verbose=True)
    assert "p_lens" in capsys.readouterr().out


@pytest.mark.slow
def test_shear_from_a_notebook(tmp_path, capsys):
    data = lensml.simulate_weak(64, tmp_path / "w", seed=2, e_int_sigma=0.0, noise=True, snr=(80.0, 80.0))
    model = lensml.train(data, tmp_path / "s", epochs=1, batch_size=16, val_fraction=0.25)
    results = lensml.evaluate(data, model, hsm="none")
    assert {"rmse_g1", "m1", "c2", "m1_err"} <= set(results)
    g = lensml.predict(data, model)
    assert g.shape == (64, 2)
    assert capsys.readouterr().out == ""
    with pytest.raises(lensml.LensmlError, match="--norm applies to lens finding"):
        lensml.train(data, tmp_path / "s2", norm="zscale")
