"""Loss-landscape trajectories (the paper's Figure 2) and the parameter-level view of unlearnability.

    from uebench.experiments.landscape import LandscapeConfig, run_landscape
    summary = run_landscape(
        LandscapeConfig(dataset="mnist", data_dir="../shared/data", model="lenet5"), "runs/landscape"
    )

The pieces are usable on their own: `trajectory` (record every weight every k steps to disk, read it back in
bounded memory), `analysis` (coordinate choices, PCA plane, loss grids, the 1-D interpolation, per-weight statistics).
"""

from .analysis import (
    COORDINATES,
    LossEvaluator,
    Tolerance,
    axis_through_zero,
    line_alphas,
    line_losses,
    loss_grid,
    parameter_stats,
    pca_directions,
    select_divergent,
    select_movers,
    unit_directions,
)
from .pipeline import LandscapeConfig, run_landscape, to_grey
from .trajectory import (
    SGDSettings,
    Trajectory,
    TrajectoryWriter,
    coordinate_name,
    flat_weights,
    layout,
    recorded_steps,
    set_flat_weights,
    train_recorded,
)

__all__ = [
    "COORDINATES",
    "LossEvaluator",
    "Tolerance",
    "axis_through_zero",
    "line_alphas",
    "line_losses",
    "loss_grid",
    "parameter_stats",
    "pca_directions",
    "select_divergent",
    "select_movers",
    "unit_directions",
    "LandscapeConfig",
    "run_landscape",
    "to_grey",
    "SGDSettings",
    "Trajectory",
    "TrajectoryWriter",
    "coordinate_name",
    "flat_weights",
    "layout",
    "recorded_steps",
    "set_flat_weights",
    "train_recorded",
]
