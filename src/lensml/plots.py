"""Figures: predicted against true shear, network and baseline side by side."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from .errors import BadInputError
from .io.atomic import atomic_path
from .metrics.shear import shear_bias


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.subplots(*args, **kwargs)


def check_plot_path(path: str | os.PathLike) -> None:
    """Refuse, before any work, a figure path matplotlib cannot write: a folder, or a name whose extension
    is not an image format (the format is taken from the extension)."""
    from matplotlib.backend_bases import FigureCanvasBase

    if os.path.isdir(path):
        raise BadInputError(f"--plot {path}: it is a folder; give a file name such as {os.path.join(path, 'plot.png')}")
    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = os.path.splitext(str(path))[1].lower().lstrip(".")
    if suffix not in formats:
        raise BadInputError(f"--plot {path}: the file name must end in an image format's extension "
                            f"({', '.join(sorted(formats))})")


MAX_SHEAR_LEVELS = 5  # true shears taking at most this many values are also drawn as means with errors


def plot_shear_scatter(path: str | os.PathLike, true: np.ndarray, estimates: Mapping[str, np.ndarray]) -> None:
    """One column per estimator, one row per component: g_pred against g_true with the 1:1 line and the m, c fit;
    where the truth takes a few values (a paired design), the mean at each, with its standard error."""
    plt, (fig, axes) = _figure(2, len(estimates), figsize=(4.2 * len(estimates), 8), squeeze=False)
    lim = float(np.nanmax(np.abs(true))) * 1.15
    for col, (label, pred) in enumerate(estimates.items()):
        for row in range(2):
            ax = axes[row, col]
            ok = np.isfinite(pred[:, row])
            x, y = true[ok, row], pred[ok, row]
            ax.scatter(x, y, s=3, alpha=0.35, lw=0, color=f"C{col}")
            levels = np.unique(x)
            if 1 < len(levels) <= MAX_SHEAR_LEVELS:  # a paired design: shape noise hides the points, show means
                groups = [y[x == v] for v in levels]
                ax.errorbar(levels, [g.mean() for g in groups], yerr=[g.std() / np.sqrt(len(g)) for g in groups],
                            fmt="o", color="k", ms=4, capsize=3, zorder=3, label="mean, its error")
            ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
            text = f"n = {ok.sum()}\nRMSE = {np.sqrt(np.mean((y - x) ** 2)):.4f}"
            if ok.sum() >= 3 and np.ptp(x) > 0:
                fit = shear_bias(x, y)
                ax.plot([-lim, lim], [(1 + fit["m"]) * -lim + fit["c"], (1 + fit["m"]) * lim + fit["c"]], color="k", lw=0.8)
                text += f"\nm = {fit['m']:+.4f} ± {fit['m_err']:.4f}\nc = {fit['c']:+.5f} ± {fit['c_err']:.5f}"
            ax.text(0.04, 0.96, text, transform=ax.transAxes, va="top", fontsize=8, family="monospace")
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
            ax.set_xlabel(f"g{row + 1} true")
            if col == 0:
                ax.set_ylabel(f"g{row + 1} measured")
            if row == 0:
                ax.set_title(label)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


MARKED_CORNERS = 40  # ROC curves with at most this many corners get a marker on each


def plot_roc(path: str | os.PathLike, curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
             reliabilities: Mapping[str, Mapping[str, list]] | None = None) -> None:
    """ROC curves (true-positive against false-positive rate) of one or several lens finders, and beside
    them their reliability diagrams (fraction of lenses against mean score per score bin)."""
    panels = 2 if reliabilities else 1
    plt, (fig, axes) = _figure(1, panels, figsize=(5.5 * panels, 5), squeeze=False)
    ax = axes[0, 0]
    for label, (fpr, tpr) in curves.items():
        # a few scenes (a handful of real cutouts) give a few corners: mark them, so a segment along an
        # axis is not mistaken for the axis
        ax.step(fpr, tpr, where="post", label=label, marker="o" if len(fpr) <= MARKED_CORNERS else None, ms=3)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01),
           title="ROC")
    ax.legend(loc="lower right", fontsize=8)
    if reliabilities:
        ax = axes[0, 1]
        for label, r in reliabilities.items():
            mean, frac = np.asarray(r["mean_score"], float), np.asarray(r["lens_fraction"], float)
            ok = np.isfinite(mean)
            ax.plot(mean[ok], frac[ok], "o-", ms=4, label=label)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlabel="mean lens probability in bin", ylabel="fraction of lenses", xlim=(-0.01, 1.01),
               ylim=(-0.01, 1.01), title="reliability")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
