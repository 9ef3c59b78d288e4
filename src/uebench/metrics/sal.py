"""Sharpness-Aware Learnability (SAL) of one layer, as "How Far Are We from True Unlearnability?" computes it.

The paper's definition: for one parameter tensor W (a whole Conv2d/Linear weight) with every other
parameter frozen, search the ball ||W - W0||_2 <= eps * ||W0||_2 for the lowest and the highest training loss;
SAL = max(L_max - L0, L0 - L_min).

The faithful procedure (`layer_sal`) follows the public code (MLsecurityLab/HowFarAreFromTrueUnlearnability,
`layer_sharpness` in poison_train_sharp.py) step by step:
- the model is in eval mode (BatchNorm uses its running statistics and is not updated);
- two copies of W: one descends the loss, one ascends it, each with plain SGD (no momentum, no weight decay),
  lr 0.1, batches of the training loader (SALProbe: the run's training batch; 256 when called directly);
- a round is: one pass of the descending copy over the probe data, projection onto the ball, one pass of the
  ascending copy, projection, then one evaluation pass of both copies on the same batches; 10 rounds;
- the projection is applied once per pass, not per step (inside a pass the weights may leave the ball);
- best-of tracking starts at L0: L_min = min(L0, evaluations), L_max = max(L0, evaluations), so both branch
  differences are >= 0 and the public code's "the one of larger magnitude" equals the max;
- probe data = the training set the model learnt from, with fresh random crop + flip for every pass
  (a shuffled DataLoader, drop_last=True).

Where the public code and the formula differ, `origin` chooses L0: "running" = the epoch's running training
loss (public code: train mode, averaged while the weights moved, so it is not the loss of W0 at all), "eval" =
the loss of W0 on the probe data in eval mode (what the formula says; the public code's fall-back when no
running loss is given). Non-finite losses compare false, as in the public code: a diverged ascent is ignored.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import torch
import torch.nn as nn
from torch.func import functional_call

from ..core.errors import UserError
from .fast_sal import FastSALConfig, Split, cached_split, fast_model_sal
from .sal_common import (  # noqa: F401  (re-exported: the names SAL's callers have always imported from here)
    DEFAULT_EPS,
    DEFAULT_LR,
    DEFAULT_MODE,
    MODES,
    ORIGINS,
    LossFn,
    ModelSAL,
    ProbeData,
    SALResult,
    cross_entropy,
    default_origin,
    eval_loss,
    forward_with,
    layer_seed,
    origin_losses,
    probed_weights,
    probing,
    project_to_ball,
    resolve_layers,
    sal_at,
    sal_value,
    weight_key,
)


def _check_options(eps: float, rounds: int, lr: float, origin: str, running_loss: float | None) -> None:
    if origin not in ORIGINS:
        raise UserError(f"unknown SAL origin '{origin}'; valid: {', '.join(ORIGINS)}")
    if not eps > 0 or rounds < 1 or not lr > 0:
        raise UserError(f"SAL needs eps > 0, rounds >= 1 and lr > 0 (got eps={eps}, rounds={rounds}, lr={lr})")
    if origin == "running" and (running_loss is None or not math.isfinite(running_loss)):
        raise UserError(
            "origin 'running' needs the epoch's running training loss (running_loss=...); use origin='eval' without one"
        )


# ---- the faithful procedure -----------------------------------------------------------------------------
def layer_sal(
    model: nn.Module,
    layer: str,
    data,
    *,
    eps: float = DEFAULT_EPS,
    rounds: int = 10,
    lr: float = DEFAULT_LR,
    origin: str | None = None,
    running_loss: float | None = None,
    mode: str = "faithful",
    seed: int = 0,
    batch_size: int = 256,
    loss_fn: LossFn = cross_entropy,
    fast: FastSALConfig | None = None,
) -> SALResult:
    """SAL of one layer (see the module docstring). `data`: an ImageDataset (faithful: the whole set,
    augmented afresh every pass), a ProbeData, or an (inputs, targets) pair (no augmentation).

    `origin="running"` needs `running_loss` (the epoch's running training loss, the public code's L0); None: running
    where `running_loss` is given, else eval (sal_common.default_origin).
    `mode="fast"` runs the fast approximation (uebench.metrics.fast_sal) with the options in `fast`.
    The model's weights, requires_grad flags and train/eval mode are as they were afterwards."""
    return model_sal(
        model,
        data,
        layers=[layer],
        eps=eps,
        rounds=rounds,
        lr=lr,
        origin=origin,
        running_loss=running_loss,
        mode=mode,
        seed=seed,
        batch_size=batch_size,
        loss_fn=loss_fn,
        fast=fast,
    ).layers[layer]


def model_sal(
    model: nn.Module,
    data,
    *,
    layers: Sequence[str] | None = None,
    eps: float = DEFAULT_EPS,
    rounds: int | None = None,
    lr: float = DEFAULT_LR,
    origin: str | None = None,
    running_loss: float | None = None,
    mode: str = DEFAULT_MODE,
    seed: int = 0,
    batch_size: int = 256,
    loss_fn: LossFn = cross_entropy,
    fast: FastSALConfig | None = None,
    device: torch.device | str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> ModelSAL:
    """SAL of every probed layer (or of `layers`), each computed independently from the same W0.

    The defaults are SALConfig's: the fast estimator with FastSALConfig's options (`mode="faithful"` is the paper's
    procedure), eps 0.05, lr 0.1; `rounds` 10 (faithful) or the fast config's rounds (fast); `origin` None: "running"
    where `running_loss` is given, else "eval" (a standalone call has no running loss).

    `progress(i, n, name)` is called as the i-th of the n layers (from 1) starts, once per layer; it sees nothing of
    the numbers."""
    if mode not in MODES:
        raise UserError(f"unknown SAL mode '{mode}'; valid: {', '.join(MODES)}")
    fast = fast or FastSALConfig()
    rounds = rounds if rounds is not None else (10 if mode == "faithful" else fast.rounds)
    origin = default_origin(running_loss) if origin is None else origin
    _check_options(eps, rounds, lr, origin, running_loss)
    names = resolve_layers(model, layers)
    if device is None:
        device = next(model.parameters()).device
    probe = ProbeData.coerce(data, device, batch_size=batch_size)
    start = time.perf_counter()
    with probing(model):
        if mode == "fast":
            result = fast_model_sal(
                model,
                names,
                probe,
                eps=eps,
                rounds=rounds,
                lr=lr,
                origin=origin,
                running_loss=running_loss,
                seed=seed,
                loss_fn=loss_fn,
                config=fast,
                progress=progress,
            )
        else:
            result = _faithful_model_sal(
                model, names, probe, eps, rounds, lr, origin, running_loss, seed, loss_fn, progress
            )
    result.seconds = time.perf_counter() - start
    return result


def _faithful_model_sal(
    model, names, data: ProbeData, eps, rounds, lr, origin, running_loss, seed, loss_fn, progress
) -> ModelSAL:
    # the eval origin is one evaluation pass of the unperturbed model over the probe data (the public code's
    # fall-back); it is always measured, so every run records both origins
    origins = origin_losses(
        eval_loss(model, data, torch.Generator().manual_seed(layer_seed(seed, "<origin>")), loss_fn), running_loss
    )
    loss0 = origins[origin]
    out = {}
    for i, name in enumerate(names, 1):
        if progress:
            progress(i, len(names), name)
        out[name] = _faithful_layer(
            model, name, data, loss0, eps, rounds, lr, torch.Generator().manual_seed(layer_seed(seed, name)), loss_fn
        )
    settings = {
        "eps": eps,
        "rounds": rounds,
        "lr": lr,
        "batch_size": data.batch_size,
        "augment": data.augment,
        "probe_size": len(data),
    }
    return ModelSAL(out, loss0, "faithful", origin, settings, origins=origins)


def _faithful_layer(model, name, data: ProbeData, loss0, eps, rounds, lr, gen, loss_fn) -> SALResult:
    w0 = dict(model.named_parameters())[weight_key(name)].detach()
    copies = {+1.0: w0.clone(), -1.0: w0.clone()}  # +1 descends the loss, -1 ascends it
    forward = _layer_forward(model, name)
    eval_min, eval_max = math.inf, -math.inf
    for _ in range(rounds):
        for sign in (+1.0, -1.0):  # the public code: min pass + projection, then max pass + projection
            w = copies[sign].requires_grad_(True)
            for x, y in data.passes(gen):
                loss = loss_fn(forward(w, forward.frozen(x)), y)
                g = torch.autograd.grad(sign * loss, w, allow_unused=True)[0] if loss.requires_grad else None
                if g is not None:  # None: the layer does not reach the loss
                    with torch.no_grad():
                        w.sub_(g, alpha=lr)
            copies[sign] = project_to_ball(w.detach(), w0, eps)
        totals, n = {+1.0: 0.0, -1.0: 0.0}, 0
        with torch.no_grad():  # evaluation pass: both copies on the same batches, the frozen part computed once
            for x, y in data.passes(gen):
                frozen = forward.frozen(x)
                for sign in totals:
                    totals[sign] += float(loss_fn(forward(copies[sign], frozen), y)) * len(y)
                n += len(y)
        low, high = totals[+1.0] / n, totals[-1.0] / n
        # a NaN loss never wins min/max with the running value first: ignored, as in the public code
        eval_min, eval_max = min(eval_min, low), max(eval_max, high)
    return SALResult.from_search(name, loss0, eval_max, eval_min, rounds)


class _layer_forward:
    """The model's output as a function of one layer's weight, in two parts: `frozen(x)`, what does not depend on
    the weight (the traced model's prefix up to the layer, computed once per batch, without autograd), and
    `self(w, frozen)`, the rest. The same operations in the same order as the whole model: the same numbers.
    A model torch.fx cannot split at the layer runs whole."""

    def __init__(self, model: nn.Module, name: str):
        self.model, self.name, self.key = model, name, weight_key(name)
        split = cached_split(model, name) if name else None
        self.split = split if isinstance(split, Split) else None

    def frozen(self, x: torch.Tensor):
        if self.split is None:
            return (x,)
        with torch.no_grad():
            return tuple(self.split.prefix(x))

    def __call__(self, w: torch.Tensor, frozen) -> torch.Tensor:
        if self.split is None:
            return forward_with(self.model, self.name, w, frozen[0])
        return functional_call(self.split.suffix, {self.key: w}, frozen)
