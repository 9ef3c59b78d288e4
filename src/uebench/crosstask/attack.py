"""Poisons for the cross-task experiment: classification UEs (any registered attack, or a poison file) and the
multi-task baseline, a model-based attack crafted against the multi-task loss.

The multi-task baseline answers "is cross-task protection reachable at all?": EM's min-min optimisation with
the crafting model swapped for a multi-task network (shared encoder, one head per task) and the loss for the
weighted sum of the task losses (uebench.attacks._crafting.Objective; EM itself is unchanged). Model-free
attacks (OPS, AR, LSP) are defined by class labels alone and have no loss to swap: for them the multi-task
baseline does not exist, and asking for it is refused with the list of attacks that accept an objective.
A denoising task is crafted as autoencoding (the crafting loop feeds every head the same perturbed input).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch

from ..attacks import ATTACKS, craft, make_config
from ..data.base import ImageDataset
from ..errors import UserError
from ..poison import Poison, PoisonMeta, bake
from ..seeds import seeded
from .task import Task
from .training import Settings, build_net

TARGET_PREFIX = "task:"  # keys of the prepared task targets carried by the crafting set's ImageDataset.targets


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
    """A multi-task network (the experiment's architecture) and the weighted sum of its task losses."""

    tasks: Sequence[Task]
    channels: dict[str, int]
    weights: dict[str, float] = field(default_factory=dict)
    encoder: str = "resnet18"

    def build_model(self, cfg, ds: ImageDataset, seed: int, device: torch.device):
        net = build_net(
            self.tasks, self.channels, Settings(encoder=self.encoder, width=cfg.width, seed=seed), ds.shape[0]
        )
        return net.to(device).to(memory_format=torch.channels_last)

    def targets(self, ds: ImageDataset, device: torch.device) -> TaskTargets:
        missing = [t.name for t in self.tasks if TARGET_PREFIX + t.name not in ds.targets]
        if missing:
            raise UserError(f"the crafting set lacks prepared targets for {', '.join(missing)}")
        return TaskTargets({t.name: ds.targets[TARGET_PREFIX + t.name].to(device) for t in self.tasks})

    def loss(self, out: dict[str, torch.Tensor], t: TaskTargets) -> torch.Tensor:
        return sum(self.weights.get(k.name, k.weight) * k.loss(out[k.name], t.tensors[k.name]) for k in self.tasks)

    def correct(self, out: dict[str, torch.Tensor], t: TaskTargets) -> int:
        """Correct scene classes (EM's stopping rule); 0 without a class task: then max_rounds stops it."""
        if "class" not in out:
            return 0
        return int((out["class"].argmax(1) == t.tensors["class"]).sum())


def objective_attacks() -> list[str]:
    """Attacks whose crafting model and loss can be swapped (they declare an `objective` attribute)."""
    return [n for n in ATTACKS.names() if hasattr(ATTACKS.get(n), "objective")]


def craft_classification(
    name: str, full: ImageDataset, *, subset: int | None, preset: str, seed: int, params: dict, progress: bool
) -> Poison:
    """The attack as its paper defines it, against the class labels (of a seeded random subset, if asked)."""
    return craft(name, full, preset=preset, seed=seed, subset=subset, progress=progress, **params)


def craft_multitask(
    name: str,
    full: ImageDataset,
    train: ImageDataset,
    task_targets: dict[str, torch.Tensor],
    tasks: Sequence[Task],
    channels: dict[str, int],
    *,
    preset: str,
    seed: int,
    params: dict,
    weights: dict[str, float],
    encoder: str,
    progress: bool,
) -> Poison:
    """`name` crafted against the multi-task loss on `train` (a subset of `full`, or `full` itself)."""
    cls = ATTACKS.get(name)
    if not hasattr(cls, "objective"):
        raise UserError(
            f"attack '{name}' has no model and loss to craft against several tasks; multi-task crafting is available for: "
            f"{', '.join(objective_attacks()) or 'none'}"
        )
    attack = cls(make_config(cls, preset, **params))
    attack.objective = MultiTaskObjective(list(tasks), channels, weights, encoder)
    attack.validate(train)
    crafting_set = replace(train, targets={TARGET_PREFIX + k: v for k, v in task_targets.items()})
    t0 = time.perf_counter()
    with seeded(seed):
        pert = attack.perturb(crafting_set, seed=seed, progress=progress)
    seconds = time.perf_counter() - t0
    if not torch.isfinite(pert.delta).all():
        raise UserError(f"{name} (multi-task) produced a non-finite perturbation; nothing was written")
    meta = PoisonMeta(
        attack=name,
        dataset=full.name,
        split=full.split,
        dataset_size=len(full),
        norm=cls.norm,
        budget=attack.budget(),
        params={"preset": preset, **dataclasses.asdict(attack.config)},
        variant="multitask",
        seed=seed,
        craft_seconds=seconds,
        epoch_equivalents=pert.epoch_equivalents,
        extra={"objective": "multitask", "tasks": [t.name for t in tasks], "weights": weights, **pert.extra},
    )
    baked = bake(train.images, pert.delta, norm=cls.norm, budget=attack.budget())  # rounds, within the budget
    poison = Poison(baked, train.labels.clone(), train.indices.clone(), meta)
    poison.check(full)
    return poison


def load_poison_file(path: str | Path, full: ImageDataset) -> Poison:
    poison = Poison.load(path)
    poison.check(full)
    return poison
