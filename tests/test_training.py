import types

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lensml.errors import BadInputError
from lensml.training import ArraySplit, LoopSettings, TrainState, _state_like_weights, fit
from lensml.modelfile import load_model
from lensml.workflows.shear_config import ShearTrainConfig, build_config
from lensml.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from lensml.workflows.run_training import split_indices
from lensml.workflows.shear_train import train_shear


def _weights(path):
    return load_file(str(path))


def test_split_is_seeded_disjoint_and_complete():
    a_train, a_val = split_indices(100, 0.2, seed=1)
    b_train, b_val = split_indices(100, 0.2, seed=1)
    assert np.array_equal(a_val, b_val) and len(a_val) == 20
    assert sorted(np.concatenate([a_train, a_val]).tolist()) == list(range(100))
    assert not np.array_equal(a_val, split_indices(100, 0.2, seed=2)[1])


def test_training_lowers_the_loss_and_records_everything(weak_set, tmp_path):
    config = ShearTrainConfig(epochs=3, batch_size=16, seed=1, val_fraction=0.25, lr=2e-3)
    path = train_shear(str(weak_set), str(tmp_path / "m"), config, progress=False)
    _, info = load_model(path)
    history = info.training["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert info.inputs == ["galaxy", "psf"] and info.targets == ["g1", "g2"]
    assert info.target_mean == [0.0, 0.0]  # spin-2: the D4 views need labels standardised around zero
    assert len(info.training["val_indices"]) == 24 and info.training["config"]["seed"] == 1
    assert checkpoint_path(path).is_file()


def test_model_file_holds_the_best_epoch(weak_set, tmp_path):
    """The saved weights reproduce the best validation loss recorded in the file."""
    from lensml.data.stamps import load_stamps
    from lensml.io.manifest import read_manifest
    from lensml.training import ArraySplit, LOSSES, mean_loss

    config = ShearTrainConfig(epochs=3, batch_size=16, seed=6, val_fraction=0.25, calibrate=False)
    path = train_shear(str(weak_set), str(tmp_path / "best"), config, progress=False)
    net, info = load_model(path)
    manifest = read_manifest(weak_set)
    x = load_stamps(manifest, info.inputs, info.norm, progress=False)
    raw = np.array([[e[t] for t in info.targets] for e in manifest.entries])
    y = ((raw - info.target_mean) / np.asarray(info.target_std)).astype(np.float32)
    val = ArraySplit(x, y, np.asarray(info.training["val_indices"]))
    loss = mean_loss(net.to(memory_format=torch.channels_last), val, LOSSES["mse"](), 16, torch.device("cpu"))
    assert loss == pytest.approx(info.training["best_val_loss"], rel=1e-4)
    assert info.training["best_val_loss"] == min(row["val_loss"] for row in info.training["history"])


def test_resumed_training_equals_an_uninterrupted_run(weak_set, tmp_path):
    config = ShearTrainConfig(epochs=2, batch_size=16, seed=2, val_fraction=0.25)
    full = train_shear(str(weak_set), str(tmp_path / "full"), config, progress=False)
    half = ShearTrainConfig(epochs=1, batch_size=16, seed=2, val_fraction=0.25)
    train_shear(str(weak_set), str(tmp_path / "resumed"), half, progress=False)
    resumed = train_shear(str(weak_set), str(tmp_path / "resumed"), config, progress=False)
    for a_path, b_path in [(checkpoint_path(full), checkpoint_path(resumed)), (full, resumed)]:
        a, b = _weights(a_path), _weights(b_path)  # last weights, then the best ones
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    other_split = ShearTrainConfig(epochs=3, batch_size=16, seed=5, val_fraction=0.25)
    with pytest.raises(BadInputError, match="split"):
        train_shear(str(weak_set), str(tmp_path / "resumed"), other_split, progress=False)


def _fp16_fit(model, optimizer, state, epochs):
    # Targets of about 100 overflow float16 gradients at the initial loss scale (65536): the scaler
    # skips those steps and halves the scale until they fit.
    rng = np.random.default_rng(0)
    images = rng.standard_normal((64, 1, 4, 4)).astype(np.float32)
    targets = (100 + rng.standard_normal((64, 1))).astype(np.float32)
    settings = LoopSettings(epochs=epochs, batch_size=8, lr=1e-3, loss="mse", seed=3, schedule="constant",
                            precision="fp16")
    return fit(model, ArraySplit(images, targets, np.arange(64)), None, settings, torch.device("cpu"), state,
               optimizer, lambda *_: None, progress=False)


def test_a_resumed_fp16_run_keeps_its_loss_scale(tmp_path):
    def fresh():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(16, 1))
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)

    full_model, full_opt = fresh()
    _fp16_fit(full_model, full_opt, TrainState(), epochs=2)
    assert not torch.equal(full_model[0].weight, fresh()[0][0].weight)  # some steps were taken
    half_model, half_opt = fresh()
    half_state = _fp16_fit(half_model, half_opt, TrainState(), epochs=1)
    assert half_state.loss_scale["scale"] < 65536  # the test's premise: epoch 1 overflowed
    save_checkpoint(tmp_path / "c.safetensors", half_model, half_opt, half_state, {})
    resumed_model, resumed_opt = fresh()
    state, _ = load_checkpoint(tmp_path / "c.safetensors", resumed_model, resumed_opt)
    _fp16_fit(resumed_model, resumed_opt, state, epochs=2)
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("group", [{"fused": True}, {"capturable": True}, {"fused": False}])
def test_resumed_optimiser_state_follows_its_weights_to_the_device(group):
    # A checkpoint is loaded while the weights are still on the CPU; they then move to the device.
    # "meta" stands in for a GPU: Adam's moments must follow, and so must the step count of a
    # fused update (torch's own rule: an unfused step count stays on the CPU).
    weight = torch.nn.Parameter(torch.zeros(4, 3, 2, 2, device="meta").to(memory_format=torch.channels_last))
    state = {"step": torch.tensor(7.0), "exp_avg": torch.ones(4, 3, 2, 2), "exp_avg_sq": torch.ones(4, 3, 2, 2)}
    optimizer = types.SimpleNamespace(param_groups=[{"params": [weight], **group}], state={weight: state})
    _state_like_weights(optimizer)
    moved = optimizer.state[weight]
    for key in ("exp_avg", "exp_avg_sq"):
        assert moved[key].device.type == "meta" and moved[key].stride() == weight.stride()
    assert moved["step"].device.type == ("cpu" if group == {"fused": False} else "meta")
    assert moved["step"].dtype == torch.float32


def test_rerun_with_another_architecture_needs_remove(weak_set, trained_model):
    config = ShearTrainConfig(arch="lensnet_vgg19", epochs=3)
    with pytest.raises(BadInputError, match="-r"):
        train_shear(str(weak_set), str(trained_model), config, progress=False)


def test_lensnet_config_keys_are_accepted(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text('{"default": {"batch_size": 8, "classes": ["g1"], "epochs": 4, "image_height": 40, '
                   '"image_width": 40, "learning_rate": 0.0005, "loss_function": "mean_absolute_error", '
                   '"metrics": ["mae"], "mode": "grayscale", "normalize_output": true, "random_state": 9, '
                   '"test_ratio": 0.3}, "models/old.h5": {"g1": [0, 1]}}')
    config = build_config(str(cfg), {"epochs": 6})
    assert (config.batch_size, config.targets, config.epochs, config.lr, config.loss, config.seed, config.val_fraction,
            config.image_size) == (8, ("g1",), 6, 0.0005, "mae", 9, 0.3, (40, 40))


@pytest.mark.parametrize("settings", [{"epochs": 0}, {"batch_size": -1}, {"val_fraction": 1.0}, {"loss": "hinge"}])
def test_bad_training_settings(settings):
    with pytest.raises(BadInputError):
        ShearTrainConfig(**settings)


def test_calibration_removes_the_measured_multiplicative_bias(weak_set, trained_model, tmp_path):
    from lensml.data.stamps import load_stamps
    from lensml.inference import predict_array
    from lensml.io.manifest import read_manifest
    from lensml.metrics.shear import shear_bias
    from lensml.simulate.weak import WeakSimConfig
    from lensml.simulate.weak_files import simulate_weak
    from lensml.workflows.calibration import calibrate_from_manifest

    model = tmp_path / "m.safetensors"
    model.write_bytes(trained_model.read_bytes())
    with pytest.raises(BadInputError, match="independent"):
        calibrate_from_manifest(str(weak_set), str(model), progress=False)
    calib = simulate_weak(WeakSimConfig(e_int_sigma=0.0, noise=True, snr=(80.0, 80.0)), 200, tmp_path / "calib",
                          seed=8, progress=False)
    stored = calibrate_from_manifest(str(calib), str(model), progress=False)
    net, info = load_model(model)
    manifest = read_manifest(calib)
    x = load_stamps(manifest, info.inputs, info.norm, progress=False)
    raw = predict_array(net, info, x, torch.device("cpu"), calibrated=False)
    fixed = predict_array(net, info, x, torch.device("cpu"))
    for k, name in enumerate(["g1", "g2"]):
        true = manifest.values(name)
        assert stored["m"][name] == pytest.approx(shear_bias(true, raw[:, k])["m"], abs=1e-9)
        assert shear_bias(true, fixed[:, k])["m"] == pytest.approx(0.0, abs=1e-9)
    assert stored["n"] == 200 and stored["sha256"] == manifest.sha256
    # what matters: on stamps drawn apart from the calibration set, the stored m removes the bias
    other = read_manifest(simulate_weak(WeakSimConfig(e_int_sigma=0.0, noise=True, snr=(80.0, 80.0)), 200,
                                        tmp_path / "other", seed=9, progress=False))
    x = load_stamps(other, info.inputs, info.norm, progress=False)
    raw = predict_array(net, info, x, torch.device("cpu"), calibrated=False)
    fixed = predict_array(net, info, x, torch.device("cpu"))
    for k, name in enumerate(["g1", "g2"]):
        before, after = (shear_bias(other.values(name), g[:, k]) for g in (raw, fixed))
        assert abs(before["m"]) > 10 * before["m_err"] + 0.1  # this briefly trained network is far off
        assert abs(after["m"]) < 3 * after["m_err"], (name, after)


def test_evaluation_never_scores_a_training_entry_of_a_grown_reordered_copy(weak_set, trained_model, tmp_path):
    """Entries are recognised by content: copying the set, reordering it and adding new entries
    leaves exactly the validation entries and the new ones to score."""
    import json

    from lensml.io.manifest import read_manifest
    from lensml.identity import held_out, manifest_identity

    info = load_model(trained_model)[1]
    entries = json.loads(weak_set.read_text())
    val = {json.dumps(entries[i], sort_keys=True) for i in info.training["val_indices"]}
    new = [{**e, "g1": e["g1"] + 1e-3} for e in entries[:5]]  # other drawn values: other stamps
    grown = list(reversed(entries)) + new
    copy = tmp_path / "data.json"
    copy.write_text(json.dumps(grown))
    manifest = read_manifest(copy)
    rows, subset = held_out(info, manifest_identity(manifest), "entries")
    scored = {json.dumps(manifest.entries[i], sort_keys=True) for i in rows}
    assert scored == val | {json.dumps(e, sort_keys=True) for e in new}
    assert f"the {len(val) + 5} entries the model did not train on" == subset
    with pytest.raises(BadInputError, match="trained on every one"):
        train_only = tmp_path / "train_only.json"
        train_only.write_text(json.dumps([e for e in entries if json.dumps(e, sort_keys=True) not in val]))
        held_out(info, manifest_identity(read_manifest(train_only)), "entries")


def test_too_few_training_images_is_a_clear_error():
    from lensml.models import create_model
    from lensml.training import ArraySplit, LoopSettings, TrainState, fit

    images = np.zeros((1, 2, 40, 40), np.float32)
    model = create_model("shear_cnn")
    settings = LoopSettings(epochs=1, batch_size=4, lr=1e-3, loss="mse", seed=0, schedule="constant")
    with pytest.raises(BadInputError, match="at least two"):
        fit(model, ArraySplit(images, np.zeros((1, 2), np.float32), np.arange(1)), None, settings,
            torch.device("cpu"), TrainState(), torch.optim.Adam(model.parameters()), lambda *_: None, progress=False)


class _Frozen(torch.nn.Module):
    """A network whose output never changes (its weight's gradient is always zero): the validation loss stays put."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.zeros(len(x), 2) + 0.0 * self.w


def test_patience_stops_when_validation_stops_improving():
    from lensml.training import ArraySplit, LoopSettings, TrainState, epochs_since_best, fit

    rng = np.random.default_rng(0)
    images, targets = rng.normal(size=(16, 1, 8, 8)).astype(np.float32), rng.normal(size=(16, 2)).astype(np.float32)
    train, val = ArraySplit(images, targets, np.arange(12)), ArraySplit(images, targets, np.arange(12, 16))
    model = _Frozen()
    ends = []
    settings = LoopSettings(epochs=10, batch_size=4, lr=1e-3, loss="mse", seed=0, schedule="constant", patience=2)
    state = fit(model, train, val, settings, torch.device("cpu"), TrainState(), torch.optim.Adam(model.parameters()),
                lambda st, improved: ends.append(improved), progress=False)
    assert ends == [True, False, False] and state.epoch == 3 and state.stopped_early
    assert epochs_since_best(state.history) == 2
    # resuming with the same patience stops at once; without it, training goes on to the cap
    again = fit(model, train, val, settings, torch.device("cpu"), state, torch.optim.Adam(model.parameters()),
                lambda *_: None, progress=False)
    assert again.epoch == 3
    longer = LoopSettings(**{**settings.__dict__, "patience": None, "epochs": 5})
    assert fit(model, train, val, longer, torch.device("cpu"), state, torch.optim.Adam(model.parameters()),
               lambda *_: None, progress=False).epoch == 5


class _Recorder(torch.nn.Module):
    """A linear map that records the dtype its matrix product ran in."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(16, 2)
        self.dtypes = []

    def forward(self, x):
        out = self.linear(x.flatten(1))
        self.dtypes.append(out.dtype)
        return out


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16),
                                              ("fp16", torch.float16)])
def test_mixed_precision_runs_the_forward_pass_in_half_and_keeps_float32_weights(precision, dtype):
    from lensml.training import ArraySplit, LoopSettings, TrainState, fit

    rng = np.random.default_rng(1)
    images = rng.normal(size=(256, 1, 4, 4)).astype(np.float32)
    targets = (images.reshape(256, -1)[:, :2] * 0.5).astype(np.float32)  # learnable: two of the pixels
    train, val = ArraySplit(images, targets, np.arange(192)), ArraySplit(images, targets, np.arange(192, 256))
    torch.manual_seed(0)
    model = _Recorder()
    settings = LoopSettings(epochs=20, batch_size=32, lr=2e-2, loss="mse", seed=0, schedule="constant",
                            precision=precision)
    state = fit(model, train, val, settings, torch.device("cpu"), TrainState(), torch.optim.Adam(model.parameters()),
                lambda *_: None, progress=False)
    assert set(model.dtypes) == {dtype}
    assert model.linear.weight.dtype == torch.float32
    assert state.history[-1]["val_loss"] < 0.1 * state.history[0]["val_loss"]  # it learns in every precision


def test_precision_is_a_training_setting():
    assert build_config(None, {"precision": "bf16"}).precision == "bf16"
    with pytest.raises(BadInputError, match="precision"):
        build_config(None, {"precision": "fp8"})


def test_compiled_training_follows_the_eager_run():
    """`--compile` changes how the step runs, not what it computes: the same seeded run compiled and
    eager gives the same losses to float32 rounding, and the model's own weights are the ones trained."""
    from lensml.training import ArraySplit, LoopSettings, TrainState, fit

    rng = np.random.default_rng(3)
    images = rng.normal(size=(128, 2, 8, 8)).astype(np.float32)
    targets = images[:, :, 3:5, 3:5].reshape(128, 2, -1).mean(-1).astype(np.float32)
    train, val = ArraySplit(images, targets, np.arange(96)), ArraySplit(images, targets, np.arange(96, 128))
    runs = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        # no bias ahead of BatchNorm: its true gradient is zero, and Adam would amplify rounding noise
        model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4),
                                    torch.nn.ReLU(inplace=True), torch.nn.Flatten(), torch.nn.Linear(256, 2))
        settings = LoopSettings(epochs=10, batch_size=32, lr=1e-2, loss="mse", seed=0, schedule="constant",
                                compile=compiled)
        state = fit(model, train, val, settings, torch.device("cpu"), TrainState(),
                    torch.optim.Adam(model.parameters(), lr=1e-2, fused=True), lambda *_: None, progress=False)
        runs[compiled] = ([row["val_loss"] for row in state.history], model.state_dict())
    (eager, eager_weights), (compiled, compiled_weights) = runs[False], runs[True]
    assert compiled == pytest.approx(eager, rel=1e-4)
    assert compiled[-1] < 0.7 * compiled[0]  # it trained
    assert set(compiled_weights) == set(eager_weights)  # no wrapper prefix in what is saved
    for name, weight in eager_weights.items():
        torch.testing.assert_close(compiled_weights[name], weight, rtol=1e-3, atol=1e-5)


def test_compile_is_a_training_setting():
    assert build_config(None, {"compile": True}).compile is True
    assert build_config(None, {}).compile is False


def test_half_precision_on_a_cpu_without_native_support_says_it_will_not_be_faster():
    from lensml.device import cpu_has_native, half_precision_note

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    avx512 = {"avx512_bf16": False, "amx_bf16": False, "avx512_fp16": False, "amx_fp16": False, "avx2": True}
    assert "no native bf16" in half_precision_note("bf16", cpu, avx512)  # e.g. Skylake/Ice Lake Xeons
    assert "no native fp16" in half_precision_note("fp16", cpu, avx512)
    assert half_precision_note("fp32", cpu, avx512) is None
    assert half_precision_note("bf16", gpu, avx512) is None  # GPUs: the GPU path's own concern
    assert half_precision_note("bf16", cpu, {**avx512, "avx512_bf16": True}) is None  # Zen 4, Cooper Lake
    assert half_precision_note("bf16", cpu, {**avx512, "amx_bf16": True}) is None  # Sapphire Rapids
    assert half_precision_note("fp16", cpu, {**avx512, "avx512_bf16": True}) is not None
    assert half_precision_note("bf16", cpu, {"neon": True}) is None  # no x86 flags: nothing said
    # this machine's own flags: a plain answer either way, no error
    assert all(isinstance(cpu_has_native(p), bool) for p in ("fp32", "bf16", "fp16"))
