"""lensml's training loop against a minimal hand-written torch loop: same model, data, batches, optimiser.

Both train one epoch over the same in-memory images (random 101x101, one band) with Adam and
binary cross-entropy, channels-last, no augmentation; runs alternate and the medians of
--repeats epochs are compared. lensml's loop adds the seeded order, the batch gathering in file
order, the prefetch thread and the loss bookkeeping; this measures what they cost.

    python benchmarks/training_loop.py [--arch lens_flow lastro_epfl] [--n 2048] [--repeats 3] [--precision fp32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from lensml.models import create_model
from lensml.device import resolve_device
from lensml.training import PRECISIONS, ArraySplit, LoopSettings, TrainState, autocast, fit


def _hand_epoch(model, optimizer, images: np.ndarray, labels: np.ndarray, batch: int, device: torch.device,
                precision: str) -> None:
    loss_fn = torch.nn.BCEWithLogitsLoss()
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    model.train()
    order = torch.randperm(len(images)).numpy()
    for start in range(0, len(images), batch):
        rows = order[start : start + batch]
        x = torch.from_numpy(images[rows]).to(device).contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(labels[rows]).to(device)
        with autocast(precision, device):
            output = model(x)
        loss = loss_fn(output.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _lensml_epoch(model, optimizer, images: np.ndarray, labels: np.ndarray, batch: int, device: torch.device,
                  precision: str) -> None:
    settings = LoopSettings(epochs=1, batch_size=batch, lr=1e-3, loss="bce", seed=0, schedule="constant",
                            precision=precision)
    fit(model, ArraySplit(images, labels, np.arange(len(images))), None, settings, device, TrainState(), optimizer,
        on_epoch_end=lambda *_: None, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["lens_flow", "lastro_epfl"])
    parser.add_argument("--n", type=int, default=2048, help="images per epoch")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help="both loops alike")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rng = np.random.default_rng(0)
    images = rng.random((args.n, 1, 101, 101), dtype=np.float32)
    labels = (rng.random((args.n, 1)) > 0.5).astype(np.float32)
    print(f"{args.n} images per epoch, batch {args.batch}, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.precision}")
    print(f"{'model':>14} {'hand img/s':>11} {'lensml img/s':>13} {'ratio':>6}")
    for arch in args.arch:
        model = create_model(arch, in_channels=1).to(device).to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as lensml trains
        times: dict[str, list[float]] = {"hand": [], "lensml": []}
        _hand_epoch(model, optimizer, images, labels, args.batch, device, args.precision)  # warm-up
        for _ in range(args.repeats):
            for name, epoch in (("hand", _hand_epoch), ("lensml", _lensml_epoch)):
                start = time.perf_counter()
                epoch(model, optimizer, images, labels, args.batch, device, args.precision)
                times[name].append(time.perf_counter() - start)
        hand, ours = (args.n / statistics.median(times[k]) for k in ("hand", "lensml"))
        print(f"{arch:>14} {hand:>11.1f} {ours:>13.1f} {ours / hand:>6.2f}")


if __name__ == "__main__":
    main()
