"""Shear calibration: measure a network's multiplicative bias on held-out simulations and store it.

A network trained with a squared loss returns the posterior mean of the shear, which pixel noise
pulls toward the prior mean: its response is below one (m < 0, more so at low SNR). Measuring m
on simulations like the survey's and dividing it out is how weak-lensing pipelines calibrate;
the correction is valid for data drawn like the calibration set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.stamps import load_stamps
from ..errors import BadInputError
from ..inference import predict_array
from ..io.manifest import read_manifest
from ..metrics.shear import shear_bias
from ..modelfile import load_model, save_model, writable_model_path
from ..device import resolve_device
from ..identity import DataIdentity, held_out, manifest_identity
from ..report import report

MIN_CALIBRATION = 200


def calibrate_model(model_file: Path, images: np.ndarray, targets: np.ndarray, data: DataIdentity, device: str) -> dict:
    """Fit pred = (1 + m) true + c per target on normalised stamps; store each m in the model file."""
    dev = resolve_device(device)
    net, info = load_model(model_file, dev)
    pred = predict_array(net, info, images, dev, calibrated=False)
    fits = {name: shear_bias(targets[:, k], pred[:, k]) for k, name in enumerate(info.targets)
            if np.ptp(targets[:, k]) > 0}
    if not fits:
        raise BadInputError("calibration needs stamps whose true values differ; these are all equal")
    info.calibration = {"m": {name: fit["m"] for name, fit in fits.items()},
                        "m_err": {name: fit["m_err"] for name, fit in fits.items()},
                        "n": len(images), "data": data.path, "sha256": data.sha256}
    for name, fit in fits.items():
        report(f"calibration {name}: m = {fit['m']:+.4f} ± {fit['m_err']:.4f} (c = {fit['c']:+.5f} ± {fit['c_err']:.5f}, "
              f"not corrected) from {len(images)} stamps")
    save_model(model_file, net, info)
    return info.calibration


def calibrate_from_manifest(manifest_path: str, model_file: str, device: str = "auto", progress: bool = True) -> dict:
    """`lensml calibrate`: measure m on an independent simulated set (every entry is used)."""
    _, info = load_model(model_file)
    if info.task != "shear":
        raise BadInputError(f"{model_file} is a {info.task} model; `lensml calibrate` measures a shear model's "
                            "multiplicative bias (a lens finder's probabilities are calibrated when it is trained)")
    if info.metacal:
        raise BadInputError(f"{model_file}: a metacal model is calibrated by its own response on each stamp; "
                            "it takes no calibration")
    manifest = read_manifest(manifest_path, required=info.targets)
    data = manifest_identity(manifest)
    if len(held_out(info, data, "entries")[0]) < len(manifest):
        raise BadInputError(f"{manifest.path}: the model trained on entries of it; calibrate on an independent set")
    if len(manifest) < MIN_CALIBRATION:
        raise BadInputError(f"{manifest.path}: {len(manifest)} entries; calibration needs at least {MIN_CALIBRATION}")
    images = load_stamps(manifest, info.inputs, info.norm, shape=info.image_size, progress=progress)
    targets = manifest.targets(info.targets)
    return calibrate_model(writable_model_path(model_file), images, targets, data, device)
