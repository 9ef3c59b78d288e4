"""Cross-task unlearnability: do unlearnable examples made for classification stop a
model from learning segmentation, depth, edges, keypoints, ...?

    from uebench.experiments.crosstask import CrossTaskConfig, run_experiment
    results = run_experiment(CrossTaskConfig(dataset="scenes", attacks=("em", "ops", "ar")), "out/crosstask")

The Taskonomy reader is a dataset like the others (uebench/data/taskonomy.py). Modules: task.py (the Task record and
registry), tasks.py (the tasks), metrics.py, derived.py (targets from RGB), augment.py (joint crop + flip),
training.py (fit_multitask, evaluate_tasks, per-task SAL), attack.py (classification poisons and the multi-task EM
baseline), experiment.py (config, runs, results, tables).
"""

from . import tasks as _tasks  # noqa: F401  (registers the tasks)
from .experiment import CrossTaskConfig, run_experiment, with_preset
from .task import TASKS, Task, get_tasks, register_task

__all__ = ["TASKS", "Task", "get_tasks", "register_task", "CrossTaskConfig", "run_experiment", "with_preset"]
