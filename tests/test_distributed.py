"""Data-parallel training (torchrun, gloo on CPU) takes the same steps as one process with the
same global batch: each process trains on its part of every batch, losses weighted by their share."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from lensml.models import create_model
from lensml.simulate.strong_files import simulate_strong
from lensml.checkpoint import checkpoint_path

# lens_finder has neither dropout nor BatchNorm, whose per-process draws and statistics would
# make the two runs differ by design; --augment checks that every image gets the same augmentation.
TRAIN = ("train", "--arch", "lens_finder", "--epochs", 2, "--batch-size", 7, "--augment", "--seed", 3,
         "--val-fraction", 0.25)


def _lensml(*args, processes=1):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", "-m", "lensml"]
    cmd = [sys.executable, *(launcher if processes > 1 else ["-m", "lensml"]), "-q", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def lens_set(tmp_path_factory):
    # 34 scenes: 26 train in batches of 7, 7, 7 and 5 (split 3 + 4 and 2 + 3 over two processes), 8 validate
    return simulate_strong("space", 34, tmp_path_factory.mktemp("ddp") / "set", seed=4, progress=False, batch_size=34).parent


def test_two_processes_take_the_single_process_steps(lens_set, tmp_path):
    single = _lensml(*TRAIN, "-i", lens_set, "-m", tmp_path / "single")
    assert single.returncode == 0, single.stderr
    double = _lensml(*TRAIN, "-i", lens_set, "-m", tmp_path / "double", processes=2)
    assert double.returncode == 0, double.stderr
    a = load_file(str(checkpoint_path(tmp_path / "single.safetensors")))
    b = load_file(str(checkpoint_path(tmp_path / "double.safetensors")))
    torch.manual_seed(3)
    start = create_model("lens_finder", in_channels=1).state_dict()
    # Adam divides by the root of tiny second moments, so rounding in the gradient sums (which differ
    # in order between one and two processes) can flip the step of a weight whose gradient is ~0:
    # a few in 1e5 weights move by up to the learning rate. A real difference (a batch split or
    # weighted wrongly, an augmentation drawn differently) moves nearly every weight.
    update = sum(float(((a[f"model.{k}"] - v) ** 2).sum()) for k, v in start.items()) ** 0.5
    diff = torch.cat([(a[f"model.{k}"] - b[f"model.{k}"]).abs().flatten() for k in start])
    apart = float(diff.square().sum()) ** 0.5
    moved = float((diff > 1e-4).float().mean())
    assert update > 0.1 and apart < 1e-2 * update and moved < 1e-4, (update, apart, moved)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["single.safetensors", "double.safetensors", "single.ckpt.safetensors", "double.ckpt.safetensors"])


def test_other_commands_refuse_torchrun(lens_set, tmp_path):
    result = _lensml("predict", "-i", lens_set, "-m", tmp_path / "x", processes=2)
    assert result.returncode != 0 and "only `train`" in result.stderr
