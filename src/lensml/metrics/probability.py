"""Lens probabilities a search can use: temperature scaling, reliability, purity at a survey's prevalence.

A network trained on balanced sets (half lenses) scores as if one cutout in two held a lens; a
survey has about one in a thousand. These functions are pure, of (labels, logits or scores).
"""

from __future__ import annotations

import numpy as np

from .detection import roc_curve


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, float)
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


def log_loss(labels: np.ndarray, logits: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of sigmoid(logits / T), computed stably from the logits."""
    y, z = np.asarray(labels, float), np.asarray(logits, float) / temperature
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def fit_temperature(labels: np.ndarray, logits: np.ndarray) -> float:
    """The temperature T > 0 minimising the log-loss of sigmoid(logits / T) (Guo et al. 2017).

    One parameter, so the ranking (ROC, AUC, TPR0) is unchanged. Golden-section search on log T,
    which the loss is unimodal in, between T = 0.02 and 50.
    """
    lo, hi = np.log(0.02), np.log(50.0)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = log_loss(labels, logits, np.exp(a)), log_loss(labels, logits, np.exp(b))
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = log_loss(labels, logits, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = log_loss(labels, logits, np.exp(b))
    return float(np.exp((lo + hi) / 2.0))


def reliability(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Fraction of lenses against mean score in equal-width score bins (a reliability diagram's points).

    Returns lists per bin: `mean_score`, `lens_fraction`, `count` (empty bins have NaN means), and
    the expected calibration error `ece` (count-weighted |lens_fraction - mean_score|) as a 1-list.
    """
    y, s = np.asarray(labels, float), np.asarray(scores, float)
    which = np.clip((s * bins).astype(int), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean = np.bincount(which, s, minlength=bins) / count
        frac = np.bincount(which, y, minlength=bins) / count
    ece = float(np.nansum(count * np.abs(frac - mean)) / max(len(s), 1))
    return {"mean_score": mean.tolist(), "lens_fraction": frac.tolist(), "count": count.tolist(), "ece": [ece]}


def purity_completeness(labels: np.ndarray, scores: np.ndarray, prevalence: float) -> dict[str, float]:
    """Purity and completeness of a search where a fraction `prevalence` of cutouts hold a lens.

    Purity at a threshold is prevalence TPR / (prevalence TPR + (1 - prevalence) FPR): the test set's
    rates, reweighted to the survey's mix. Returns the purity at threshold 0.5, and the largest
    completeness (TPR) reached at purity >= 0.5 and >= 0.9 (0 where none is).
    """
    fpr, tpr, thresholds = roc_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = prevalence * tpr / (prevalence * tpr + (1.0 - prevalence) * fpr)
    purity = np.where(tpr > 0, purity, np.nan)
    at_half = np.flatnonzero(thresholds >= 0.5)
    out = {"prevalence": float(prevalence),
           "purity_at_0.5": float(purity[at_half[-1]]) if len(at_half) and np.isfinite(purity[at_half[-1]]) else 0.0}
    for level in (0.5, 0.9):
        ok = purity >= level
        out[f"completeness_at_purity_{level}"] = float(tpr[ok].max()) if ok.any() else 0.0
    return out


def selection_function(labels: np.ndarray, scores: np.ndarray, values: np.ndarray, bins: int = 6,
                       threshold: float = 0.5) -> dict[str, list[float]]:
    """Completeness of the lenses against one catalogue quantity (Einstein area, lensed flux, lensed pixels).

    Lenses with a finite value are split into `bins` quantile bins; per bin: edges, lenses, found
    (score >= threshold) and completeness. The bins' lenses and found add up to the totals.
    """
    y, s, v = np.asarray(labels), np.asarray(scores, float), np.asarray(values, float)
    lens = (y == 1) & np.isfinite(v)
    if not lens.any():
        return {"edges": [], "lenses": [], "found": [], "completeness": []}
    edges = np.unique(np.quantile(v[lens], np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, v[lens], side="right") - 1, 0, max(len(edges) - 2, 0))
    n_bins = max(len(edges) - 1, 1)
    total = np.bincount(which, minlength=n_bins)
    found = np.bincount(which, s[lens] >= threshold, minlength=n_bins).astype(int)
    with np.errstate(invalid="ignore"):
        completeness = found / total
    return {"edges": edges.tolist(), "lenses": total.tolist(), "found": found.tolist(),
            "completeness": completeness.tolist()}
