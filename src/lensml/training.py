"""The training loop: seeded epochs, per-epoch checkpoints, resume, best-on-validation weights.

Every random draw of epoch `e` (shuffling, augmentation, dropout) comes from (seed, e), so a run
resumed from a checkpoint takes exactly the path an uninterrupted run would have taken.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import distributed
from .config import is_count
from .errors import BadInputError
from .report import report

LOSSES = {"mse": nn.MSELoss, "mae": nn.L1Loss, "bce": nn.BCEWithLogitsLoss}
SCHEDULES = ("cosine", "constant")


@dataclass
class TrainState:
    """Where a run stands: epochs done, best validation loss, one history row per epoch."""

    epoch: int = 0
    best_val_loss: float = math.inf
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    # fp16: the loss scaler's state (scale, steps since the last overflow), so that a resumed run
    # skips exactly the steps an uninterrupted one would; None otherwise
    loss_scale: dict | None = None


@dataclass(frozen=True)
class BatchPart:
    """Samples start:stop of a global batch of `total`: the share one process of a DDP run trains on."""

    total: int
    start: int
    stop: int


# A batch augmentation: (images, targets, generator, part) -> (images, targets), seeded by the
# generator. It draws for the whole global batch and applies the draws of `part` (None: all of
# it), so every sample is augmented alike however many processes share the batch.
Augment = Callable[[torch.Tensor, torch.Tensor, torch.Generator, "BatchPart | None"], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class LoopSettings:
    epochs: int
    batch_size: int
    lr: float
    loss: str
    seed: int
    schedule: str
    augment: Augment | None = None
    patience: int | None = None  # stop after this many epochs without a better validation loss
    precision: str = "fp32"  # "bf16" or "fp16": automatic mixed precision (fp16 with loss scaling)
    compile: bool = False  # torch.compile the training forward pass (its backward follows)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def settings_checks(settings) -> list[tuple[bool, str]]:
    """The checks every task's training settings share (for `config.require`): the counts are whole
    numbers, since a settings file may say 1.5 or -1 where a flag could not."""
    return [
        (is_count(settings.epochs), f"epochs must be a positive whole number, got {settings.epochs}"),
        (is_count(settings.seed, 0), f"seed must be a whole number, 0 or more, got {settings.seed}"),
        (settings.patience is None or is_count(settings.patience),
         f"patience must be a positive whole number, got {settings.patience}"),
        (settings.precision in PRECISIONS,
         f"precision must be one of {', '.join(PRECISIONS)}, got {settings.precision!r}"),
        (is_count(settings.batch_size), f"batch size must be a positive whole number, got {settings.batch_size}"),
        (settings.lr > 0, f"learning rate must be positive, got {settings.lr}"),
    ]


def autocast(precision: str, device: torch.device):
    """The mixed-precision context of `precision` on `device` (a no-op for fp32): matrix products and
    convolutions in half precision, reductions and the loss in float32, weights kept in float32."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def epochs_since_best(history: list[dict]) -> int:
    """Epochs after the one with the lowest monitored loss (validation, else training); 0 if that is the last."""
    losses = [row.get("val_loss", row["train_loss"]) for row in history]
    return len(losses) - 1 - losses.index(min(losses)) if losses else 0


def epoch_lr(settings: LoopSettings, epoch: int) -> float:
    if settings.schedule == "constant":
        return settings.lr
    floor = 0.01
    return settings.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * epoch / settings.epochs)))


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, 0x7EA1]).generate_state(1)[0])


@dataclass(frozen=True)
class ArraySplit:
    """Rows `indices` of `images` (N, C, H, W; may be memory-mapped) and `targets` (N, T, standardised)."""

    images: np.ndarray
    targets: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    def batch(self, rows: np.ndarray, out: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and targets of `rows`, the images copied into `out` (a reusable buffer) when given.

        Rows are read in file order, sequential on a memory map. Copying into memory that is already
        mapped is several times faster than into a fresh array, whose every page faults on first touch.
        """
        picked = self.indices[rows]
        x = np.empty((len(picked), *self.images.shape[1:]), dtype=np.float32) if out is None else out[: len(picked)]
        for k in np.argsort(picked, kind="stable"):
            x[k] = self.images[picked[k]]
        return torch.from_numpy(x), torch.from_numpy(np.asarray(self.targets[picked], dtype=np.float32))

    def batches(self, row_batches: Iterable[np.ndarray], pin: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`batch` for each of `row_batches`, through three reusable buffers (page-locked with `pin`,
        so copies to a GPU run without blocking, and the buffers are pinned once, not every batch).

        Safe for `_prefetched` consumers: at most two batches are alive at once there (the one the
        model works on and the one being prepared), so the buffer being filled is never in use.
        """
        buffers: list[np.ndarray] = []

        def new_buffer(n: int) -> np.ndarray:
            return torch.empty((n, *self.images.shape[1:]), dtype=torch.float32, pin_memory=pin).numpy()

        for k, rows in enumerate(row_batches):
            if len(buffers) < 3:
                buffers.append(new_buffer(len(rows)))
            buffer = buffers[k % 3]
            if len(buffer) < len(rows):
                buffer = buffers[k % 3] = new_buffer(len(rows))
            yield self.batch(rows, buffer)


def _batch_rows(n: int, batch_size: int, order: np.ndarray | None = None):
    """Row batches covering all n samples; the final partial batch is kept."""
    order = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _prefetched(batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Prepare the next batch in a thread while the model works on this one (torch releases the GIL)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(next, batches, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, batches, None)
            yield item


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


@torch.inference_mode()
def mean_loss(model: nn.Module, data: ArraySplit, loss_fn: nn.Module, batch_size: int, device: torch.device,
              precision: str = "fp32") -> float:
    """Mean loss over `data`; in a DDP run each process scores its share and the sums are pooled."""
    model.eval()
    share = np.arange(len(data))[distributed.group().part(len(data))]
    total = 0.0
    for xb, yb in _prefetched(data.batches(_batch_rows(len(share), batch_size, share), pin=device.type == "cuda")):
        with autocast(precision, device):
            output = model(_to_device(xb, device))
        total += float(loss_fn(output.float(), yb.to(device))) * len(xb)
    total, n = distributed.all_sum([total, float(len(share))], device)
    return total / max(n, 1)


def _state_like_weights(optimizer: torch.optim.Optimizer) -> None:
    """Give every optimiser state tensor its weight's device and memory layout.

    A resumed run loads Adam's moments in the default layout while the weights are channels-last;
    the fused update walks the raw memory of both and would silently mix up their elements. The
    state is loaded before the weights move to the device, and a fused update also wants its step
    counts beside the weights.
    """
    for group in optimizer.param_groups:
        for weight in group["params"]:
            for key, value in optimizer.state.get(weight, {}).items():
                if not torch.is_tensor(value):
                    continue
                if key == "step":  # a count, not a moment, whatever the weight's shape
                    if (group.get("fused") or group.get("capturable")) and value.device != weight.device:
                        optimizer.state[weight][key] = value.to(weight.device)
                elif value.shape == weight.shape and (
                        value.stride() != weight.stride() or value.device != weight.device):
                    optimizer.state[weight][key] = torch.empty_like(weight).copy_(value)


def fit(
    model: nn.Module,
    train: ArraySplit,
    val: ArraySplit | None,
    settings: LoopSettings,
    device: torch.device,
    state: TrainState,
    optimizer: torch.optim.Optimizer,
    on_epoch_end: Callable[[TrainState, bool], None],
    progress: bool = True,
) -> TrainState:
    """Train from `state.epoch` to `settings.epochs`; call `on_epoch_end(state, improved)` after each.

    Under torchrun each process trains on its part of every global batch (`distributed`);
    `on_epoch_end` then runs in every process and must leave the writing to rank 0.
    """
    loss_fn = LOSSES[settings.loss]()
    group = distributed.group()
    if len(train) < 2 * group.world:
        raise BadInputError(f"{len(train)} training images for {group.world} process(es); each needs at least two")
    model.to(device).to(memory_format=torch.channels_last)
    _state_like_weights(optimizer)
    stepper = distributed.wrap(model, device)
    forward = torch.compile(stepper) if settings.compile else stepper  # weights stay those of `model`
    scaler = torch.amp.GradScaler(device.type, enabled=settings.precision == "fp16")
    if scaler.is_enabled() and state.loss_scale:
        scaler.load_state_dict(state.loss_scale)
    for epoch in range(state.epoch, settings.epochs):
        if settings.patience is not None and epochs_since_best(state.history) >= settings.patience:
            state.stopped_early = True
            if group.is_main:
                report(f"stopped early: no better validation loss for {settings.patience} epochs (best at epoch "
                       f"{state.epoch - epochs_since_best(state.history)})")
            break
        seed = _epoch_seed(settings.seed, epoch)
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed + group.rank)  # dropout: each process its own draws
        lr = epoch_lr(settings, epoch)
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr
        stepper.train()
        started, total, seen = time.perf_counter(), 0.0, 0
        order = torch.randperm(len(train), generator=generator).numpy()

        def prepared(order=order, generator=generator):
            # A last batch too small to give each process two images is skipped by all: BatchNorm
            # cannot train on one image.
            shared = [rows for rows in _batch_rows(len(train), settings.batch_size, order)
                      if len(rows) >= 2 * group.world]
            parts = [group.part(len(rows)) for rows in shared]
            batches = train.batches((r[p] for r, p in zip(shared, parts)), pin=device.type == "cuda")
            for rows, part, (xb, yb) in zip(shared, parts, batches):
                if settings.augment is not None:
                    xb, yb = settings.augment(xb, yb, generator, BatchPart(len(rows), part.start, part.stop))
                yield xb, yb, len(rows)

        bar = tqdm(total=len(train), desc=f"epoch {epoch + 1}/{settings.epochs}", unit="img",
                   disable=not progress or not group.is_main, leave=False)
        for xb, yb, batch_total in _prefetched(prepared()):
            # DDP averages gradients over processes; weighting each process's mean by its share makes
            # the step the one for the mean over the whole batch.
            weight = len(xb) * group.world / batch_total
            with autocast(settings.precision, device):
                output = forward(_to_device(xb, device))
            loss = loss_fn(output.float(), yb.to(device))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss * weight).backward()
            scaler.step(optimizer)
            scaler.update()
            total += float(loss.detach()) * len(xb)
            seen += len(xb)
            bar.update(batch_total)
            bar.set_postfix(loss=f"{total / seen:.4g}")
        bar.close()
        total, seen = distributed.all_sum([total, float(seen)], device)
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": total / seen, "seconds": time.perf_counter() - started}
        if val is not None and len(val):
            row["val_loss"] = mean_loss(model, val, loss_fn, settings.batch_size, device, settings.precision)
        monitored = row.get("val_loss", row["train_loss"])
        improved = monitored < state.best_val_loss
        if improved:
            state.best_val_loss = monitored
        state.epoch = epoch + 1
        state.history.append(row)
        state.loss_scale = scaler.state_dict() or None
        on_epoch_end(state, improved)
        extra = f"  val_loss {row['val_loss']:.4g}" if "val_loss" in row else ""
        if group.is_main:
            report(f"epoch {epoch + 1}/{settings.epochs}  train_loss {row['train_loss']:.4g}{extra}  "
                       f"lr {lr:.2e}  {row['seconds']:.1f}s{'  *' if improved else ''}")  # a log line, also with -q
    return state
