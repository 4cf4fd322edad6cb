"""What per-scene seeing (psf_jitter, on by default for Space and Ground) costs `simulate strong`.

One core; the same scenes rendered and written with every scene at the survey's seeing
(psf_jitter 0) and with the default jitter (five PSF levels, one set of PSF operators each),
alternated --repeats times; medians in ms per image, files included.

    python benchmarks/strong_seeing.py [-n 256] [--repeats 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from lensml.simulate.strong_files import simulate_strong  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    times: dict[tuple[str, str], list[float]] = {}
    for rep in range(args.repeats):
        for survey in ("space", "ground"):
            for label, overrides in (("one seeing", {"psf_jitter": 0.0}), ("default jitter", None)):
                with tempfile.TemporaryDirectory() as out:
                    began = time.perf_counter()
                    simulate_strong(survey, args.n, out, seed=rep, progress=False, config_overrides=overrides)
                    times.setdefault((survey, label), []).append((time.perf_counter() - began) / args.n * 1e3)
    for (survey, label), values in times.items():
        print(f"{survey:6s} {label:14s} {statistics.median(values):6.2f} ms/image  runs: "
              + ", ".join(f"{v:.2f}" for v in values))


if __name__ == "__main__":
    main()
