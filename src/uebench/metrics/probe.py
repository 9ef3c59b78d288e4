"""SAL during training: a probe for `train(config, out, probes=[SALProbe(...)])`.

Every `every` epochs it stores in that epoch's record: "sal" {layer: SAL}, "sal_max" {layer: L_max} (the
ascending branch's highest loss), "sal_min" {layer: L_min} (the descending branch's lowest loss), "sal_l0"
(L0), "sal_mode", "sal_origin" and "sal_settings"; SAL = max(sal_max - sal_l0, sal_l0 - sal_min).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from .fast_sal import FastSALConfig
from .sal import MODES, ORIGINS, ProbeData, model_sal


@dataclass
class SALProbe:
    """Faithful: the whole training set, augmented afresh every pass (`augment`: as the recipe trained), a new
    random stream every epoch. Fast: a fixed subset of the training set (the same images every epoch; see
    fast_sal.py). L0 defaults to the epoch's running training loss (origin "running", as the public code).
    SAL always runs in fp32, whatever the trainer's autocast: it measures loss differences of ~1e-3."""

    mode: str = "faithful"
    every: int = 1
    origin: str = "running"
    eps: float = 0.05
    rounds: int | None = None  # None: 10 (faithful) or fast.rounds
    lr: float = 0.1
    layers: tuple[str, ...] | None = None
    batch_size: int | None = None  # None: the run's training batch, as the public code probes with its training loader
    augment: bool = True  # as the training recipe: the public code probes with its training loader's transforms
    fast: FastSALConfig = field(default_factory=FastSALConfig)
    name: str = "sal"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"unknown SAL mode '{self.mode}'; valid: {', '.join(MODES)}")
        if self.origin not in ORIGINS:
            raise UserError(f"unknown SAL origin '{self.origin}'; valid: {', '.join(ORIGINS)}")
        if self.every < 1:
            raise UserError(f"--sal-every must be >= 1, got {self.every}")
        bad_batch = self.batch_size is not None and self.batch_size < 1
        if not (self.eps > 0 and math.isfinite(self.eps) and self.lr > 0 and math.isfinite(self.lr)) or (
                self.rounds is not None and self.rounds < 1) or bad_batch:
            raise UserError(f"SAL needs eps > 0, rounds >= 1, lr > 0, batch size >= 1 (got {self.eps}, {self.rounds}, {self.lr}, {self.batch_size})")
        if self.layers is not None:
            self.layers = tuple(self.layers)

    def due(self, epoch: int) -> bool:
        return epoch % self.every == 0

    def __call__(self, ctx) -> dict[str, Any]:
        if not self.due(ctx.epoch):
            return {}
        batch = self.batch_size or ctx.batch_size
        data = ProbeData.from_dataset(ctx.train_set, ctx.device, augment=self.augment, batch_size=batch)
        # faithful: a fresh augmentation stream per epoch; fast: the same subset every epoch (seed only)
        seed = ctx.seed if self.mode == "fast" else ctx.seed * 1_000_003 + ctx.epoch
        result = model_sal(
            ctx.model, data, layers=self.layers, eps=self.eps, rounds=self.rounds, lr=self.lr, origin=self.origin,
            running_loss=ctx.record.get("train_loss"), mode=self.mode, seed=seed, batch_size=batch, fast=self.fast,
            device=ctx.device,
        )
        return result.to_record()


def sal_probe(mode: str = "faithful", every: int = 1, **kw) -> SALProbe:
    return SALProbe(mode=mode, every=every, **kw)
