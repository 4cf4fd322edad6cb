"""Task-independent training run: split, resume, save the best model and a checkpoint every epoch.

The shear and lens-finding workflows prepare arrays and a ModelInfo; this module does the rest.
"""

from __future__ import annotations

import base64
import copy
import time
from pathlib import Path

import numpy as np
import torch

from .. import distributed
from ..checkpoint import checkpoint_path, checkpoint_record, load_checkpoint, save_checkpoint
from ..device import half_precision_note, resolve_device
from ..errors import BadInputError
from ..identity import DataIdentity
from ..io.atomic import sweep_stale_temps
from ..modelfile import ModelInfo, decode_header, read_tensors, save_model
from ..models import count_parameters
from ..training import ArraySplit, LoopSettings, TrainState, epochs_since_best, fit
from ..report import report


def split_indices(
    n: int, val_fraction: float, seed: int, strata: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split of n entries; validation indices sorted.

    With `strata` (e.g. lens labels) each class is split on its own, so both parts keep the mix.
    """
    rng = np.random.default_rng([seed, 0x5B117])
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == v) for v in np.unique(strata)]
    val = []
    for group in groups:
        n_val = int(round(len(group) * val_fraction))
        if val_fraction > 0 and len(group) > 1:
            n_val = min(max(n_val, 1), len(group) - 1)
        val.append(rng.permutation(group)[:n_val])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    return np.setdiff1d(np.arange(n), val_idx), val_idx


def remove_model(out: Path) -> None:
    out.unlink(missing_ok=True)
    checkpoint_path(out).unlink(missing_ok=True)


def train_network(
    out: Path,
    info: ModelInfo,
    images: np.ndarray,
    targets: np.ndarray,
    val_idx: np.ndarray,
    settings: LoopSettings,
    config: dict,
    data: DataIdentity,
    device_name: str = "auto",
    weight_decay: float = 0.0,
    progress: bool = True,
) -> Path:
    """Train `info.arch` on images (N, C, H, W) and raw targets (N, T), going on from any checkpoint."""
    device = resolve_device(device_name)
    ckpt = checkpoint_path(out)
    if distributed.group().is_main:
        sweep_stale_temps(out.parent)
    train_idx = np.setdiff1d(np.arange(len(images)), val_idx)
    trained_digests = {} if data.digests is None else {
        "train_digests": base64.b64encode(np.ascontiguousarray(data.digests[train_idx]).tobytes()).decode()}
    torch.manual_seed(settings.seed)
    try:
        net = info.build()
    except ValueError as exc:  # e.g. stamps too small for the architecture
        raise BadInputError(f"{info.arch}: {exc}") from None
    # fused: one kernel updates every weight (the unfused update cost up to a sixth of a CPU step)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr, weight_decay=weight_decay, fused=True)
    state = _resume(out, ckpt, net, optimizer, info, data, val_idx)
    if state.epoch >= settings.epochs:
        report(f"{out} has already trained for {state.epoch} epochs; raise --epochs to go on, or -r to start again")
        return out

    y = ((targets - info.target_mean) / np.asarray(info.target_std)).astype(np.float32)
    train = ArraySplit(images, y, train_idx)
    val = ArraySplit(images, y, val_idx) if len(val_idx) else None
    best_weights = _best_so_far(out, net) if state.epoch else copy.deepcopy(net.state_dict())
    started = time.perf_counter()
    report(f"training {info.arch} ({count_parameters(net):,} parameters) on {len(train_idx)} images, "
          f"validating on {len(val_idx)}, device {device}")
    if note := half_precision_note(settings.precision, device):
        report(note)

    def on_epoch_end(st: TrainState, improved: bool) -> None:
        nonlocal best_weights
        if not distributed.group().is_main:  # in a DDP run, rank 0 writes
            return
        if improved:
            best_weights = copy.deepcopy(net.state_dict())
        info.training = {
            "config": config, "epochs_done": st.epoch, "best_val_loss": st.best_val_loss, "history": st.history,
            "epochs_since_best": epochs_since_best(st.history),
            "data": data.record(), "val_indices": val_idx.tolist(), **trained_digests,
            "seconds": sum(row["seconds"] for row in st.history), "device": str(device),
        }
        best = copy.deepcopy(net)
        best.load_state_dict(best_weights)
        save_model(out, best, info)
        save_checkpoint(ckpt, net, optimizer, st, {"arch": info.arch, "targets": info.targets, "data_sha256": data.sha256,
                                                    "target_mean": info.target_mean, "target_std": info.target_std,
                                                    "val_indices": val_idx.tolist()})

    fit(net, train, val, settings, device, state, optimizer, on_epoch_end, progress)
    report(f"saved {out} (best validation loss {state.best_val_loss:.4g} after {state.epoch} epochs, "
          f"{time.perf_counter() - started:.0f}s)")
    return out


def _best_so_far(out: Path, net) -> dict:
    """The best weights of a resumed run: those in its model file (the checkpoint holds the last)."""
    if out.is_file():
        tensors, _ = read_tensors(out)
        return tensors
    return copy.deepcopy(net.state_dict())


def _resume(out: Path, ckpt: Path, net, optimizer, info: ModelInfo, data: DataIdentity, val_idx: np.ndarray) -> TrainState:
    """Go on from the checkpoint, else from an existing model file's weights, else start afresh."""
    if ckpt.is_file():
        meta = checkpoint_record(ckpt)
        _check_same(ckpt, meta.get("arch"), info.arch, "architecture")
        _check_same(ckpt, meta.get("data_sha256"), data.sha256, "data")
        _check_same(ckpt, meta.get("targets"), info.targets, "targets")
        if meta.get("val_indices") != val_idx.tolist():
            raise BadInputError(f"{ckpt} was trained with another train/validation split (seed or validation "
                                "fraction); use the same ones to resume, or -r to start again")
        state, meta = load_checkpoint(ckpt, net, optimizer)
        info.target_mean, info.target_std = meta["target_mean"], meta["target_std"]
        report(f"resuming {out} from epoch {state.epoch}")
        return state
    if out.is_file():
        tensors, header = read_tensors(out)
        old = decode_header(out, header)
        _check_same(out, old.arch, info.arch, "architecture")
        _check_same(out, old.targets, info.targets, "targets")
        net.load_state_dict(tensors)
        info.target_mean, info.target_std = old.target_mean, old.target_std
        done = int(old.training.get("epochs_done", 0))
        report(f"continuing from the weights in {out} ({done} epochs done)")
        return TrainState(epoch=done, history=list(old.training.get("history", [])))
    return TrainState()


def _check_same(path: Path, old, new, what: str) -> None:
    if old != new:
        raise BadInputError(f"{path} was trained with other {what} ({old!r}, not {new!r}): give -m a new name for "
                            "another model, or add -r to train this one again from scratch")
