"""`lensml evaluate` and `compare` for lens finders, scored as the challenge did."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data.lens_set import check_data_fits, load_lens_set
from ..errors import BadInputError
from ..io.atomic import write_json_atomic
from ..io.tables import format_table
from ..metrics.detection import detection_metrics, roc_curve
from ..modelfile import load_model
from ..plots import plot_roc
from ..device import device_name, resolve_device
from ..identity import held_out, lens_identity
from ..report import report

@torch.inference_mode()
def lens_scores(net, images: np.ndarray, device: torch.device, batch_size: int = 256, progress: bool = False,
                rows: np.ndarray | None = None):
    """Lens probabilities for normalised scenes (the sorted `rows` of `images`, or all), and the seconds
    spent per image in the forward passes. Batches are read one at a time from a memory map."""
    from tqdm import tqdm

    net.eval()
    rows = np.arange(len(images)) if rows is None else rows
    out, spent = [], 0.0
    for start in tqdm(range(0, len(rows), batch_size), desc="score", unit="batch", disable=not progress, leave=False):
        p, seconds = lens_probabilities(net, torch.from_numpy(np.array(images[rows[start : start + batch_size]],
                                                                        dtype=np.float32)), device)
        spent += seconds
        out.append(p)
    return np.concatenate(out), spent / max(len(rows), 1)


@torch.inference_mode()
def lens_probabilities(net, x: torch.Tensor, device: torch.device) -> tuple[np.ndarray, float]:
    """Lens probabilities of one normalised batch, and the seconds of its forward pass (GPU work included)."""
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    began = time.perf_counter()
    p = torch.sigmoid(net(x)).flatten()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return p.float().cpu().numpy(), time.perf_counter() - began


def score_model(data_dir: str, model_file: str, device: str = "auto", batch_size: int = 256, progress: bool = True):
    """Scores of one model on the images of a folder it did not train on; returns (results, labels, scores)."""
    dev = resolve_device(device)
    net, info = load_model(model_file, dev)
    if info.task != "lens":
        raise BadInputError(f"{model_file} is a {info.task} model; a lens-finding folder needs a lens finder")
    data = load_lens_set(data_dir, info.norm, progress=progress)
    check_data_fits(info, data.images.shape[1:], data.survey, f"{data.root} ({data.survey})", model_file)
    rows, subset = held_out(info, lens_identity(data), "images")
    scores, per_image = lens_scores(net, data.images, dev, batch_size, progress, rows=rows)
    labels = data.labels[rows]
    if len(np.unique(labels)) < 2:
        raise BadInputError(f"{data.root}: the {len(labels)} images scored ({subset}) are all of one class; "
                            "ROC figures need lenses and non-lenses")
    results: dict[str, Any] = {"model": str(model_file), "arch": info.arch, "data": str(data.root), "subset": subset,
                               **detection_metrics(labels, scores), "seconds_per_image": per_image,
                               "device": device_name(dev), "epochs": info.training.get("epochs_done"),
                               "training_seconds": info.training.get("seconds"),
                               "training_device": info.training.get("device")}
    return results, labels, scores


def _table(results: Sequence[dict]) -> str:
    rows = [[Path(r["model"]).name, r["arch"], r["epochs"], _minutes(r["training_seconds"]), r["n"], r["auc"], r["tpr"],
             r["fpr"], r["tpr0"], r["tpr10"], f"{r['seconds_per_image'] * 1e3:.3f}"] for r in results]
    return format_table(["model", "arch", "epochs", "training", "n", "AUC", "TPR", "FPR", "TPR0", "TPR10", "ms/image"],
                        rows)


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def evaluate_lens(data_dir: str, model_files: Sequence[str], device: str = "auto", batch_size: int = 256,
                  json_path: str | None = None, plot_path: str | None = None, progress: bool = True) -> list[dict]:
    """Score one or several models; one table, one JSON (a list when several) and one ROC plot."""
    results, curves = [], {}
    for model_file in model_files:
        res, labels, scores = score_model(data_dir, model_file, device, batch_size, progress)
        report(f"{model_file}: scored {res['n']} images ({res['subset']}) on {res['device']}")
        results.append(res)
        fpr, tpr, _ = roc_curve(labels, scores)
        curves[f"{Path(model_file).name} (AUC {res['auc']:.3f})"] = (fpr, tpr)
    report(_table(results))
    if json_path:
        write_json_atomic(json_path, results[0] if len(results) == 1 else results)
    if plot_path:
        plot_roc(plot_path, curves)
    return results
