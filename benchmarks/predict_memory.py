"""Peak memory and throughput of streaming `lensml predict` as the number of scenes grows.

Scores 1x, 10x and 40x the batch size of scenes from one challenge folder (shards of it) with an
untrained model of the chosen architecture, sampling the resident memory of the whole process
tree (loader workers included) every 20 ms.

    python benchmarks/predict_memory.py [--folder DIR] [--arch lens_flow] [--batch 64] [--workers 1] [--views 1]

--views is predict's (default here 1, the single view these figures were first measured with; predict's
own default, 8 views, does 8x the forward passes).

Without --folder a Space set of 40 batches is simulated into a temporary folder first.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lensml.data.lens_set import is_lens_folder
from lensml.io.challenge import detect_survey, get_survey, list_ids
from lensml.modelfile import ModelInfo, save_model
from lensml.models import create_model
from lensml.simulate.strong_files import simulate_strong


def _tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def _untrained_model(path: Path, arch: str, bands: int) -> Path:
    info = ModelInfo(arch=arch, arch_kwargs={"in_channels": bands, "out_features": 1, "image_size": [101, 101]},
                     task="lens", inputs=["bench"], norm="zscale", targets=["is_lens"], target_mean=[0.0],
                     target_std=[1.0])
    return save_model(path, create_model(arch, in_channels=bands), info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--arch", default="lens_flow")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--views", type=int, default=1, choices=(1, 2, 4, 8))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lensml-bench-"))
    folder = args.folder or simulate_strong("space", 40 * args.batch, work / "set", seed=1, progress=False).parent
    assert is_lens_folder(folder), folder
    survey = detect_survey(folder)
    total = len(list_ids(folder, survey))
    model = _untrained_model(work / "model", args.arch, len(get_survey(survey).bands))
    print(f"{folder} ({survey}, {total} scenes), {args.arch}, batch {args.batch}, {args.views} view(s), {args.workers} loader worker(s), "
          f"torch {torch.__version__}")
    print(f"{'scenes':>8} {'x batch':>8} {'peak RSS MiB':>13} {'images/s':>9}")
    for multiple in (1, 10, 40):
        shards = max(1, total // (multiple * args.batch))
        out = work / f"scores_{multiple}.csv"
        cmd = [sys.executable, "-m", "lensml", "-q", "predict", "-i", str(folder), "-m", str(model), "-o", str(out),
               "--batch-size", str(args.batch), "--workers", str(args.workers), "--shard", f"1/{shards}",
               "--views", str(args.views)]
        started, peak = time.perf_counter(), 0
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        while proc.poll() is None:
            peak = max(peak, _tree_rss_kib(proc.pid))
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        if proc.returncode:
            sys.exit(f"predict failed: {proc.returncode}")
        n = sum(1 for _ in open(out)) - 1
        rate = next((line.split(": ")[1].split()[0] for line in proc.stdout.read().splitlines()
                     if line.startswith("scored")), f"{n / elapsed:.1f}")
        print(f"{n:>8} {n / args.batch:>8.1f} {peak / 1024:>13.0f} {rate:>9}")


if __name__ == "__main__":
    main()
