"""A run killed at a random moment (SIGKILL) and started again equals an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

from lensml.workflows.run_training import checkpoint_path


def _start(*args):
    return subprocess.Popen([sys.executable, "-m", "lensml", "-q", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _kill_when(proc, ready, timeout=120.0):
    """SIGKILL the process (group) as soon as `ready()` holds; True if it was killed mid-run."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.wait()
    return False


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
    proc = _start(*args, "-o", part)
    assert _kill_when(proc, lambda: len(list(part.glob("gal_*.fits"))) >= 40)
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
    proc = _start(*args, "-o", part)
    assert _kill_when(proc, lambda: band.is_dir() and len(list(band.glob("*.fits"))) >= 10)
    assert not (part / "classifications.csv").exists()
    stale = _plant_stale_temp(band, "imageSDSS_I-100150.fits")
    subprocess.run([sys.executable, "-m", "lensml", "-q", *map(str, args), "-o", part], check=True)
    assert not stale.exists()
    assert _files(part) == _files(tmp_path / "full")


def test_killed_training_resumes_to_the_same_weights(weak_set, tmp_path):
    args = ("train", "-i", weak_set, "--epochs", 3, "--batch-size", 16, "--seed", 4, "--val-fraction", 0.25)
    subprocess.run([sys.executable, "-m", "lensml", "-q", *map(str, args), "-m", tmp_path / "full"], check=True)
    model = tmp_path / "part"
    ckpt = checkpoint_path(model.with_name("part.safetensors"))
    proc = _start(*args, "-m", model)
    assert _kill_when(proc, ckpt.exists)
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
