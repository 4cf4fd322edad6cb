"""The ellipticity of a sheared galaxy: a per-galaxy target whose population mean is the shear.

For the reduced-shear ellipticity eps = (a - b) / (a + b) e^{2 i phi} (GalSim's `Shear.g`), a galaxy
of intrinsic shape eps_s sheared by g has eps = (eps_s + g) / (1 + g* eps_s) (Seitz & Schneider 1997,
|g| < 1), and <eps> = g exactly for any isotropic population.  A network trained to return the
shape of the sheared galaxy is therefore a shear estimator per galaxy, without the pull toward the
prior's centre that regressing g itself from one noisy, intrinsically elliptical galaxy gives.
"""

from __future__ import annotations

import numpy as np


def distortion_to_shear(e: np.ndarray) -> np.ndarray:
    """|g| of a distortion |e| = (a^2 - b^2) / (a^2 + b^2): g = e / (1 + sqrt(1 - e^2))."""
    e = np.asarray(e, float)
    return e / (1.0 + np.sqrt(1.0 - e * e))


def sheared_shape(eps_int: np.ndarray, g: np.ndarray) -> np.ndarray:
    """(N, 2) reduced-shear ellipticity of galaxies of shape `eps_int` (N, 2) sheared by `g` (N, 2)."""
    es = np.asarray(eps_int, float) @ np.array([1.0, 1j])
    gc = np.asarray(g, float) @ np.array([1.0, 1j])
    eps = (es + gc) / (1.0 + np.conj(gc) * es)
    return np.stack([eps.real, eps.imag], axis=-1)


def shape_from_entries(entries: list[dict]) -> np.ndarray:
    """(N, 2) sheared shapes from data.json truth: intrinsic distortion `e_int` at `beta_int_deg`
    (lensml's simulator) or shear-type components `e_int1`, `e_int2`, and the reduced shear g1, g2."""
    eps_int = np.empty((len(entries), 2))
    for row, entry in enumerate(entries):
        if "e_int1" in entry:
            eps_int[row] = entry["e_int1"], entry["e_int2"]
        else:
            size = distortion_to_shear(entry["e_int"])
            angle = 2.0 * np.deg2rad(entry["beta_int_deg"])
            eps_int[row] = size * np.cos(angle), size * np.sin(angle)
    return sheared_shape(eps_int, np.array([[entry["g1"], entry["g2"]] for entry in entries], dtype=float))
