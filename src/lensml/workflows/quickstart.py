"""`lensml quickstart`: the whole weak-lensing job on a small set, in about a minute on a laptop."""

from __future__ import annotations

from pathlib import Path

from ..simulate.weak import WeakSimConfig
from ..simulate.weak_files import simulate_weak
from .shear_config import ShearTrainConfig
from .shear_eval import evaluate_shear
from .shear_train import train_shear
from ..report import report

# LensNet's galaxies and PSF, round before shearing so each stamp measures the shear itself, SNR 100.
QUICKSTART_SIM = WeakSimConfig(e_int_sigma=0.0, noise=True, snr=(100.0, 100.0))


def quickstart(out_dir: str, n: int = 2000, epochs: int = 8, seed: int = 0, workers: int = 2, progress: bool = True) -> dict:
    """Simulate a training and an independent test set, train, evaluate; results also in OUT/results.json."""
    out = Path(out_dir)
    n_test = max(n // 4, 3)
    report(f"[1/3] simulating {n} training and {n_test} test stamps into {out / 'train'} and {out / 'test'}")
    train_set = simulate_weak(QUICKSTART_SIM, n, out / "train", seed=seed, workers=workers, progress=progress)
    test_set = simulate_weak(QUICKSTART_SIM, n_test, out / "test", seed=seed + 1, workers=workers, progress=progress)
    report(f"[2/3] training shear_cnn for {epochs} epochs")
    config = ShearTrainConfig(epochs=epochs, seed=seed)
    model = train_shear(str(train_set), str(out / "models" / "shear_cnn"), config, progress=progress)
    report("[3/3] evaluating on the test stamps, beside GalSim HSM REGAUSS")
    return evaluate_shear(str(test_set), str(model), tta=True, json_path=str(out / "results.json"),
                          plot_path=str(out / "shear.png"), progress=progress)
