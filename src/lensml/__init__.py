"""lensml: deep learning on gravitational lensing images.

Weak lensing: simulate GalSim stamps, train a network that measures the reduced shear g1, g2,
and judge it by m and c beside HSM. Strong lensing: simulate or read survey cutouts of any
survey in the registry, train the Lens Finding Challenge's six architectures, score them exactly.

The functions below do what the `lensml` command's subcommands do and return paths, arrays and
dicts (see docs/python_api.md):

    simulate_weak, simulate_strong   draw training and test sets
    train, evaluate, predict         any task; the task (shear or lens) is read from the input
    calibrate                        a shear model's multiplicative bias on an independent set
    load_model                       network and ModelInfo from a model file
    roc_curve, roc_auc, tpr_at_fp, detection_metrics, rmse, shear_bias, shear_metrics
                                     the metrics, pure functions of arrays
    get_survey, survey_names, load_survey_file
                                     the survey registry
"""

__version__ = "0.1.0"

from .api import calibrate, evaluate, load_model, predict, simulate_strong, simulate_weak, train  # noqa: E402
from .errors import LensmlError  # noqa: E402
from .metrics.detection import detection_metrics, roc_auc, roc_curve, tpr_at_fp  # noqa: E402
from .metrics.shear import rmse, shear_bias, shear_metrics  # noqa: E402
from .surveys import get_survey, load_survey_file, survey_names  # noqa: E402

__all__ = [
    "LensmlError", "calibrate", "detection_metrics", "evaluate", "get_survey", "load_model", "load_survey_file",
    "predict", "rmse", "roc_auc", "roc_curve", "shear_bias", "shear_metrics", "simulate_strong", "simulate_weak",
    "survey_names", "tpr_at_fp", "train",
]
