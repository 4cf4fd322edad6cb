"""Data-parallel training over processes and machines: PyTorch DDP, launched by `torchrun`.

`torchrun --nproc-per-node N -m lensml train ...` starts N copies of the same command. Each
process draws the same seeded order of global batches, trains on its own contiguous part of each
batch, and DDP averages the gradients; losses are weighted so that the step equals the one a single
process takes on the whole batch, also for a final batch that does not split evenly. Only rank 0
writes files. Outside torchrun every function here is a no-op for a single process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .errors import BadInputError


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def part(self, n: int) -> slice:
        """This process's contiguous share of a global batch of n (sizes differ by at most one)."""
        return slice(n * self.rank // self.world, n * (self.rank + 1) // self.world)


# Rank 0 may build a packed cache, or evaluate and calibrate, while the others wait at a barrier.
BARRIER_TIMEOUT = timedelta(hours=4)


def launched() -> bool:
    """True inside a process started by torchrun (or any launcher that sets the same variables)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        raise BadInputError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; start distributed runs "
                            "with torchrun") from None


def start() -> Group:
    """Join the process group torchrun set up: gloo for CPU tensors, and NCCL for GPU ones when there are GPUs."""
    if not launched():
        return Group()
    if not dist.is_initialized():
        try:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        except (KeyError, ValueError):
            raise BadInputError("WORLD_SIZE is set but RANK is not; start distributed runs with torchrun") from None
        backend = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            backend = "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=BARRIER_TIMEOUT)
    return group()


def group() -> Group:
    if not dist.is_available() or not dist.is_initialized():
        return Group()
    return Group(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def is_main() -> bool:
    return group().is_main


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum each value over the processes (the values themselves for a single process)."""
    if group().world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if group().world > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Let rank 0 run the block first (e.g. build a cache), then the others (which then reuse it)."""
    g = group()
    if not g.is_main:
        barrier()
    yield
    if g.is_main:
        barrier()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model as DDP sees it: BatchNorm synchronised over processes on GPUs (per process on CPUs,
    where torch has no SyncBatchNorm)."""
    if group().world == 1:
        return model
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return torch.nn.parallel.DistributedDataParallel(model)
