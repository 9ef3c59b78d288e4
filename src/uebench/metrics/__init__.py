"""The paper's unlearnability metrics: SAL per layer (faithful and fast), the learnable threshold beta, #LP, UD.

r = layer_sal(model, "layer4.1.conv2", train_set)           # faithful, origin "eval" (no running loss given)
m = model_sal(model, train_set)                              # every Conv2d/Linear weight: SALConfig's fast, eval
beta = learnable_threshold(sal_clean)                        # arrays of shape (epochs, layers)
ud = unlearnable_distance(sal_poisoned, sal_clean)
"""

from .fast_sal import FastSALConfig
from .sal import ModelSAL, ProbeData, SALResult, layer_sal, model_sal, sal_value
from .sal_config import SALConfig
from .threshold import epoch_thresholds, learnable_threshold, two_means_1d
from .ud import (
    bootstrap_ud,
    learnable_count,
    run_sal,
    sal_matrix,
    ud_if_defined,
    ud_table,
    unlearnable_distance,
)

__all__ = [
    "SALConfig",
    "layer_sal",
    "model_sal",
    "sal_value",
    "SALResult",
    "ModelSAL",
    "ProbeData",
    "FastSALConfig",
    "learnable_threshold",
    "epoch_thresholds",
    "two_means_1d",
    "learnable_count",
    "unlearnable_distance",
    "ud_if_defined",
    "sal_matrix",
    "run_sal",
    "ud_table",
    "bootstrap_ud",
]
