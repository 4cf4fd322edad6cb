"""A run killed (SIGKILL) at a chosen point and started again equals an uninterrupted run.

The kill point is exact, not timed: LENSML_STOP_AFTER_WRITES=k makes the run stop itself
(SIGSTOP) after its k-th atomic write, and the test SIGKILLs it there.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from lensml.checkpoint import checkpoint_path


def _kill_after_writes(writes, *args):
    """Run lensml until it stops itself after its `writes`-th atomic write, then SIGKILL its process group.

    A run that ends before that write fails the test: it would have been killed nowhere.
    """
    env = {**os.environ, "LENSML_STOP_AFTER_WRITES": str(writes)}
    proc = subprocess.Popen([sys.executable, "-m", "lensml", "-q", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    if not os.WIFSTOPPED(status):
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped above; keep Popen from waiting again
        pytest.fail(f"lensml {' '.join(map(str, args))} exited ({proc.returncode}) before write {writes}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _files(folder):
    """Every file under `folder`, hidden ones included, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant_stale_temp(folder, name):
    """A temporary file as a run killed between writing and renaming leaves it."""
    from lensml.io import atomic
    path = folder / f".{name}.{atomic._HOST}-{_dead_pid()}-0.tmp{os.path.splitext(name)[1]}"
    path.write_bytes(b"half a file")
    return path


def test_killed_simulation_finishes_identically(tmp_path):
    args = ("simulate", "weak", "-n", 150, "--noise", "--seed", 3, "--workers", 1)
    subprocess.run([sys.executable, "-m", "lensml", "-q", *map(str, args), "-o", tmp_path / "full"], check=True)
    part = tmp_path / "part"
    # Writes: simulation.json, then gal_i and psf_i per stamp. Stop mid-stamp: gal_39 written, psf_39 not.
    _kill_after_writes(1 + 2 * 39 + 1, *args, "-o", part)
    assert len(list(part.glob("gal_*.fits"))) == 40 and len(list(part.glob("psf_*.fits"))) == 39
    assert not (part / "data.json").exists()
    stale = _plant_stale_temp(part, "gal_140.fits")
    subprocess.run([sys.executable, "-m", "lensml", "-q", *map(str, args), "-o", part], check=True)
    assert not stale.exists()
    assert _files(part) == _files(tmp_path / "full")


def test_killed_strong_simulation_finishes_identically(tmp_path):
    args = ("simulate", "strong", "--survey", "ground", "-n", 160, "--seed", 5, "--workers", 1)
    subprocess.run([sys.executable, "-m", "lensml", "-q", *map(str, args), "-o", tmp_path / "full"], check=True)
    part = tmp_path / "part"
    band = part / "Public" / "Band2"
    # Writes: the folder's record (a file or two), batch 0 (64 scenes x 4 bands, then .parts/batch-0.csv),
    # then batch 1 scene by scene, band by band. Stop about 10 scenes into batch 1.
    _kill_after_writes(2 + 64 * 4 + 1 + 10 * 4 + 1, *args, "-o", part)
    counts = [len(list((part / "Public" / f"Band{k}").glob("*.fits"))) for k in (1, 2, 3, 4)]
    assert 64 < min(counts) and max(counts) - min(counts) <= 1 and max(counts) < 128, counts
    assert (part / ".parts" / "batch-0.csv").is_file() and not (part / "classifications.csv").exists()
    stale = _plant_stale_temp(band, "imageSDSS_I-100150.fits")
    subprocess.run([sys.executable, "-m", "lensml", "-q", *map(str, args), "-o", part], check=True)
    assert not stale.exists()
    assert _files(part) == _files(tmp_path / "full")


def test_killed_training_resumes_to_the_same_weights(weak_set, tmp_path):
    args = ("train", "-i", weak_set, "--epochs", 3, "--batch-size", 16, "--seed", 4, "--val-fraction", 0.25)
    subprocess.run([sys.executable, "-m", "lensml", "-q", *map(str, args), "-m", tmp_path / "full"], check=True)
    model = tmp_path / "part"
    ckpt = checkpoint_path(model.with_name("part.safetensors"))
    # Writes: the model file, then the checkpoint, after each epoch. Stop after epoch 1's checkpoint.
    _kill_after_writes(2, *args, "-m", model)
    with safe_open(str(ckpt), framework="pt") as f:
        assert json.loads(f.metadata()["lensml_checkpoint"])["state"]["epoch"] == 1
    stale = _plant_stale_temp(tmp_path, ckpt.name)
    subprocess.run([sys.executable, "-m", "lensml", "-q", *map(str, args), "-m", model], check=True)
    a = load_file(str(checkpoint_path(tmp_path / "full.safetensors")))
    b = load_file(str(ckpt))
    assert not stale.exists()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_sweep_removes_only_dead_runs_files(tmp_path):
    from lensml.io.atomic import _HOST, sweep_stale_temps
    dead = _plant_stale_temp(tmp_path, "model.safetensors")
    live = tmp_path / f".model.safetensors.{_HOST}-{os.getppid()}-3.tmp.safetensors"
    other_host = tmp_path / f".model.safetensors.{_HOST}x-{_dead_pid()}-0.tmp.safetensors"
    users = tmp_path / ".notes.tmp"
    for path in (live, other_host, users):
        path.write_text("keep")
    assert sweep_stale_temps(tmp_path) == 1
    assert not dead.exists() and live.exists() and other_host.exists() and users.exists()
