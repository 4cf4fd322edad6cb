import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lensml.data.stamps import load_stamps
from lensml.errors import BadInputError, MissingFileError
from lensml.inference import predict_array
from lensml.io.manifest import read_manifest
from lensml.modelfile import load_model, model_path


def test_renamed_model_gives_identical_predictions(trained_model, weak_set, tmp_path):
    moved = tmp_path / "elsewhere" / "renamed.safetensors"
    moved.parent.mkdir()
    shutil.copy(trained_model, moved)
    manifest = read_manifest(weak_set)
    a_net, a_info = load_model(trained_model)
    b_net, b_info = load_model(moved)
    x = load_stamps(manifest, a_info.inputs, a_info.norm, indices=range(10), progress=False)
    a = predict_array(a_net, a_info, x, torch.device("cpu"))
    b = predict_array(b_net, b_info, x, torch.device("cpu"))
    assert np.array_equal(a, b) and a.shape == (10, 2)


def test_tta_averages_views_and_changes_the_answer(trained_model, weak_set):
    manifest = read_manifest(weak_set)
    net, info = load_model(trained_model)
    x = load_stamps(manifest, info.inputs, info.norm, indices=range(6), progress=False)
    plain = predict_array(net, info, x, torch.device("cpu"), tta=False)
    tta = predict_array(net, info, x, torch.device("cpu"), tta=True)
    # Averaging over views commutes with viewing: the TTA answer of a rotated stamp is minus that of the stamp.
    rotated = predict_array(net, info, np.ascontiguousarray(np.rot90(x, 1, axes=(-2, -1))), torch.device("cpu"), tta=True)
    np.testing.assert_allclose(rotated, -tta, atol=1e-5)
    assert not np.allclose(plain, tta)


def test_model_path_accepts_lensnet_style_paths(tmp_path):
    assert model_path(tmp_path / "m").name == "m.safetensors"
    assert model_path(tmp_path / "m.safetensors").name == "m.safetensors"


def test_foreign_truncated_and_newer_files_are_clear_errors(trained_model, tmp_path):
    with pytest.raises(MissingFileError):
        load_model(tmp_path / "absent")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(BadInputError, match="not a readable"):
        load_model(junk)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(trained_model.read_bytes()[:5000])
    with pytest.raises(BadInputError):
        load_model(truncated)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(BadInputError, match="not a lensml model"):
        load_model(plain)
    from safetensors import safe_open

    with safe_open(str(trained_model), "pt") as f:
        header = json.loads(f.metadata()["lensml"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    header["format"] = 99
    newer = tmp_path / "newer.safetensors"
    save_file(tensors, str(newer), metadata={"lensml": json.dumps(header)})
    with pytest.raises(BadInputError, match="upgrade lensml"):
        load_model(newer)


def test_compact_copy_halves_the_file_and_keeps_the_answers(trained_model, weak_set, tmp_path):
    """float16 storage: about half the bytes, the same predictions to float16 precision, the header
    unchanged; a tensor float16 cannot hold stays float32."""
    from safetensors import safe_open

    from lensml.modelfile import read_info, save_compact

    compact = save_compact(trained_model, tmp_path / "small")
    big = model_path(trained_model)
    assert compact.stat().st_size < 0.6 * big.stat().st_size
    assert read_info(compact) == read_info(big)
    (net, info), (small, _) = load_model(big), load_model(compact)
    stamps = load_stamps(read_manifest(weak_set), info.inputs, info.norm, indices=range(10), progress=False)
    cpu = torch.device("cpu")
    full, half = predict_array(net, info, stamps, cpu), predict_array(small, info, stamps, cpu)
    assert np.abs(full - half).max() < 2e-3 * max(1.0, np.abs(full).max())
    assert not np.array_equal(full, half)  # the weights did change precision

    with safe_open(str(big), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        header = f.metadata()
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = 1e6  # beyond float16's range
    save_file(tensors, str(tmp_path / "wide.safetensors"), metadata=header)
    with safe_open(str(save_compact(tmp_path / "wide.safetensors", tmp_path / "wide_small")), framework="pt") as f:
        assert f.get_tensor(name).dtype == torch.float32
        assert any(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
