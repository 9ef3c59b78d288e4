"""A differentiable first-order surrogate of SAL, for crafting perturbations that lower it (attacks/salmin.py).

SAL of layer l searches the ball ||W - W0|| <= eps ||W0|| for the largest loss change. To first order in the
radius, the ascent branch is exact: max over ||v|| <= r of L(W0 + v) - L(W0) = r ||grad_W L|| + O(r^2), reached at
v = r grad / ||grad||. So

    S_l = eps * ||W_l|| * ||grad_{W_l} L||

is SAL's ascent branch to first order (its descent branch has the same first-order value), and it is a smooth
function of the inputs: autograd differentiates it through the gradient (double backprop, create_graph=True).
Where the loss surface curves strongly inside the ball (large eps, sharp minima) the search finds more than S_l.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .sal_common import probed_weights


def first_order_sal(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    layers: Sequence[str] | None = None,
    *,
    create_graph: bool = False,
) -> dict[str, torch.Tensor]:
    """Layer name -> eps * ||W|| * ||grad_W mean cross-entropy|| on this batch, for every probed Conv2d/Linear
    weight (or `layers`). With create_graph the values stay differentiable in the inputs (and the weights)."""
    weights = probed_weights(model)
    names = list(weights) if layers is None else list(layers)
    params = [weights[n] for n in names]
    loss = F.cross_entropy(model(inputs), labels)
    grads = torch.autograd.grad(loss, params, create_graph=create_graph)
    return {n: eps * w.detach().norm() * g.norm() for n, w, g in zip(names, params, grads)}


def surrogate_total(values: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sum over layers: what salmin lowers (every layer counts for #LP, so every layer's SAL matters)."""
    return torch.stack(list(values.values())).sum()
