"""Committees of lens finders: one model file that every command takes, the mean of calibrated probabilities."""

import json

import numpy as np
import pytest

from lensml.cli import main


@pytest.mark.slow
def test_an_ensemble_averages_its_members_and_holds_out_what_any_trained_on(tmp_path, capsys):
    import lensml

    data, test = tmp_path / "set", tmp_path / "test"
    lensml.simulate_strong("space", 64, data, seed=5)
    lensml.simulate_strong("space", 16, test, seed=6)
    members = []
    for k, arch in enumerate(("lens_flow", "lens_finder")):
        members.append(lensml.train(data, tmp_path / f"m{k}", arch=arch, epochs=1, batch_size=16, seed=k))
    assert main(["-q", "ensemble", "-m", *map(str, members), "-o", str(tmp_path / "ens")]) == 0
    ens = tmp_path / "ens.safetensors"
    # its probability is the mean of the members' calibrated probabilities, scene by scene
    p = [lensml.predict(test, m, workers=0) for m in members]
    np.testing.assert_allclose(lensml.predict(test, ens, workers=0), np.mean(p, axis=0), rtol=1e-5, atol=1e-7)
    # on the training folder it scores only scenes neither member trained on
    scores = {m.name: lensml.evaluate(data, m)["n"] for m in (*members, ens)}
    assert scores["ens.safetensors"] < min(scores["m0.safetensors"], scores["m1.safetensors"])
    assert main(["-q", "features", "-m", str(ens), "-i", str(next((test / "Public" / "Band1").glob("*.fits"))),
                 "-o", str(tmp_path / "maps"), "--saliency"]) == 0
    assert len(list((tmp_path / "maps").glob("*.png"))) == 3 + 2 + 1  # every member's convolutions, the saliency
    capsys.readouterr()
    assert main(["-q", "ensemble", "-m", str(members[0]), "-o", str(tmp_path / "one")]) == 2
    assert "at least two" in capsys.readouterr().err
    other = lensml.simulate_strong("ground", 16, tmp_path / "ground", seed=1)
    ground_model = lensml.train(other.parent, tmp_path / "g", arch="lens_flow", epochs=1, batch_size=8)
    assert main(["-q", "ensemble", "-m", str(members[0]), str(ground_model), "-o", str(tmp_path / "mixed")]) == 2
    assert "bands 4 differs" in capsys.readouterr().err


def test_saliency_of_a_linear_model_is_its_weights(tmp_path):
    """For logit = w . x, d logit / d x = w: the saliency map is |w| pixel by pixel."""
    import torch

    from lensml.features import input_saliency, save_saliency

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 8 * 8, 1))
    x = torch.randn(1, 2, 8, 8)
    saliency = input_saliency(net, x)
    np.testing.assert_allclose(saliency, net[1].weight.detach().abs().reshape(2, 8, 8).numpy(), rtol=1e-6)
    out = save_saliency(x[0].numpy(), saliency, tmp_path / "s.png", "linear")
    assert out.read_bytes()[:4] == b"\x89PNG"
