"""`lensml train` on a weak-lensing data.json: load the stamps, standardise the targets, train."""

from __future__ import annotations

import inspect
from functools import partial
from pathlib import Path

import numpy as np

from ..data.stamps import load_stamps
from .. import distributed
from ..data.transforms import SPIN2_COMPONENT, random_d4
from ..errors import BadInputError
from ..io.manifest import Manifest, read_manifest
from ..modelfile import ModelInfo, writable_model_path
from ..models import get_spec
from ..training import LoopSettings
from .calibration import MIN_CALIBRATION, calibrate_model
from ..identity import manifest_identity
from .run_training import remove_model, split_indices, train_network
from .shear_config import ShearTrainConfig
from ..report import report


def _target_means(names, values: np.ndarray) -> list[float]:
    """Standardisation offsets: 0 for spin-2 components, whose mean is zero by symmetry.

    The D4 views flip the sign of a spin-2 target; with a non-zero offset the flipped, standardised
    label would no longer be the label of the flipped stamp, and the network would learn an additive bias.
    """
    return [0.0 if name in SPIN2_COMPONENT else float(values[:, k].mean()) for k, name in enumerate(names)]


def _metacal_images(manifest: Manifest, spec, config: ShearTrainConfig, progress: bool) -> np.ndarray:
    """The noshear metacal image of every stamp (N, C, H, W), as metacalibration will show it."""
    from ..device import resolve_device
    from ..shear.network_metacal import metacal_training_inputs

    if "psf" not in spec.inputs:
        raise BadInputError(f"--metacal needs an architecture that takes the PSF image; {spec.name} does not")
    raw = load_stamps(manifest, ("galaxy", "psf"), "none", shape=config.image_size, progress=progress)
    sigma = np.array([entry.get("noise_sigma", 0.0) for entry in manifest.entries], dtype=float)
    if any("snr" in e and "noise_sigma" not in e for e in manifest.entries):
        report(f"note: {manifest.path} has noisy stamps without a recorded noise_sigma; they get no metacal noise "
               "correction (simulate them again with this lensml to record it)")
    device = resolve_device(config.device)
    return metacal_training_inputs(spec.inputs, spec.norm, raw[:, 0], raw[:, 1], sigma, config.seed, device, progress)


def _shape_targets(manifest: Manifest) -> np.ndarray:
    """(N, 2) ellipticity of each sheared galaxy (its population mean is g), from the data.json truth."""
    from ..shear.shape import shape_from_entries

    missing = next((i for i, e in enumerate(manifest.entries)
                    if not ({"e_int", "beta_int_deg"} <= e.keys() or {"e_int1", "e_int2"} <= e.keys())), None)
    if missing is not None:
        raise BadInputError(f"{manifest.path}: entry {missing} has no intrinsic shape (e_int and beta_int_deg, or "
                            "e_int1 and e_int2), which the shape target needs; use --target shear")
    return shape_from_entries(manifest.entries)


def train_shear(
    manifest_path: str, model: str, config: ShearTrainConfig, remove: bool = False, progress: bool = True
) -> Path:
    """Train (or go on training) a shear model; returns the model file's path."""
    spec = get_spec(config.arch)
    if spec.task != "shear":
        raise BadInputError(f"{config.arch} is a {spec.task} architecture; a data.json needs a shear one")
    if config.width is not None and "width" not in inspect.signature(spec.builder).parameters:
        raise BadInputError(f"--width: {config.arch} has no width setting (shear_net and shear_cnn have)")
    out = writable_model_path(model)
    if remove:
        remove_model(out)
    manifest = read_manifest(manifest_path, required=config.targets)
    train_idx, val_idx = split_indices(len(manifest), config.val_fraction, config.seed)
    if config.metacal:
        images = _metacal_images(manifest, spec, config, progress)
    else:
        images = load_stamps(manifest, spec.inputs, spec.norm, shape=config.image_size, progress=progress)
    if config.learned == "shape":
        targets = _shape_targets(manifest)[:, [("g1", "g2").index(t) for t in config.targets]]
    else:
        targets = manifest.targets(config.targets)
    std = targets[train_idx].std(axis=0)
    info = ModelInfo(
        arch=config.arch,
        arch_kwargs={"in_channels": len(spec.inputs), "out_features": len(config.targets),
                     "image_size": list(images.shape[2:]), **({"width": config.width} if config.width else {})},
        task="shear", inputs=list(spec.inputs), norm=spec.norm, targets=list(config.targets), metacal=config.metacal,
        target_mean=_target_means(config.targets, targets[train_idx]), target_std=np.where(std > 0, std, 1.0).tolist(),
    )
    settings = LoopSettings(
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, loss=config.loss, seed=config.seed,
        schedule=config.schedule, patience=config.patience, precision=config.precision, compile=config.compile,
        augment=partial(random_d4, names=config.targets) if config.augment else None,
    )
    data = manifest_identity(manifest)
    train_network(out, info, images, targets, val_idx, settings, config.to_dict(), data,
                  device_name=config.device, weight_decay=config.weight_decay, progress=progress)
    if config.metacal:
        report("metacal model: its response, measured on each stamp's metacal images, calibrates it (no m stored)")
    elif config.calibrate and distributed.group().is_main:
        if len(val_idx) < MIN_CALIBRATION or not np.ptp(targets[val_idx], axis=0).any():
            report(f"not calibrated: {len(val_idx)} validation stamps (at least {MIN_CALIBRATION} needed, "
                  "with true values that differ)")
        else:
            calibrate_model(out, images[val_idx], targets[val_idx], data, config.device)
    return out
