"""Adversarial training (Madry et al. ICLR 2018), APBench's `--at` (mardrys.MadrysLoss): every batch is replaced
by its PGD adversarial examples and the model trains on those. PGD-10, Linf 8/255, step 2/255, random start.

The attack runs with the model in eval mode (APBench's MadrysLoss switches to eval and back; it keeps the
batch-norm running statistics out of the attack) and leaves the model as it found it. The random start is uniform
in the Linf ball (Madry et al.); APBench starts from Gaussian noise of scale step_size instead (`start=gaussian`).
Each step is a signed-gradient ascent step on the cross-entropy, projected onto the ball and onto [0, 1].
Cost: about (steps + 1) forward-backward passes per batch, 11x an undefended epoch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Annotated

import torch

from ..core.options import MAX_STEPS, Count
from .base import Defense, check, check_type, loss_per_sample, rand, register_defense

START = ("uniform", "gaussian", "none")


@register_defense
class AdversarialTraining(Defense):
    name = "at"
    kind = "training"
    description = "adversarial training: train on PGD-10 examples, Linf 8/255, step 2/255, random start"
    source = (
        "Madry et al. 2018 (PGD, uniform random start); "
        "APBench mardrys.py (eps 0.031, step 0.007, 10 steps, eval-mode attack)"
    )

    @dataclass
    class Config:
        eps: float = 8 / 255
        step_size: float = 2 / 255
        steps: Annotated[int, Count(MAX_STEPS)] = 10
        start: str = "uniform"  # uniform in the ball (Madry) | gaussian (APBench: N(0, step_size^2)) | none
        eval_mode: bool = True  # run the attack with the model in eval mode (APBench)

        def __post_init__(self):
            for name in ("eps", "step_size"):
                check_type(getattr(self, name), (int, float), name)
            check(0 < self.eps <= 1, f"eps must be in (0, 1] ([0,1] pixel units; 8/255 = 0.0314), got {self.eps}")
            check(self.step_size > 0, f"step_size must be > 0, got {self.step_size}")
            check_type(self.steps, int, "steps")
            check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
            check(self.start in START, f"start must be one of {', '.join(START)}, got {self.start!r}")
            check_type(self.eval_mode, bool, "eval_mode")

    def attack(self, model, x, y, *, generator=None, autocast=contextlib.nullcontext) -> torch.Tensor:
        """PGD adversarial examples of (x, y) against `model`, within the Linf ball of radius eps and [0, 1]."""
        cfg = self.config
        was_training = model.training
        if cfg.eval_mode:
            model.eval()
        x = x.detach()
        lo, hi = (x - cfg.eps).clamp(min=0), (x + cfg.eps).clamp(max=1)
        if cfg.start == "uniform":
            x_adv = x + (2 * rand(x.shape, generator, x.device).to(x.dtype) - 1) * cfg.eps
        elif cfg.start == "gaussian":
            noise = torch.randn(tuple(x.shape), generator=generator).to(x.device, x.dtype)
            x_adv = x + cfg.step_size * noise
        else:
            x_adv = x.clone()
        x_adv = torch.min(torch.max(x_adv, lo), hi)
        try:
            for _ in range(cfg.steps):
                x_adv.requires_grad_(True)
                with torch.enable_grad():
                    with autocast():
                        logits = model(x_adv)
                    loss = loss_per_sample(logits, y).sum()
                    (grad,) = torch.autograd.grad(loss, [x_adv])  # parameter gradients are not touched
                x_adv = x_adv.detach() + cfg.step_size * grad.sign()
                x_adv = torch.min(torch.max(x_adv, lo), hi)
        finally:
            model.train(was_training)
        return x_adv.detach()

    def batch(self, x, y, *, model=None, generator=None, autocast=contextlib.nullcontext):
        if model is None:
            raise RuntimeError("adversarial training needs the model: batch(x, y, model=...)")
        return self.attack(model, x, y, generator=generator, autocast=autocast), y
