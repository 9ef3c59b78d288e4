"""EM: error-minimising noise (Huang, Ma, Erfani, Bailey, Wang. "Unlearnable Examples: Making Personal Data
Unexploitable", ICLR 2021; code: github.com/HanxunH/Unlearnable-Examples).

The noise solves the min-min bi-level problem  min_theta E[ min_{||delta||_inf <= eps} L(f_theta(x + delta), y) ]:
the crafting model and the noise both *minimise* the training loss, so the noise becomes a shortcut that the
model can fit instead of the images. It alternates

  1. `train_steps` (10) SGD steps of the crafting model (ResNet-18, lr 0.1, momentum 0.9, wd 5e-4, gradient
     clipping at norm 5, batch 512, no augmentation) on x + delta;
  2. `steps` (20) signed-descent steps of `step` (0.8/255) on the noise of every sample, projected onto the
     Linf ball of `eps` (8/255) and onto valid images, with the model frozen in eval mode (class-wise: below);

and stops once the crafting model's accuracy on the perturbed data reaches `stop_acc` (99%: the paper's
stopping rule, error below 0.01). The noise starts at zero, as in the public code (no --random_start).

Variants (`mode`):
  samplewise  one delta per image; delta[i] is only ever computed from and applied to image i (the public code's
              bug class, class-wise noise indexed where sample-wise was meant, cannot happen: the noise tensor is
              aligned with the crafting set, and batches index both with the same indices).
  classwise   one delta per class, applied to every image of that class. Its noise step (`classwise_update`):
              "mean"  (the default: the public code's perturbation.py, universal_perturbation with --use_subset,
                      and toolbox.min_min_attack) once per round, one pass over a fixed, stratified
                      `classwise_portion` (20%) of the crafting set, drawn once per seed, in shuffled batches of
                      `batch_size` (512; the last partial batch dropped, as their loader): every sample of the
                      batch starts from its class's delta, takes `steps` (1, their --num_steps) signed steps of
                      its own (the input x + delta clipped to valid images, the delta to the ball), and then each
                      class's delta becomes the mean of its samples' results, clipped to the ball, before the next
                      batch. The class delta moves by `step` times the mean of the per-sample gradient signs.
              "sign"  `steps` (20) signed steps per batch on the sign of the gradient summed over the batch's
                      images of the class, over the whole crafting set (a uebench variant; the summed
                      gradient follows the images with the largest gradients, the mean of signs the majority).
              `steps` left at None means 20 (sample-wise, and class-wise "sign") or 1 (class-wise "mean").

Deviations from the public code, none of which changes the method: model-update batches come from a seeded
shuffle, full batches only (the public code walks the data in file order, which would put one class per batch
on class-sorted folders); x + delta is kept inside [0,1] everywhere (the public code lets training inputs exceed 1 by a
step); the public class-wise command stops at 90% accuracy measured on its 20% subset (--universal_stop_error 0.1),
whereas here every variant uses the paper's rule, `stop_acc` (99%) on the whole crafting set (set `stop_acc=90`
for the public command's threshold); its seeded random subset comes from sklearn's train_test_split, here from
round(portion * class size) images of each class (at least 1), drawn with the seed.
`max_rounds` is a safety cap the paper does not have; `extra` records whether the rule or the cap stopped it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch

from ..core import distributed
from ..core.errors import UserError
from ..core.options import MAX_IMAGES, MAX_STEPS, Count
from ..core.progress import progress_bar
from ..data.base import ImageDataset
from . import _crafting as crafting
from .base import Perturbation, register_attack

MODES = ("samplewise", "classwise")
# class-wise noise steps: the mean of per-sample signed steps (public code), or a step on the summed gradient
CLASSWISE_UPDATES = ("mean", "sign")


@dataclass
class EMConfig(crafting.ModelConfig):
    mode: str = "samplewise"
    eps: float = 8 / 255
    step: float = 0.8 / 255
    steps: Annotated[int | None, Count(MAX_STEPS)] = (
        None  # noise steps per sample per round; None: 20 (the paper), 1 for class-wise "mean"
    )
    train_steps: Annotated[int, Count(MAX_STEPS)] = 10  # model SGD steps per round
    batch_size: Annotated[int, Count(MAX_IMAGES)] = 512  # model-update batch (the public code's default)
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float = 5.0
    stop_acc: float = 99.0  # stop once the crafting model's accuracy on x + delta reaches this (%)
    max_rounds: Annotated[int, Count(MAX_STEPS)] = (
        1000  # safety cap on rounds (train_steps model steps + one noise pass each)
    )
    classwise_update: str = "mean"  # class-wise only: mean (public code) | sign (of the summed gradient)
    classwise_portion: float = 0.2  # class-wise "mean" only: the stratified share of the set it updates on

    def __post_init__(self) -> None:
        if self.steps is None:  # the paper's 20; the public class-wise command takes one step per sample
            self.steps = 1 if (self.mode, self.classwise_update) == ("classwise", "mean") else 20


@register_attack
class EM(crafting.ModelAttack):
    name: ClassVar[str] = "em"
    description: ClassVar[str] = (
        "error-minimising noise (min-min bi-level), sample-wise or class-wise, stops at 99% train acc"
    )
    Config: ClassVar[type] = EMConfig
    presets: ClassVar[dict] = {
        # CPU-sized: an eighth-width ResNet-18, fewer (but longer) noise steps, at most 8 rounds
        "fast": {"width": 0.125, "steps": 10, "step": 1.6 / 255, "batch_size": 256, "max_rounds": 8},
    }

    # self.objective None: a classifier and cross-entropy (the paper). A multi-task objective
    # (uebench.experiments.crosstask) makes the noise minimise the sum of task losses instead; everything else (rounds,
    # steps, budget, stop) is unchanged.
    accepts_objective = True

    def check(self, c: EMConfig) -> None:
        if c.mode not in MODES:
            raise UserError(f"em: unknown mode '{c.mode}'; valid: {', '.join(MODES)}")
        if c.classwise_update not in CLASSWISE_UPDATES:
            valid = ", ".join(CLASSWISE_UPDATES)
            raise UserError(f"em: unknown classwise_update '{c.classwise_update}'; valid: {valid}")
        p = c.classwise_portion
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise UserError(f"em: classwise_portion is a share of the crafting set, in (0, 1]; got {p!r}")
        crafting.positive(self.name, step=c.step, lr=c.lr, grad_clip=c.grad_clip)
        crafting.at_least(
            self.name, 1, steps=c.steps, train_steps=c.train_steps, batch_size=c.batch_size, max_rounds=c.max_rounds
        )
        if isinstance(c.stop_acc, bool) or not isinstance(c.stop_acc, (int, float)) or not 0 < c.stop_acc <= 100:
            raise UserError(f"em: stop_acc is a training accuracy in percent, in (0, 100]; got {c.stop_acc}")

    def _perturb(self, ds: ImageDataset, seed: int, progress: bool) -> Perturbation:
        c = self.config
        device = crafting.resolve_device(c.device)
        host = crafting.keep_on_host(ds, device)  # a set too large for the device (ImageNet-100) stays on the host
        world = distributed.current(device)  # torchrun: data-parallel training steps and sample-wise noise rounds
        if world.distributed and (host or c.batch_size % world.size):
            raise UserError(
                f"em under torchrun needs a batch size ({c.batch_size}) that {world.size} processes divide, "
                "and a crafting set that fits the device"
            )
        x, y = crafting.resident(ds, device, host)
        obj = self.objective
        t = y if obj is None else obj.targets(ds, device)  # what the loss compares the output with
        model = (
            crafting.build_model(c, ds, seed, device)
            if obj is None
            else crafting.exact_input(obj.build_model(c, ds, seed, device), c)
        )
        opt = crafting.sgd(model, c.lr, c.momentum, c.weight_decay)
        stepped = distributed.wrap(model, world, device)  # what the training steps run through (DDP, or the model)
        # full batches only: a trailing batch of one image would break BatchNorm, and each pass reshuffles
        batches = crafting.shuffled_batches(len(x), c.batch_size, crafting.generator(seed, 1), device, drop_last=True)
        compute = crafting.Compute(len(x))
        classwise = c.mode == "classwise"
        mean_rule = classwise and c.classwise_update == "mean"
        subset = stratified_indices(y, c.classwise_portion, crafting.generator(seed, 2)) if mean_rule else None
        subset_gen = crafting.generator(seed, 3)  # the per-round shuffle of the subset
        # zero start, as the public code: sample-wise (N, C, H, W) or class-wise (classes, C, H, W)
        if classwise:
            noise = crafting.channels_last(torch.zeros((ds.num_classes, *x.shape[1:]), device=device))
        else:
            noise = crafting.rows_like(x, device)

        bar = progress_bar(progress, c.max_rounds, f"em ({c.mode})", unit="round")
        history: list[float] = []
        stopped = "max_rounds"
        for _ in range(c.max_rounds):
            for _ in range(c.train_steps):
                idx = world.share(next(batches))
                delta_b = noise[y[idx]] if classwise else noise[idx]
                crafting.train_step(
                    stepped, opt, (x[idx] + delta_b).clamp(0, 1), t[idx], compute, c.grad_clip, objective=obj
                )
            frozen = self.frozen(model)
            if mean_rule:
                noise = self._classwise_mean_round(frozen, x, y, noise, compute, t, subset, subset_gen)
            elif classwise:
                noise = self._classwise_round(frozen, x, y, noise, compute, t)
            else:
                noise = self._samplewise_round(frozen, x, t, noise, compute, world)
            loss, acc = crafting.loss_and_accuracy(
                frozen, x, t, c.pgd_batch, compute, delta=_full(noise, y, classwise), objective=obj, world=world
            )
            history.append(round(acc, 3))
            if bar:
                bar.update(1)
                bar.set_postfix(acc=f"{acc:.1f}%")
            if acc >= c.stop_acc:
                stopped = "accuracy"
                break
        if bar:
            bar.close()
        delta = _full(noise, y, classwise)
        clean_loss, clean_acc = crafting.loss_and_accuracy(
            frozen, x, t, c.pgd_batch, compute, objective=obj, world=world
        )
        extra = {
            "mode": c.mode,
            **({"classwise_update": c.classwise_update} if classwise else {}),
            **({"classwise_subset": len(subset)} if mean_rule else {}),
            "rounds": len(history),
            "stopped_by": stopped,  # "accuracy": the paper's rule; "max_rounds": the safety cap
            "final_crafting_acc": history[-1],
            "crafting_acc_history": history,
            # the crafting model's loss on x + delta against its loss on the clean images: error minimised
            "final_crafting_loss": round(loss, 5),
            "clean_loss": round(clean_loss, 5),
            "clean_acc": round(clean_acc, 3),
            **({"host_resident": True} if host else {}),
            **({"world_size": world.size} if world.distributed else {}),
        }
        epochs = float(world.total(compute.epochs)) if world.distributed else compute.epochs  # every process's work
        return Perturbation(crafting.to_cpu(delta), epochs, extra)

    def frozen(self, model):
        """The fixed crafting model of a noise pass (and of the accuracy check that may stop the rounds)."""
        return crafting.eval_copy(model)

    def _samplewise_round(self, model, x, y, noise, compute, world=distributed.SINGLE):
        """`steps` signed-descent steps on every sample's own delta, a batch at a time (rows stay aligned); in a
        world of several processes each takes its share of the batches and the rows are put together after."""
        c = self.config
        parts = crafting.chunks(len(x), c.pgd_batch, x.device)
        mine = parts[world.rank :: world.size]
        for idx in mine:
            noise[idx] = self._descend(model, x[idx], y[idx], noise[idx], compute)
        if world.distributed:
            noise = world.assemble(noise, torch.cat(mine) if mine else parts[0][:0])
        return noise

    def _descend(self, model, xb, yb, delta, compute) -> torch.Tensor:
        """One batch's deltas after `steps` signed steps down the crafting loss."""
        c = self.config
        return crafting.pgd(
            model,
            xb,
            yb,
            delta,
            eps=c.eps,
            step=c.step,
            steps=c.steps,
            descend=True,
            compute=compute,
            objective=self.objective,
        )

    def _classwise_mean_round(self, model, x, y, noise, compute, t, subset, gen):
        """The public code's class-wise step: one shuffled pass over `subset`; per batch, every sample takes
        `steps` signed steps from its class's delta, and each class present takes the mean of its samples'
        deltas (clipped to the ball) before the next batch."""
        c = self.config
        t = y if t is None else t
        perm = subset[torch.randperm(len(subset), generator=gen).to(subset.device)]
        parts = perm.split(c.batch_size)
        if len(parts) > 1 and len(parts[-1]) < c.batch_size:
            parts = parts[:-1]  # their loader's drop_last; each pass reshuffles, so every image takes part
        for idx in parts:
            xb, yb = x[idx], y[idx]
            eta = noise[yb]  # each sample's own copy of its class's delta
            for _ in range(c.steps):
                d = ((xb + eta).clamp(0, 1) - xb).detach().requires_grad_(True)  # the input the model sees
                (grad,) = torch.autograd.grad(crafting.loss_sum(model, xb + d, t[idx], self.objective), d)
                with torch.no_grad():
                    eta = (d - c.step * grad.sign()).clamp_(-c.eps, c.eps)  # the ball, not the image range, as theirs
                compute.fb(len(idx))
            noise = class_mean(noise, eta.detach(), yb, c.eps)
        return noise

    def _classwise_round(self, model, x, y, noise, compute, t=None):
        """The "sign" rule: `steps` signed-descent steps per batch on the class deltas; the gradient of delta_c
        sums over the batch's images of class c (autograd does it through the gather noise[y])."""
        c = self.config
        for idx in crafting.chunks(len(x), c.pgd_batch, x.device):
            xb, yb = x[idx], y[idx]
            tb = yb if t is None else t[idx]
            for _ in range(c.steps):
                d = noise.detach().requires_grad_(True)
                inputs = (xb + d[yb]).clamp(0, 1)
                (grad,) = torch.autograd.grad(crafting.loss_sum(model, inputs, tb, self.objective), d)
                with torch.no_grad():
                    # classes absent from this batch have a zero gradient, and sign(0) = 0 leaves them alone
                    noise = (d.detach() - c.step * grad.sign()).clamp_(-c.eps, c.eps)
                compute.fb(len(idx))
        return noise


def class_mean(noise: torch.Tensor, eta: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """`noise` with each class present in `y` replaced by the mean of its rows of `eta`, clipped to the ball;
    classes absent from the batch keep their delta."""
    sums = torch.zeros_like(noise).index_add_(0, y, eta)
    counts = torch.bincount(y, minlength=len(noise))
    present = counts > 0
    out = noise.clone()
    out[present] = (sums[present] / counts[present].view(-1, 1, 1, 1).to(sums.dtype)).clamp_(-eps, eps)
    return crafting.channels_last(out)


def stratified_indices(y: torch.Tensor, portion: float, gen: torch.Generator) -> torch.Tensor:
    """A seeded share of each class's images: round(portion * class size), at least 1, in index order."""
    picks = []
    for cls in torch.unique(y).tolist():
        rows = torch.nonzero(y == cls).flatten()
        k = max(1, round(portion * len(rows)))
        picks.append(rows[torch.randperm(len(rows), generator=gen)[:k].to(rows.device)])
    return torch.cat(picks).sort().values


def _full(noise: torch.Tensor, y: torch.Tensor, classwise: bool) -> torch.Tensor:
    """The per-image perturbation: row i is image i's delta (class-wise: its class's delta)."""
    return noise[y] if classwise else noise
