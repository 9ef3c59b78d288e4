"""Poisons for the cross-task experiment: classification UEs (any registered attack, or a poison file) and the
multi-task baseline, a model-based attack crafted against the multi-task loss.

The multi-task baseline answers "is cross-task protection reachable at all?": EM's min-min optimisation with
the crafting model swapped for a multi-task network (shared encoder, one head per task) and the loss for the
weighted sum of the task losses, through `uebench.attacks.craft(..., objective=MultiTaskObjective(...))`; EM itself
is unchanged. Model-free attacks (OPS, AR, LSP) are defined by class labels alone and have no loss to swap: for them
the multi-task baseline does not exist, and asking for it is refused with the list of attacks that accept an
objective. A denoising task is crafted as autoencoding (the crafting loop feeds every head the same perturbed input).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ...attacks import craft, objective_attacks
from ...core.errors import UserError
from ...data.base import ImageDataset
from ...poisons.poison import Poison
from .task import Task
from .training import Settings, build_net

COMBINES = ("sum", "pcgrad")


class TaskTargets:
    """Per-task target tensors that slice like one tensor (`t[idx]`, `len(t)`): what the crafting loop indexes."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __getitem__(self, idx) -> "TaskTargets":
        return TaskTargets({k: v[idx] for k, v in self.tensors.items()})

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))


@dataclass
class MultiTaskObjective:
    """A multi-task network (the experiment's architecture), the weighted sum of its task losses, and every task's
    targets for the crafting set (rows in the order of `indices`, the images' positions in the training split)."""

    tasks: Sequence[Task]
    channels: dict[str, int]
    targets_by_task: dict[str, torch.Tensor]
    indices: torch.Tensor
    weights: dict[str, float] = field(default_factory=dict)
    encoder: str = "resnet18"
    combine: str = "sum"  # the noise step: the summed loss's gradient, or PCGrad over the tasks' gradients

    @property
    def variant(self) -> str:  # the poison's variant
        return "multitask" if self.combine == "sum" else f"multitask-{self.combine}"

    def describe(self) -> dict[str, Any]:
        extra = {} if self.combine == "sum" else {"combine": self.combine}
        return {"objective": "multitask", "tasks": [t.name for t in self.tasks], "weights": self.weights, **extra}

    def build_model(self, cfg, ds: ImageDataset, seed: int, device: torch.device):
        net = build_net(
            self.tasks, self.channels, Settings(encoder=self.encoder, width=cfg.width, seed=seed), ds.shape[0]
        )
        return net.to(device).to(memory_format=torch.channels_last)

    def targets(self, ds: ImageDataset, device: torch.device) -> TaskTargets:
        if not torch.equal(ds.indices, self.indices):
            raise UserError("the multi-task targets were prepared for other images than the crafting set")
        return TaskTargets({t.name: self.targets_by_task[t.name].to(device) for t in self.tasks})

    def task_losses(self, out: dict[str, torch.Tensor], t: TaskTargets) -> dict[str, torch.Tensor]:
        return {k.name: self.weights.get(k.name, k.weight) * k.loss(out[k.name], t.tensors[k.name]) for k in self.tasks}

    def loss(self, out: dict[str, torch.Tensor], t: TaskTargets) -> torch.Tensor:
        return sum(self.task_losses(out, t).values())

    def correct(self, out: dict[str, torch.Tensor], t: TaskTargets) -> int:
        """Correct scene classes (EM's stopping rule); 0 without a class task: then max_rounds stops it."""
        if "class" not in out:
            return 0
        return int((out["class"].argmax(1) == t.tensors["class"]).sum())


def craft_multitask(
    name: str,
    full: ImageDataset,
    train: ImageDataset,
    task_targets: dict[str, torch.Tensor],
    tasks: Sequence[Task],
    channels: dict[str, int],
    *,
    subset: int | None,
    subset_seed: int | None = None,
    preset: str,
    seed: int,
    params: dict,
    weights: dict[str, float],
    encoder: str,
    progress: bool,
    combine: str = "sum",
) -> Poison:
    """`name` crafted against the multi-task loss on `train`: the images of `full` that craft's `subset` (seeded by
    `subset_seed`, by default `seed`) picks, whose task targets are `task_targets`. `combine`: how the noise step
    joins the tasks' gradients, "sum" (the summed loss) or "pcgrad" (conflicting components removed first)."""
    if name not in objective_attacks():
        raise UserError(
            f"attack '{name}' has no model and loss to craft against "
            "several tasks; multi-task crafting is available for: "
            f"{', '.join(objective_attacks()) or 'none'}"
        )
    if combine not in COMBINES:
        raise UserError(f"unknown multi-task combine '{combine}'; valid: {', '.join(COMBINES)}")
    if combine != "sum" and params.get("mode", "samplewise") != "samplewise":
        raise UserError(f"--multitask-combine {combine} is defined for sample-wise noise only (mode=samplewise)")
    objective = MultiTaskObjective(list(tasks), channels, task_targets, train.indices, weights, encoder, combine)
    return craft(
        name,
        full,
        preset=preset,
        seed=seed,
        subset=subset,
        subset_seed=subset_seed,
        progress=progress,
        objective=objective,
        **params,
    )


def load_poison_file(path: str | Path, full: ImageDataset) -> Poison:
    poison = Poison.load(path).require_paired("crosstask")
    poison.check(full)
    return poison
