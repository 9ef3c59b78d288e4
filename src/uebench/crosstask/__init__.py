"""Cross-task unlearnability (DESIGN.md section 7): do unlearnable examples made for classification stop a
model from learning segmentation, depth, edges, keypoints, ...?

    from uebench.crosstask import TASKS, get_tasks, CrossTaskConfig, run_experiment
"""

from . import taskonomy as _taskonomy  # noqa: F401  (registers the "taskonomy" dataset)
from . import tasks as _tasks  # noqa: F401  (registers the tasks)
from .task import TASKS, Task, get_tasks, register_task

__all__ = ["TASKS", "Task", "get_tasks", "register_task"]
