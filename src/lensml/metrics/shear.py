"""Shear-measurement figures of merit, as weak-lensing papers quote them.

For each component the estimates are fitted as g_pred = (1 + m) g_true + c by ordinary least
squares: m is the multiplicative bias, c the additive bias, each with its standard error.
RMSE is the root-mean-square of g_pred - g_true.
"""

from __future__ import annotations

import warnings

import numpy as np


def rmse(true: np.ndarray, pred: np.ndarray) -> float:
    true, pred = np.asarray(true, float), np.asarray(pred, float)
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def shear_bias(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Fit pred = (1 + m) true + c; return m, c and their standard errors (m_err, c_err)."""
    x, y = np.asarray(true, float), np.asarray(pred, float)
    n = len(x)
    if n < 3:
        raise ValueError("need at least 3 points to fit m and c with errors")
    if np.ptp(x) == 0:
        raise ValueError("true shears are all equal; m is undefined")
    x_mean = x.mean()
    sxx = np.sum((x - x_mean) ** 2)
    slope = np.sum((x - x_mean) * (y - y.mean())) / sxx
    intercept = y.mean() - slope * x_mean
    resid_var = np.sum((y - intercept - slope * x) ** 2) / (n - 2)
    return {
        "m": float(slope - 1.0),
        "m_err": float(np.sqrt(resid_var / sxx)),
        "c": float(intercept),
        "c_err": float(np.sqrt(resid_var * (1.0 / n + x_mean**2 / sxx))),
    }


def shear_metrics(true: np.ndarray, pred: np.ndarray, components=("g1", "g2")) -> dict[str, float]:
    """n, rmse_<g>, m<k>, m<k>_err, c<k>, c<k>_err for columns of (N, 2) arrays; rows with NaN are skipped.

    m and c are left out for a component whose true values are all equal (they are undefined).
    """
    true, pred = np.asarray(true, float), np.asarray(pred, float)
    ok = np.isfinite(pred).all(axis=1) & np.isfinite(true).all(axis=1)
    out: dict[str, float] = {"n": int(ok.sum())}
    for k, name in enumerate(components):
        suffix = name[-1]
        out[f"rmse_{name}"] = rmse(true[ok, k], pred[ok, k])
        if ok.sum() < 3 or np.ptp(true[ok, k]) == 0:
            continue
        fit = shear_bias(true[ok, k], pred[ok, k])
        for key in ("m", "m_err", "c", "c_err"):
            base, _, err = key.partition("_")
            out[f"{base}{suffix}{'_' + err if err else ''}"] = fit[key]
    return out


def paired_shear_bias(
    g_hat: np.ndarray, sign: np.ndarray, component: np.ndarray, pair: np.ndarray, base: np.ndarray,
    pair_shear: float, response: np.ndarray | None = None, n_boot: int = 500, seed: int = 0,
) -> dict[str, float]:
    """m and c per component from a paired design (+G / -G with shared noise), with bootstrap errors.

    For component k, over the pairs sheared along k::

        m_k = sum(g_k(+) - g_k(-)) / sum(R_kk(+) + R_kk(-)) / G - 1

    and over every pair, c_k = sum(g_k(+) + g_k(-)) / sum(R_kk(+) + R_kk(-)): the shear cancels
    within a pair, and shape noise within a base galaxy's ring, so m is known to ~1e-3 from 1e4
    galaxies. `response` (N, 2, 2) is each stamp's response (metacal); None means R = 1 (estimators
    already in shear units). Errors: the standard deviation over `n_boot` resamplings of the base
    galaxies (the independent units), seeded by `seed`.

    Parameters
    ----------
    g_hat : (N, 2) shear estimates; sign : (N,) +1 / -1; component : (N,) 1 or 2 (the sheared one);
    pair : (N,) pair IDs (each exactly once with each sign); base : (N,) base galaxy IDs.

    Returns
    -------
    dict with n_pairs, n_galaxies, m1, m1_err, m2, m2_err, c1, c1_err, c2, c2_err, and sigma_g1,
    sigma_g2: the noise per galaxy, std(g_hat) / <R> over the stamps.
    """
    g_hat = np.asarray(g_hat, float)
    sign, component, pair, base = (np.asarray(a) for a in (sign, component, pair, base))
    n = len(g_hat)
    if response is None:
        r_diag = np.ones((n, 2))
    else:
        r_diag = np.asarray(response, float)[:, [0, 1], [0, 1]]
    ok = np.isfinite(g_hat).all(1) & np.isfinite(r_diag).all(1)
    pair_ids, where = np.unique(pair[ok], return_inverse=True)
    plus = np.zeros(len(pair_ids), int)
    minus = np.zeros(len(pair_ids), int)
    np.add.at(plus, where, sign[ok] > 0)
    np.add.at(minus, where, sign[ok] < 0)
    complete = (plus == 1) & (minus == 1)
    keep = ok.copy()
    keep[ok] = complete[where]  # a pair with a failed member drops out whole
    signed = g_hat[keep] * sign[keep, None]  # g(+) - g(-) summed over a pair
    r = r_diag[keep]
    units, unit = np.unique(base[keep], return_inverse=True)

    def per_galaxy(values: np.ndarray) -> np.ndarray:
        out = np.zeros((len(units), values.shape[1]))
        np.add.at(out, unit, values)
        return out

    along = np.stack([component[keep] == 1, component[keep] == 2], 1).astype(float)
    sums = {"m_num": per_galaxy(signed * along), "m_den": per_galaxy(r * along),
            "c_num": per_galaxy(g_hat[keep]), "c_den": per_galaxy(r)}

    def estimate(weights: np.ndarray) -> np.ndarray:
        """(B, 4): m1, m2, c1, c2 for resampling weights (B, galaxies)."""
        t = {k: weights @ v for k, v in sums.items()}
        with np.errstate(invalid="ignore", divide="ignore"):
            m = t["m_num"] / t["m_den"] / pair_shear - 1.0
            c = t["c_num"] / t["c_den"]
        return np.concatenate([m, c], 1)

    central = estimate(np.ones((1, len(units))))[0]
    rng = np.random.default_rng(seed)
    boot = estimate(rng.multinomial(len(units), np.full(len(units), 1.0 / len(units)), size=n_boot).astype(float))
    with warnings.catch_warnings():  # a component with no pairs has no error: NaN, no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        errors = np.nanstd(boot, axis=0, ddof=1)
    out: dict[str, float] = {"n_pairs": int(complete.sum()), "n_galaxies": int(len(units))}
    # noise per galaxy, as the field quotes it: the scatter of one galaxy's shear estimate g / <R>
    for k in range(2):
        out[f"sigma_g{k + 1}"] = float(np.std(g_hat[keep, k]) / np.mean(r[:, k]))
    for k, name in enumerate(("m1", "m2", "c1", "c2")):
        out[name], out[f"{name}_err"] = float(central[k]), float(errors[k])
    return out
