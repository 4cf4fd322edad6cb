"""`lensml train` on a lens-finding folder: survey, bands and cutout size from the data, seeded split, BCE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import distributed
from ..data.augment import augment_batch
from ..data.lens_set import CUTOUTS, load_lens_set
from ..errors import BadInputError
from ..device import resolve_device
from ..metrics.probability import fit_temperature, log_loss
from ..modelfile import ModelInfo, load_model, save_model, writable_model_path
from ..report import report
from ..models import get_spec
from ..surveys import get_survey
from ..training import LoopSettings
from .lens_config import LensTrainConfig
from ..identity import lens_identity
from .run_training import remove_model, split_indices, train_network


def train_lens(data_dir: str, model: str, config: LensTrainConfig, remove: bool = False, progress: bool = True) -> Path:
    """Train (or go on training) a lens finder; returns the model file's path."""
    spec = get_spec(config.arch)
    if spec.task != "lens":
        raise BadInputError(f"{config.arch} is a {spec.task} architecture; a challenge folder needs a lens finder "
                            "(`lensml models --task lens`)")
    out = writable_model_path(model)
    if remove:
        remove_model(out)
    with distributed.main_first():  # one process builds the packed cache, the others then read it
        data = load_lens_set(data_dir, config.norm, progress=progress, complete=True)
    if len(set(data.labels.tolist())) < 2:
        raise BadInputError(f"{data_dir}: training needs both lenses and non-lenses")
    _, val_idx = split_indices(data.n, config.val_fraction, config.seed, strata=data.labels)
    bands = data.images.shape[1]
    info = ModelInfo(
        arch=config.arch,
        arch_kwargs={"in_channels": bands, "out_features": 1, "image_size": list(data.images.shape[2:])},
        task="lens", inputs=[data.survey], norm=config.norm, targets=["is_lens"], target_mean=[0.0], target_std=[1.0],
        survey={} if data.survey == CUTOUTS else get_survey(data.survey).to_dict(),
    )
    settings = LoopSettings(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, loss="bce",
                            seed=config.seed, schedule=config.schedule, patience=config.patience,
                            precision=config.precision, compile=config.compile,
                            augment=augment_batch if config.augment else None)
    identity = lens_identity(data)
    targets = data.labels.astype("float64")[:, None]
    train_network(out, info, data.images, targets, val_idx, settings, config.to_dict(), identity,
                  device_name=config.device, weight_decay=config.weight_decay, progress=progress)
    if distributed.group().is_main and len(set(data.labels[val_idx].tolist())) == 2:
        scale_temperature(out, data.images, data.labels, val_idx, config.device)
    return out


@torch.inference_mode()
def scale_temperature(model_file: Path, images: np.ndarray, labels: np.ndarray, val_idx: np.ndarray,
                      device: str, batch_size: int = 256) -> dict:
    """Fit the temperature T of sigmoid(logit / T) on the validation scenes and store it in the model file.

    A network's raw probabilities are over-confident; one parameter fitted on held-out scenes makes
    them calibrated without changing their order (Guo et al. 2017).
    """
    dev = resolve_device(device)
    net, info = load_model(model_file, dev)
    logits = np.concatenate([net(torch.from_numpy(np.array(images[val_idx[k : k + batch_size]], dtype=np.float32))
                                 .to(dev)).flatten().double().cpu().numpy() for k in range(0, len(val_idx), batch_size)])
    y = labels[val_idx]
    t = fit_temperature(y, logits)
    info.calibration = {"temperature": t, "n": int(len(y)), "log_loss_raw": log_loss(y, logits),
                        "log_loss": log_loss(y, logits, t)}
    save_model(model_file, net, info)
    report(f"temperature scaling on {len(y)} validation scenes: T = {t:.3f}, log-loss "
           f"{info.calibration['log_loss_raw']:.4f} -> {info.calibration['log_loss']:.4f}")
    return info.calibration
