"""`lensml evaluate` and `compare` for lens finders, scored as the challenge did."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data.lens_set import check_data_fits, load_lens_set
from ..data.transforms import d4_images
from ..errors import BadInputError
from ..io.atomic import write_json_atomic
from ..io.tables import format_table
from ..errors import LensmlError
from ..metrics.detection import detection_metrics, roc_curve
from ..metrics.probability import log_loss, purity_completeness, reliability, selection_function
from ..modelfile import load_model
from ..plots import plot_roc

DEFAULT_PREVALENCE = 1e-3  # one lens per thousand cutouts, as in a survey
from ..device import device_name, resolve_device
from ..identity import held_out, lens_identity
from ..inference import view_count
from ..report import report

@torch.inference_mode()
def lens_scores(net, images: np.ndarray, device: torch.device, batch_size: int = 256, progress: bool = False,
                rows: np.ndarray | None = None, temperature: float = 1.0, views: int = 1):
    """Lens probabilities for normalised scenes (the sorted `rows` of `images`, or all), and the seconds
    spent per image in the forward passes. Batches are read one at a time from a memory map."""
    from tqdm import tqdm

    net.eval()
    rows = np.arange(len(images)) if rows is None else rows
    out, spent = [], 0.0
    for start in tqdm(range(0, len(rows), batch_size), desc="score", unit="batch", disable=not progress, leave=False):
        p, seconds = lens_probabilities(net, torch.from_numpy(np.array(images[rows[start : start + batch_size]],
                                                                        dtype=np.float32)), device,
                                        temperature, views)
        spent += seconds
        out.append(p)
    return np.concatenate(out), spent / max(len(rows), 1)


@torch.inference_mode()
def lens_probabilities(net, x: torch.Tensor, device: torch.device,
                       temperature: float = 1.0, views: int = 1) -> tuple[np.ndarray, float]:
    """Lens probabilities sigmoid(logit / T) of one normalised batch (T from the model file's temperature
    scaling), and the seconds of its forward passes (GPU work included).

    With `views` > 1 the logit is the mean over the first `views` D4 views of each scene (rotations, then
    transposes): a lens is a lens at any orientation, the network's answers differ a little, and their
    mean ranks better (lensml's shipped finders: AUC +0.01 on independent scenes with 8 views).
    The sigmoid is taken in float64: in float32 every logit above 17 gives exactly 1, and the most
    confident candidates of a search would tie.
    """
    x = x.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    began = time.perf_counter()
    logits = sum(net(d4_images(x, element).contiguous(memory_format=torch.channels_last))
                 for element in range(views)) / views
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - began
    return torch.sigmoid(logits.double() / temperature).flatten().cpu().numpy(), seconds


def temperature(info) -> float:
    """The temperature a lens finder's scores are divided by (1 for files without temperature scaling)."""
    return float(info.calibration.get("temperature", 1.0))


def score_model(data_dir: str, model_file: str, device: str = "auto", batch_size: int = 256, progress: bool = True,
                prevalence: float = DEFAULT_PREVALENCE, min_lensed_pixels: int = 0, views: int = 8):
    """Scores of one model on the images of a folder it did not train on; returns (results, labels, scores).

    With `min_lensed_pixels` N, lenses whose arcs exceed 1 sigma in fewer than N pixels (the
    catalogue's numb_pix_lensed_image) are left out: the scores are then those on visible lenses.
    """
    dev = resolve_device(device)
    net, info = load_model(model_file, dev)
    if info.task != "lens":
        raise BadInputError(f"{model_file} is a {info.task} model; a lens-finding folder needs a lens finder")
    data = load_lens_set(data_dir, info.norm, progress=progress)
    check_data_fits(info, data.images.shape[1:], data.survey, f"{data.root} ({data.survey})", model_file)
    rows, subset = held_out(info, lens_identity(data), "images")
    columns = _catalogue_columns(data, rows)
    if min_lensed_pixels > 0:
        if "numb_pix_lensed_image" not in columns:
            raise BadInputError(f"{data.root}: no numb_pix_lensed_image column in its classifications.csv, so "
                                "lenses cannot be told apart by how visible their arcs are")
        keep = (data.labels[rows] == 0) | (columns["numb_pix_lensed_image"] >= min_lensed_pixels)
        rows, columns = rows[keep], {name: values[keep] for name, values in columns.items()}
        subset += f", lenses with arcs in {min_lensed_pixels}+ pixels"
    scores, per_image = lens_scores(net, data.images, dev, batch_size, progress, rows=rows,
                                    temperature=temperature(info), views=views)
    labels = data.labels[rows]
    if len(np.unique(labels)) < 2:
        raise BadInputError(f"{data.root}: the {len(labels)} images scored ({subset}) are all of one class; "
                            "ROC figures need lenses and non-lenses")
    results: dict[str, Any] = {"model": str(model_file), "arch": info.arch, "data": str(data.root), "subset": subset,
                               **detection_metrics(labels, scores), "views": views, "seconds_per_image": per_image,
                               "device": device_name(dev), "epochs": info.training.get("epochs_done"),
                               "training_seconds": info.training.get("seconds"),
                               "training_device": info.training.get("device"), "temperature": temperature(info),
                               "log_loss": log_loss(labels, _logits(scores)),
                               "reliability": reliability(labels, scores),
                               "search": purity_completeness(labels, scores, prevalence),
                               "selection": {name: selection_function(labels, scores, values)
                                             for name, values in columns.items()}}
    return results, labels, scores


def _logits(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def _catalogue_columns(data, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The catalogue's lens columns (Einstein area, lensed pixels and flux) for `rows`, where the
    folder's classifications.csv has them; completeness is reported against them."""
    from ..io.challenge import OPTIONAL_COLUMNS, read_label_table

    if not isinstance(data.keys[0], (int, np.integer)):
        return {}
    try:
        table = read_label_table(data.root)
    except LensmlError:
        return {}
    where = {int(i): k for k, i in enumerate(table.ids)}
    index = np.array([where[int(data.keys[r])] for r in rows])
    return {name: table.extra[name][index] for name in OPTIONAL_COLUMNS if name in table.extra}


def _table(results: Sequence[dict]) -> str:
    rows = [[Path(r["model"]).name, r["arch"], r["epochs"], _minutes(r["training_seconds"]), r["n"], r["auc"], r["tpr"],
             r["fpr"], r["tpr0"], r["tpr10"], r["views"], f"{r['seconds_per_image'] * 1e3:.3f}"] for r in results]
    return format_table(["model", "arch", "epochs", "training", "n", "AUC", "TPR", "FPR", "TPR0", "TPR10", "views",
                         "ms/image"],
                        rows)


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def evaluate_lens(data_dir: str, model_files: Sequence[str], device: str = "auto", batch_size: int = 256,
                  json_path: str | None = None, plot_path: str | None = None, progress: bool = True,
                  prevalence: float = DEFAULT_PREVALENCE, min_lensed_pixels: int = 0,
                  tta: bool | int = True) -> list[dict]:
    """Score one or several models; one table, one JSON (a list when several), one plot: ROC and reliability.

    `tta` as in `lensml.inference.view_count`: each scene's logit is averaged over its 8 D4 views by default.
    """
    if not 0 < prevalence < 1:
        raise BadInputError(f"--prevalence must lie in (0, 1), got {prevalence}")
    if min_lensed_pixels < 0:
        raise BadInputError(f"--min-lensed-pixels must be >= 0, got {min_lensed_pixels}")
    results, curves, reliabilities = [], {}, {}
    for model_file in model_files:
        res, labels, scores = score_model(data_dir, model_file, device, batch_size, progress, prevalence,
                                          min_lensed_pixels, view_count(tta))
        report(f"{model_file}: scored {res['n']} images ({res['subset']}) on {res['device']}")
        results.append(res)
        fpr, tpr, _ = roc_curve(labels, scores)
        curves[f"{Path(model_file).name} (AUC {res['auc']:.3f})"] = (fpr, tpr)
        reliabilities[f"{Path(model_file).name} (ECE {res['reliability']['ece'][0]:.3f})"] = res["reliability"]
    report(_table(results))
    report(f"at a prevalence of {prevalence:g} (one lens in {1 / prevalence:,.0f} cutouts): "
           + "; ".join(f"{Path(r['model']).name}: purity {r['search']['purity_at_0.5']:.3f} at p > 0.5, completeness "
                       f"{r['search']['completeness_at_purity_0.5']:.3f} at purity 0.5" for r in results))
    if json_path:
        write_json_atomic(json_path, results[0] if len(results) == 1 else results)
    if plot_path:
        plot_roc(plot_path, curves, reliabilities)
    return results
