"""Training images per second of the heavy lens finders and the shear networks, before and after
lensml's training speed-ups, measured side by side in one run.

"before" is the model step as lensml 0bafcc5 ran it: every activation ahead of its max-pool and
out of place, Adam's unfused update. "after" is today's layers (max-pool ahead of the monotone
activation, activations in place) with the fused Adam; "+compile" adds `lensml train --compile`
(torch.compile of the forward pass, the backward following); "+bf16" adds `lensml train --precision bf16`
(automatic mixed precision: convolutions and matrix products in bfloat16, float32 weights), which pays
on a CPU only where it multiplies bfloat16 natively (AVX512-BF16 or AMX; the header says whether this
one does); "+fp16" (`--variants`, for GPUs) is `--precision fp16`, float16 with loss scaling.
The variants alternate within every repeat, so a busy machine slows them alike; the ratios are the
figures to compare.

    python benchmarks/training_speed.py [--archs ...] [--batch 64] [--steps 4] [--repeats 3] [--device cpu]
                                        [--variants +compile +bf16 +fp16]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from lensml.device import cpu_has_native, device_name, resolve_device
from lensml.models import count_parameters, create_model
from lensml.models.lens_finders import published_order
from lensml.training import autocast

ARCHS = ("cas_swinburne", "cmu_deeplens", "wsi_net", "lens_finder", "shear_net", "shear_cnn")
SHEAR_STAMP = (64, 64)  # the metacalibration sets' stamps


def _step(model: nn.Module, fused: bool, compiled: bool, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module,
          precision: str = "fp32"):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=fused)
    forward = torch.compile(model) if compiled else model
    scaler = torch.amp.GradScaler(x.device.type, enabled=precision == "fp16")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(precision, x.device):  # as `fit` runs it: the loss in float32
            output = forward(x)
        scaler.scale(loss_fn(output.float(), y)).backward()
        scaler.step(optimizer)
        scaler.update()
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
    return step


VARIANTS = ("before", "after", "+compile", "+bf16", "+fp16")


def bench(arch: str, batch: int, steps: int, repeats: int, device: torch.device,
          names: tuple[str, ...] = VARIANTS[:4]) -> dict[str, float]:
    shear = arch.startswith("shear")
    kwargs = {"image_size": SHEAR_STAMP} if shear else {}
    after = create_model(arch, **kwargs).to(device).to(memory_format=torch.channels_last)
    channels = 2 if shear else 1
    shape = (batch, channels, *(SHEAR_STAMP if shear else (101, 101)))
    x = torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randn(batch, 2, device=device) if shear else (torch.rand(batch, 1, device=device) > 0.5).float()
    loss_fn = nn.MSELoss() if shear else nn.BCEWithLogitsLoss()
    makers = {
        # the shear networks' layers did not change: only the optimizer differs for them
        "before": lambda: _step(copy.deepcopy(after) if shear else published_order(after), False, False, x, y, loss_fn),
        "after": lambda: _step(copy.deepcopy(after), True, False, x, y, loss_fn),
        "+compile": lambda: _step(copy.deepcopy(after), True, True, x, y, loss_fn),
        "+bf16": lambda: _step(copy.deepcopy(after), True, False, x, y, loss_fn, precision="bf16"),
        "+fp16": lambda: _step(copy.deepcopy(after), True, False, x, y, loss_fn, precision="fp16"),  # loss scaling
    }
    variants = {name: makers[name]() for name in names}
    for step in variants.values():  # warm-up: compilation, caches, page faults
        step()
        step()
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, step in variants.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            rates[name].append(steps * batch / (time.perf_counter() - start))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    medians["params"] = count_parameters(after)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4, help="training steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS[:4]),
                        help="which steps to time (+fp16: mixed float16 with loss scaling, for GPUs)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    names = tuple(dict.fromkeys(["before", "after", *args.variants]))  # the ratios need both
    where = (f"CPU capability {torch.backends.cpu.get_cpu_capability()}, native bfloat16 {cpu_has_native('bf16')}"
             if device.type == "cpu" else device_name(device))
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, batch {args.batch}; {where}; "
          f"training images/s, medians of {args.repeats}")
    extra = names[2:]
    ratios = [(n, "before") for n in ("after", *extra)] + [(n, "after") for n in extra if n in ("+bf16", "+fp16")]
    print("| model | params | before | after | " + "".join(f"after {n} | " for n in extra)
          + "".join(f"{a} / {b} | " for a, b in ratios).rstrip())
    print("|---" * (4 + len(extra) + len(ratios)) + "|")
    for arch in args.archs:
        r = bench(arch, args.batch, args.steps, args.repeats, device, names)
        print(f"| {arch} | {r['params']:,} | {r['before']:.1f} | {r['after']:.1f} | "
              + "".join(f"{r[n]:.1f} | " for n in extra) + "".join(f"{r[a] / r[b]:.2f} | " for a, b in ratios).rstrip(),
              flush=True)


if __name__ == "__main__":
    main()
