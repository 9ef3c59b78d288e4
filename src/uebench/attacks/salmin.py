"""salmin: error-minimising noise that also minimises the crafting model's SAL (uebench's answer to the open
question 2 of "How Far Are We from True Unlearnability?": can a perturbation be crafted against the metric that
exposes UEs?).

EM's min-min game (attacks/em.py, sample-wise, Linf 8/255, the same rounds, steps and stopping rule), with the
noise step descending

    L(f(x + delta), y) + sal_weight * sum_l S_l,   S_l = sal_eps * ||W_l|| * ||grad_{W_l} L||

where S_l is the first-order value of layer l's SAL on the batch (metrics/sal_surrogate.py: SAL's search radius is
eps * ||W_l||, and to first order the loss it can rise by is that radius times the gradient's norm). The gradient
of S_l in the input goes through the weight gradient: double backprop, about twice the cost of an EM noise step.
Lowering S_l flattens the loss along every layer's weights at the crafting model, which is what #LP counts.

Defaults, and why: EM's paper settings (at sal_weight 0 salmin is EM's objective; not EM's bytes, since its
crafting model keeps BatchNorm unfolded); sal_eps = 0.05, SAL's own
radius (metrics.SALConfig); sal_weight = 1.0, because on the fast crafting model the summed surrogate of the 21
layers of a ResNet-18 and the cross-entropy are of the same order once EM's noise has taken the loss down (both
fall to ~0.01-0.1), so neither term swamps the other's gradient signs. The crafting model sees the layers
in eval mode without folding BatchNorm, as the SAL probe does.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..core.errors import UserError
from ..metrics.sal_common import probed_weights
from ..metrics.sal_surrogate import first_order_sal, surrogate_total
from . import _crafting as crafting
from .base import register_attack
from .em import EM, EMConfig


@dataclass
class SALMinConfig(EMConfig):
    sal_weight: float = 0.1  # weight of the summed first-order SAL in the noise objective; 0 = EM
    sal_eps: float = 0.05  # SAL's radius (metrics.SALConfig's default)
    precision: str = "fp32"  # fp32 by default until bf16's efficacy is measured on salmin (docs/results/efficacy.md)


@register_attack
class SALMin(EM):
    name: ClassVar[str] = "salmin"
    description: ClassVar[str] = (
        "EM's min-min noise that also lowers the crafting model's first-order SAL in every layer (uebench)"
    )
    Config: ClassVar[type] = SALMinConfig
    presets: ClassVar[dict] = {"fast": dict(EM.presets["fast"])}  # EM's, so the two compare at equal settings
    variant: ClassVar[str] = "first-order"
    accepts_objective = False  # the surrogate is written for a classifier's cross-entropy

    def check(self, c: SALMinConfig) -> None:
        super().check(c)
        if c.mode != "samplewise":
            raise UserError(
                "salmin: only mode=samplewise is defined (the SAL term is a per-batch, per-sample objective)"
            )
        w = c.sal_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w >= 0):
            raise UserError(f"salmin: sal_weight must be a finite number >= 0 (0 = EM), got {w!r}")
        crafting.positive(self.name, sal_eps=c.sal_eps)
        if not math.isfinite(c.sal_eps):
            raise UserError(f"salmin: sal_eps must be finite, got {c.sal_eps}")

    def frozen(self, model):
        """An eval-mode copy whose probed weights keep their gradients (the surrogate needs them); BatchNorm is
        not folded, so the layers are the ones SAL probes."""
        frozen = copy.deepcopy(model).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        for w in probed_weights(frozen).values():
            w.requires_grad_(True)
        self._last_frozen = frozen
        return frozen

    def _perturb(self, ds, seed, progress):
        pert = super()._perturb(ds, seed, progress)
        # the final crafting model's surrogate on the clean and on the poisoned images: what the noise lowered
        c, model = self.config, self._last_frozen
        device = next(model.parameters()).device
        x, y = crafting.tensors(ds, device)
        delta = crafting.channels_last(pert.delta.to(device))
        clean = poisoned = 0.0
        for idx in crafting.chunks(len(x), c.pgd_batch, device):
            share = len(idx) / len(x)
            clean += share * float(surrogate_total(first_order_sal(model, x[idx], y[idx], c.sal_eps)))
            inputs = (x[idx] + delta[idx]).clamp(0, 1)
            poisoned += share * float(surrogate_total(first_order_sal(model, inputs, y[idx], c.sal_eps)))
        pert.extra.update(sal_surrogate_clean=round(clean, 6), sal_surrogate_poisoned=round(poisoned, 6))
        return pert

    def _descend(self, model, xb, yb, delta, compute) -> torch.Tensor:
        c = self.config
        for _ in range(c.steps):
            d = delta.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.objective_value(model, xb + d, yb) * len(xb), d)
            delta = crafting.signed_step(d.detach(), grad, c.step, c.eps, xb, descend=True)
            # with the SAL term: the weight gradient with its graph, then the backward through both
            compute.fb((2 if c.sal_weight else 1) * len(xb))
        return delta.detach()

    def objective_value(self, model, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy + sal_weight * summed first-order SAL on the batch (differentiable in the inputs)."""
        c = self.config
        ce = torch.nn.functional.cross_entropy(model(inputs), labels)
        if c.sal_weight == 0:
            return ce
        return ce + c.sal_weight * surrogate_total(first_order_sal(model, inputs, labels, c.sal_eps, create_graph=True))
