"""The benchmark scripts still run against today's package: each prints a row for every model it
measures (tiny batches, one repeat; the figures themselves are not checked, they are machine-bound)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, script, *args], cwd=BENCHMARKS, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_lens_models_measures_all_six_finders():
    out = _run("lens_models.py", "--train-batch", "2", "--infer-batch", "2", "--repeats", "1", "--device", "cpu")
    rows = [line.split() for line in out.splitlines()[2:]]
    assert sorted(row[0] for row in rows) == sorted(
        ["cas_swinburne", "cmu_deeplens", "lastro_epfl", "lens_finder", "lens_flow", "wsi_net"])
    assert all(float(row[3]) > 0 and float(row[4]) > 0 for row in rows)  # train and infer images/s


def test_training_speed_prints_each_variant_and_ratio():
    out = _run("training_speed.py", "--archs", "shear_net", "--batch", "4", "--steps", "1", "--repeats", "1",
               "--variants", "+bf16", "+fp16")
    header, _, row = out.splitlines()[1:4]
    columns = [c.strip() for c in header.strip("| ").split("|")]
    assert columns[:6] == ["model", "params", "before", "after", "after +bf16", "after +fp16"]
    assert "+fp16 / after" in columns
    cells = [c.strip() for c in row.strip("| ").split("|")]
    assert cells[0] == "shear_net" and len(cells) == len(columns)


def test_training_loop_compares_both_loops_in_the_chosen_precision():
    out = _run("training_loop.py", "--arch", "lens_flow", "--n", "64", "--repeats", "1", "--device", "cpu",
               "--precision", "bf16")
    assert "bf16" in out.splitlines()[0]
    name, hand, ours, ratio = out.splitlines()[-1].split()
    assert name == "lens_flow" and float(hand) > 0 and float(ours) > 0
