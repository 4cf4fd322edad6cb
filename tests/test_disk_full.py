"""A write that runs out of room (here: a per-file size limit, as on a full disk or quota) fails in
one line, and leaves neither a half-written file nor its temporary behind."""

import resource
import subprocess
import sys

import pytest



def _run_limited(args, max_file_bytes):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
    return subprocess.run([sys.executable, "-m", "lensml", "-q", *map(str, args)], capture_output=True, text=True,
                          preexec_fn=limit)


def _all_files(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("limit", [4096, 200_000])
def test_model_file_that_does_not_fit(weak_set, tmp_path, limit):
    out = tmp_path / "models"
    out.mkdir()
    result = _run_limited(["train", "-i", weak_set, "-m", out / "net", "--epochs", 1, "--batch-size", 32], limit)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and "net" in lines[0], result.stderr
    assert _all_files(out) == []


def test_simulation_that_does_not_fit_keeps_what_was_written(tmp_path):
    out = tmp_path / "sim"
    result = _run_limited(["simulate", "weak", "-n", 5, "-o", out, "--workers", 1], 4096)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and "gal_0.fits" in lines[0], result.stderr
    assert _all_files(out) == ["simulation.json"]
