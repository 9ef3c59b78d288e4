"""craft(): an attack's float perturbation baked into a checked Poison.

poison = craft("em", train_set, preset="fast", seed=0)
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ..core.errors import UserError
from ..core.options import check_seed
from ..core.seeds import seeded
from ..data.base import ImageDataset, seeded_subset
from ..poisons.poison import Poison, PoisonMeta, bake, dataset_options
from ._crafting import recorded_params
from .base import ATTACKS, make_config


def craft(
    name: str,
    dataset: ImageDataset,
    *,
    preset: str = "paper",
    seed: int = 0,
    subset: int | None = None,
    subset_seed: int | None = None,
    progress: bool = True,
    objective: Any = None,
    **params: Any,
) -> Poison:
    """Craft a Poison for `dataset` (the full training split): every image, or a seeded subset of `subset` (drawn with
    `subset_seed`, by default the crafting seed). An `objective` (for attacks that accept one) replaces the crafting
    model and its loss; it names itself in the poison's variant and metadata."""
    cls = ATTACKS.get(name)
    check_seed(seed)
    attack = cls(make_config(cls, preset, **params), objective=objective)
    if subset_seed is not None:
        check_seed(subset_seed)
    pick = seed if subset_seed is None else subset_seed
    target = dataset if subset is None else seeded_subset(dataset, subset, seed=pick)
    attack.validate(target)  # what is crafted: a subset can be too small for a method the whole split suits
    t0 = time.perf_counter()
    with seeded(seed):  # an attack that draws from torch's global generator draws from the seed
        pert = attack.perturb(target, seed=seed, progress=progress)
    seconds = time.perf_counter() - t0
    if pert.delta.shape != target.images.shape:
        raise RuntimeError(
            f"{name} returned a delta of shape {tuple(pert.delta.shape)} for images {tuple(target.images.shape)}"
        )
    if not torch.isfinite(pert.delta).all():
        raise UserError(f"{name} produced a non-finite perturbation (NaN or inf); nothing was written")
    meta = PoisonMeta(
        attack=name,
        dataset=dataset.name,
        split=dataset.split,
        dataset_size=len(dataset),
        norm=cls.norm,
        budget=attack.budget(),
        params={"preset": preset, **recorded_params(attack.config)},  # with the precision that ran
        variant=attack.describe_variant() if objective is None else objective.variant,
        seed=seed,
        craft_seconds=seconds,
        epoch_equivalents=pert.epoch_equivalents,
        extra={
            "dataset_options": dataset_options(dataset),  # a dataset of other options is refused (Poison.check)
            **({} if objective is None else objective.describe()),
            **pert.extra,
        },
    )
    baked = bake(target.images, pert.delta, norm=cls.norm, budget=attack.budget())  # rounds, within the budget
    poison = Poison(baked, target.labels.clone(), target.indices.clone(), meta)
    poison.check(dataset)  # a poison that fails a check is never returned, so never written
    return poison.with_imperceptibility(dataset)  # PSNR and SSIM against the clean images, in its metadata
