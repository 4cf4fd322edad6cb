"""`lensml quickstart`: the whole weak-lensing job on a small set, in about a minute on a laptop."""

from __future__ import annotations

from pathlib import Path

from ..simulate.weak import PairDesign, WeakSimConfig
from ..simulate.weak_files import simulate_weak
from .shear_config import ShearTrainConfig
from .shear_eval import evaluate_shear
from .shear_train import train_shear
from ..report import report

# LensNet's galaxies and PSF, with their shape noise (|e| ~ |N(0, 0.2)|), at SNR 100. The test set is the
# paired ring design at |g| = 0.02, the shears a survey measures, scored by the paired m and c.
QUICKSTART_SIM = WeakSimConfig(noise=True, snr=(100.0, 100.0))
QUICKSTART_PAIRS = PairDesign(ring=4, shear=0.02)


def quickstart(out_dir: str, n: int = 2000, epochs: int = 8, seed: int = 0, workers: int = 2, progress: bool = True) -> dict:
    """Simulate a training and an independent test set, train, evaluate; results also in OUT/results.json."""
    out = Path(out_dir)
    n_test = max(n // 32, 2) * QUICKSTART_PAIRS.stamps_per_galaxy
    report(f"[1/3] simulating {n} training stamps and a paired test set of {n_test} (ring 4, |g| = 0.02) "
           f"into {out / 'train'} and {out / 'test'}")
    train_set = simulate_weak(QUICKSTART_SIM, n, out / "train", seed=seed, workers=workers, progress=progress)
    test_set = simulate_weak(QUICKSTART_SIM, n_test, out / "test", seed=seed + 1, workers=workers, progress=progress,
                             pairs=QUICKSTART_PAIRS)
    config = ShearTrainConfig(epochs=epochs, seed=seed, metacal=True, width=8)  # as pretrained:shear_net_ground
    report(f"[2/3] training {config.arch} (width {config.width}) on the stamps' metacal images for {epochs} epochs")
    model = train_shear(str(train_set), str(out / "models" / config.arch), config, progress=progress)
    report("[3/3] evaluating on the paired test set, metacalibrated, beside GalSim HSM REGAUSS")
    return evaluate_shear(str(test_set), str(model), json_path=str(out / "results.json"),
                          plot_path=str(out / "shear.png"), progress=progress)
