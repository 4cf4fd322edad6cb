"""The benchmark scripts still run against today's package and print what they claim: a row for every
model, ratios of the columns they name, the precision asked for (tiny batches, one repeat; the
figures themselves are machine-bound and not checked)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
pytestmark = pytest.mark.slow


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, script, *args], cwd=BENCHMARKS, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_lens_models_measures_all_six_finders():
    out = _run("lens_models.py", "--train-batch", "2", "--infer-batch", "2", "--repeats", "1", "--device", "cpu")
    rows = [line.split() for line in out.splitlines()[2:]]
    assert sorted(row[0] for row in rows) == sorted(
        ["cas_swinburne", "cmu_deeplens", "lastro_epfl", "lens_finder", "lens_flow", "wsi_net"])
    assert all(float(row[3]) > 0 and float(row[4]) > 0 for row in rows)  # train and infer images/s


def test_training_speed_prints_each_variant_and_its_ratios():
    out = _run("training_speed.py", "--archs", "shear_net", "--batch", "4", "--steps", "1", "--repeats", "1",
               "--variants", "+bf16", "+fp16")
    header, _, row = out.splitlines()[1:4]
    columns, cells = _cells(header), _cells(row)
    assert columns[:6] == ["model", "params", "before", "after", "after +bf16", "after +fp16"]
    assert cells[0] == "shear_net" and len(cells) == len(columns)
    rate = {name.removeprefix("after "): float(cell) for name, cell in zip(columns[2:6], cells[2:6])}
    ratios = {name: float(cell) for name, cell in zip(columns[6:], cells[6:])}
    assert set(ratios) == {"after / before", "+bf16 / before", "+fp16 / before", "+bf16 / after", "+fp16 / after"}
    for name, value in ratios.items():  # within the rounding of the printed rates (0.05) and ratios (0.005)
        top, bottom = (rate[k] for k in name.split(" / "))
        assert (top - 0.05) / (bottom + 0.05) - 0.005 <= value <= (top + 0.05) / (bottom - 0.05) + 0.005, name


def test_training_loop_runs_both_loops_in_the_chosen_precision(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    training_loop = importlib.import_module("training_loop")
    import lensml.training

    seen: dict[str, list[str]] = {"hand": [], "lensml": []}
    real_autocast = lensml.training.autocast

    def spy(loop):
        def autocast(precision, device):
            seen[loop].append(precision)
            return real_autocast(precision, device)
        return autocast

    monkeypatch.setattr(training_loop, "autocast", spy("hand"))
    monkeypatch.setattr(lensml.training, "autocast", spy("lensml"))
    monkeypatch.setattr(sys, "argv", ["training_loop.py", "--arch", "lens_flow", "--n", "64", "--repeats", "1",
                                      "--device", "cpu", "--precision", "bf16"])
    training_loop.main()
    name, hand, ours, _ = capsys.readouterr().out.splitlines()[-1].split()
    assert name == "lens_flow" and float(hand) > 0 and float(ours) > 0
    assert seen["hand"] and seen["lensml"] and set(seen["hand"] + seen["lensml"]) == {"bf16"}


def test_worker_startup_times_both_ways_of_starting_workers():
    out = _run("worker_startup.py", "--workers", "2", "--repeats", "1").splitlines()
    spawn, server = (float(line.split(":")[1].split()[0]) for line in out[:2])
    assert out[0].strip().startswith("spawn") and out[1].strip().startswith("fork server")
    ratio = float(out[2].split(":")[1].split("x")[0])
    assert ratio == pytest.approx(spawn / server, rel=0.02, abs=0.01)  # one repeat: the ratio of the two
