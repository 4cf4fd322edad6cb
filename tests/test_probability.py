"""Lens probabilities for a search: temperature scaling, reliability, purity at a prevalence, selection function."""

import json

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from lensml.cli import main
from lensml.metrics.probability import (fit_temperature, log_loss, purity_completeness, reliability, selection_function,
                                        sigmoid)


def _overconfident(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    true_logit = rng.normal(0, 1.5, n) + 2.0 * (labels - 0.5)
    return labels, 3.0 * true_logit  # logits three times too large


def test_temperature_matches_scipy_and_lowers_the_log_loss():
    labels, logits = _overconfident()
    t = fit_temperature(labels, logits)
    reference = minimize_scalar(lambda lt: log_loss(labels, logits, np.exp(lt)), bounds=(-3, 3), method="bounded")
    assert t == pytest.approx(np.exp(reference.x), rel=1e-4)
    assert 2.0 < t < 4.0  # it undoes the factor 3, roughly
    assert log_loss(labels, logits, t) < log_loss(labels, logits) - 0.05
    # the ranking is unchanged: the same order of scores
    assert np.array_equal(np.argsort(sigmoid(logits / t)), np.argsort(sigmoid(logits)))


def test_reliability_of_calibrated_scores_is_close_to_the_diagonal():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 20000)
    labels = (rng.uniform(0, 1, 20000) < p).astype(int)  # calibrated by construction
    r = reliability(labels, p)
    assert sum(r["count"]) == 20000 and r["ece"][0] < 0.02
    assert np.allclose(r["lens_fraction"], r["mean_score"], atol=0.05)
    assert reliability(labels, p**4)["ece"][0] > 0.1  # miscalibrated scores are caught


def test_purity_at_a_prevalence_by_hand():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1, 0.05, 0.01])
    out = purity_completeness(labels, scores, prevalence=0.01)
    # at 0.5: TPR 3/4, FPR 1/6 -> purity 0.01 * 0.75 / (0.01 * 0.75 + 0.99 / 6)
    assert out["purity_at_0.5"] == pytest.approx(0.0075 / (0.0075 + 0.99 / 6))
    assert out["completeness_at_purity_0.9"] == pytest.approx(0.5)  # above 0.7: no false positive
    assert purity_completeness(labels, scores, prevalence=0.5)["completeness_at_purity_0.5"] == 1.0


def test_selection_function_bins_add_up_to_the_totals():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 500)
    area = np.where(labels == 1, rng.uniform(0.5, 20, 500), 0.0)
    area[:7] = np.nan
    scores = sigmoid(rng.normal(0, 1, 500) + 0.2 * area)
    out = selection_function(labels, scores, area)
    lenses = (labels == 1) & np.isfinite(area)
    assert sum(out["lenses"]) == lenses.sum() and sum(out["found"]) == ((scores >= 0.5) & lenses).sum()
    assert out["completeness"][-1] > out["completeness"][0]  # bigger Einstein areas are easier to find


@pytest.mark.slow
def test_training_stores_a_temperature_and_evaluate_reports_the_search(tmp_path):
    data = tmp_path / "space"
    assert main(["-q", "simulate", "strong", "--survey", "space", "-n", "96", "-o", str(data), "--seed", "4"]) == 0
    model = tmp_path / "m"
    assert main(["-q", "train", "-i", str(data), "-m", str(model), "--arch", "lens_flow", "--epochs", "2",
                 "--batch-size", "16"]) == 0
    from lensml.modelfile import read_info

    cal = read_info(model).calibration
    assert cal["log_loss"] <= cal["log_loss_raw"] and cal["temperature"] > 0
    out = tmp_path / "s.json"
    assert main(["-q", "evaluate", "-i", str(data), "-m", str(model), "--json", str(out), "--prevalence", "0.01",
                 "--plot", str(tmp_path / "roc.png")]) == 0
    res = json.loads(out.read_text())
    assert res["temperature"] == cal["temperature"] and res["search"]["prevalence"] == 0.01
    assert res["log_loss"] == pytest.approx(cal["log_loss"], rel=1e-4)  # the same validation scenes, calibrated
    assert set(res["selection"]) == {"Einstein_area", "numb_pix_lensed_image", "flux_lensed_image_in_sigma"}
    lenses = sum(res["selection"]["Einstein_area"]["lenses"])
    assert 0 < lenses < res["n"] and sum(res["selection"]["numb_pix_lensed_image"]["lenses"]) == lenses
    # scored on visible lenses only: every non-lens stays, lenses with arcs in too few pixels go
    visible = tmp_path / "v.json"
    assert main(["-q", "evaluate", "-i", str(data), "-m", str(model), "--json", str(visible),
                 "--min-lensed-pixels", "100"]) == 0
    kept = json.loads(visible.read_text())
    kept_lenses = sum(kept["selection"]["numb_pix_lensed_image"]["lenses"])
    assert kept["n"] - kept_lenses == res["n"] - lenses  # every non-lens stays
    assert 0 < kept_lenses < lenses and "100+ pixels" in kept["subset"]
    assert min(kept["selection"]["numb_pix_lensed_image"]["edges"]) >= 100
