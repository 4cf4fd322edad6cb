"""Throughput of the six lens finders on this machine: training and inference images per second,
and inference as a fraction of what the machine's matrix multiply reaches.

Median of --repeats timed steps after a warm-up, channels-last, random 101x101 inputs. FLOPs per
image are counted by torch's FlopCounterMode (a multiply-add is 2 FLOPs); the machine's rate is
the median of large float32 matmuls timed in the same run, with the same threads.

    python benchmarks/lens_models.py [--bands 1] [--train-batch 64] [--infer-batch 256] [--repeats 5]
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from _timing import timed
from lensml.models import count_parameters, create_model, list_models
from lensml.device import resolve_device


def _matmul_flops(device: torch.device, repeats: int, side: int = 2048) -> float:
    a, b = torch.rand(side, side, device=device), torch.rand(side, side, device=device)
    return 2 * side**3 / timed(lambda: _sync(a @ b, device), repeats)


def _sync(result, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result


def _forward_flops(model: torch.nn.Module, bands: int, device: torch.device) -> float:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.eval()(torch.rand(1, bands, 101, 101, device=device))
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bands", type=int, default=1)
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    args = parser.parse_args()
    device = resolve_device(args.device)
    peak = _matmul_flops(device, args.repeats)
    print(f"{args.bands} band(s), torch {torch.__version__}, {device}, {torch.get_num_threads()} threads; "
          f"float32 matmul {peak / 1e9:.0f} GFLOP/s")
    print(f"{'model':>14} {'params':>11} {'MFLOP/img':>10} {'train img/s':>12} {'infer img/s':>12} {'ms/img':>8} "
          f"{'of matmul':>9}")
    for spec in (s for s in list_models("lens") if s.name != "lens_ensemble"):  # a committee has no layers of its own
        model = create_model(spec.name, in_channels=args.bands).to(device).to(memory_format=torch.channels_last)
        flops = _forward_flops(model, args.bands, device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        x = torch.rand(args.train_batch, args.bands, 101, 101, device=device).contiguous(memory_format=torch.channels_last)
        y = (torch.rand(args.train_batch, 1, device=device) > 0.5).float()

        def train_step():
            model.train()
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            _sync(None, device)

        xi = torch.rand(args.infer_batch, args.bands, 101, 101, device=device).contiguous(memory_format=torch.channels_last)

        def infer_step():
            model.eval()
            with torch.inference_mode():
                _sync(model(xi), device)

        train = args.train_batch / timed(train_step, args.repeats)
        infer = args.infer_batch / timed(infer_step, args.repeats)
        print(f"{spec.name:>14} {count_parameters(model):>11,} {flops / 1e6:>10.1f} {train:>12.1f} {infer:>12.1f} "
              f"{1e3 / infer:>8.3f} {flops * infer / peak:>9.1%}")


if __name__ == "__main__":
    main()
