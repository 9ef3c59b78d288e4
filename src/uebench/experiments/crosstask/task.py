"""The Task type and its registry: what a task predicts, from which target, with which loss and metric.

A task is plain data plus small pure functions (no subclassing): the experiment, the trainer, the SAL probe
and the multi-task attack all read the same record. Adding a task is one `register_task(Task(...))`.

Conventions shared by every task:
- targets are tensors whose first dimension is the image; dense targets are (N, H, W) or (N, C, H, W);
- a target pixel equal to `pad` (-1 for labels and binary maps, NaN for depth) is ignored by loss and metric:
  it is what a random crop pads in, or an invalid Taskonomy pixel;
- `predict` turns a head's raw output into a compact prediction (class ids, probabilities, depth, an image);
  `score` maps (predictions, targets) of a whole evaluation set to metrics, the headline one under `metric`;
- `trivial` is the best constant predictor fitted on the training targets (majority class, per-pixel median
  depth, per-pixel edge rate, mean image, the noisy input for denoising), scored like a model: a task is
  learnt when its metric beats the trivial one by a margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ...core.errors import UserError
from ...core.registry import Registry
from ...data.base import ImageDataset

KINDS = ("image", "dense")
DERIVE = ("missing", "always")  # use the dataset's own target where it has one, or always derive from RGB


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    kind: str  # image (one output per image) | dense (one per pixel)
    metric: str  # the headline metric (a key of score()'s dict)
    higher_is_better: bool
    channels: Callable[[ImageDataset], int]  # the head's output channels for a dataset
    target: Callable[
        [ImageDataset, str], tuple[torch.Tensor, str]
    ]  # (clean dataset, derive policy) -> (targets, source)
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # mean over valid elements
    predict: Callable[[torch.Tensor], torch.Tensor]
    score: Callable[[torch.Tensor, torch.Tensor], dict[str, float]]
    trivial: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (train targets, test targets) -> test predictions
    pad: float = -1.0
    input_noise: float = 0.0  # std of Gaussian noise on this task's input (denoising); 0 = the image as it is
    weight: float = 1.0  # default weight in the multi-task loss

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name}: unknown kind {self.kind}")

    def better(self, a: float, b: float) -> bool:
        """Is metric value a better than b?"""
        return a > b if self.higher_is_better else a < b

    def drop(self, clean: float, poisoned: float) -> float:
        """Relative drop of the metric (fraction of the clean value; > 0 = worse on poisoned data)."""
        if not (math.isfinite(clean) and math.isfinite(poisoned)) or clean == 0:
            return float("nan")
        return (clean - poisoned) / abs(clean) if self.higher_is_better else (poisoned - clean) / abs(clean)

    def beats_trivial(self, clean: float, trivial: float, n_test: int) -> bool:
        """Did the clean model learn this task? Its metric must beat the trivial predictor's by a margin: for an
        accuracy (percent), 3 binomial standard errors of the trivial accuracy over the n_test images; otherwise 2%
        of the trivial value. Only then is a poison's drop (or the margin it leaves) a statement about the poison."""
        if not (math.isfinite(clean) and math.isfinite(trivial)) or not self.better(clean, trivial):
            return False
        if self.metric == "accuracy":
            p = min(max(trivial / 100, 1e-6), 1 - 1e-6)
            return clean - trivial > 300 * math.sqrt(p * (1 - p) / max(n_test, 1))
        return abs(clean - trivial) > 0.02 * abs(trivial)

    def retained(self, clean: float, poisoned: float, trivial: float) -> float:
        """How much of the clean model's margin over the trivial predictor survives the poison (1 = all of it,
        0 = no better than the trivial predictor, < 0 = worse than it)."""
        margin = clean - trivial
        if not all(math.isfinite(v) for v in (clean, poisoned, trivial)) or margin == 0:
            return float("nan")
        return (poisoned - trivial) / margin


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    TASKS.register(task.name)(task)
    return task


def get_tasks(names) -> list[Task]:
    """Tasks by name (a comma-separated string or a sequence), each once, in the order given."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise UserError(f"no task given; valid: {', '.join(TASKS.names())}")
    out: list[Task] = []
    for n in names:
        t = TASKS.get(n)
        if t not in out:
            out.append(t)
    return out


def check_derive(policy: str) -> str:
    if policy not in DERIVE:
        raise UserError(f"unknown target policy '{policy}'; valid: {', '.join(DERIVE)}")
    return policy


def unavailable(task: str, ds: ImageDataset, how: str) -> UserError:
    return UserError(f"task '{task}' cannot be had from dataset {ds.name}: {how}")
