"""TAP: targeted adversarial poisoning (Fowl, Goldblum, Chiang, Geiping, Czaja, Goldstein. "Adversarial
Examples Make Strong Poisons", NeurIPS 2021; code: github.com/lhfowl/adversarial_poisons, recipe `targeted`).

Train a crafting model on the clean data, then turn every training image into a targeted adversarial example
for the class permutation y -> (y + 1) mod C: the victim learns "features" of class y+1 that the images carry,
which do not generalise to clean test images. The defaults are those of the public code (options.py,
forgemaster_base.py, optimization_strategy.py, furnace.py):

  clean model    ResNet-18, 40 epochs, SGD lr 0.1 (Nesterov, momentum 0.9), wd 5e-4, batch 128, lr x0.1 at
                 epochs 14, 25 and 35 (epochs // 2.667, // 1.6, // 1.142), crop + flip augmentation;
  attack         Linf eps 8/255, `iterations` (250) passes of signed-gradient descent on the cross-entropy
                 towards (y+1) mod C, step eps * tau = 0.05 * 8/255 = 0.4/255 (their PGD rule, no decay),
                 projected onto the ball and onto valid images; batches of 512; start: Gaussian noise scaled
                 by eps and clipped ("randn"); every step through a fresh differentiable augmentation (a
                 continuous shift of up to 4 pixels with bilinear sampling, the pixels shifted in taking the
                 dataset's mean colour, and a horizontal flip);
  restarts       `restarts` (8) independent runs, keeping the one with the lowest mean target loss.

Crafting cost: 40 + 8 * 250 = 2,040 epoch-equivalents.

Restart selection (`restart_select`): "set" (the default, the public code's forgemaster_base._forge) keeps the
one restart whose mean target loss over its last pass is lowest, for the whole set (the first, on a tie, as
their argmin); "sample" lets each sample keep its own best restart by its target loss in the last pass, which
mixes restarts. Samples are independent given the fixed crafting model, so "sample" minimises the same objective
at least as well, but it is not what the published poisons are. The score is the mean over images (the public
code averages batch means: the same when the batches are equal).

Padding (`pad`): the public code augments *normalised* inputs, and grid_sample fills the pixels shifted in with
zeros, which in pixel space is the dataset's mean colour (their furnace.dm). "mean" (the default) fills with the
per-channel mean of the clean crafting set; "black" fills with 0 in pixel space.

Deviation: the clean model's training augmentation is the trainer's integer crop + flip rather than the bilinear
shift (the same distribution up to sub-pixel offsets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F

from ..core import distributed
from ..core.errors import UserError
from ..core.options import MAX_EPOCHS, MAX_IMAGES, MAX_STEPS, Count
from ..core.progress import progress_bar
from ..data.base import ImageDataset
from . import _crafting as crafting
from .base import Perturbation, register_attack

INITS = ("randn", "rand", "zero")
SELECTS = ("set", "sample")  # set: the public code's; sample: per-sample best
PADS = ("mean", "black")  # what the shifted-in pixels are: the mean colour (public code) or 0


@dataclass
class TAPConfig(crafting.ModelConfig):
    eps: float = 8 / 255
    step: float = 0.05 * 8 / 255  # tau * eps
    iterations: Annotated[int, Count(MAX_STEPS)] = 250  # passes over the crafting set per restart
    restarts: Annotated[int, Count(MAX_STEPS)] = 8
    restart_select: str = "set"  # set (public code: the restart with the lowest mean target loss) | sample
    init: str = "randn"
    augment: bool = True  # differentiable shift + flip at every attack step
    pad: str = "mean"  # mean (public code: zero in normalised space) | black (0 in pixel space)
    pgd_batch: Annotated[int, Count(MAX_IMAGES)] = 512
    clean_epochs: Annotated[int, Count(MAX_EPOCHS, low=0)] = 40
    clean_batch_size: Annotated[int, Count(MAX_IMAGES)] = 128
    clean_lr: float = 0.1
    clean_weight_decay: float = 5e-4


@register_attack
class TAP(crafting.ModelAttack):
    name: ClassVar[str] = "tap"
    description: ClassVar[str] = (
        "targeted adversarial poisoning towards (y+1) mod C against a clean-trained model, with restarts"
    )
    Config: ClassVar[type] = TAPConfig
    presets: ClassVar[dict] = {
        # CPU-sized: an eighth-width ResNet-18 trained 8 epochs, 1 restart of 30 passes with a 2.5x step
        "fast": {"width": 0.125, "clean_epochs": 8, "iterations": 30, "restarts": 1, "step": 1 / 255, "pgd_batch": 256},
    }

    def check(self, c: TAPConfig) -> None:
        crafting.positive(self.name, step=c.step, clean_lr=c.clean_lr)
        crafting.at_least(
            self.name, 1, iterations=c.iterations, restarts=c.restarts, clean_batch_size=c.clean_batch_size
        )
        crafting.at_least(self.name, 0, clean_epochs=c.clean_epochs)
        if c.init not in INITS:
            raise UserError(f"tap: unknown init '{c.init}'; valid: {', '.join(INITS)}")
        if c.restart_select not in SELECTS:
            raise UserError(f"tap: unknown restart_select '{c.restart_select}'; valid: {', '.join(SELECTS)}")
        if c.pad not in PADS:
            raise UserError(f"tap: unknown pad '{c.pad}'; valid: {', '.join(PADS)}")

    def _perturb(self, ds: ImageDataset, seed: int, progress: bool) -> Perturbation:
        c = self.config
        device = crafting.resolve_device(c.device)
        compute = crafting.Compute(len(ds))
        world = distributed.current(device)  # torchrun: DDP clean training, each process its share of the batches
        model = self._clean_model(ds, seed, device, compute, progress, world)
        x, y = crafting.tensors(ds, device)
        target = (y + 1) % ds.num_classes
        gen = crafting.generator(seed, 3)
        augment = self.augmentation(x, gen) if c.augment else None

        best = torch.empty_like(x)
        best_loss = torch.full((len(x),), float("inf"), device=device)
        restart_losses: list[float] = []
        bar = progress_bar(progress, c.restarts * c.iterations, "tap", unit="pass")
        model = crafting.eval_copy(model)  # fixed from here on: frozen, BatchNorm folded
        for _ in range(c.restarts):
            delta, losses = self._restart(model, x, target, gen, augment, compute, bar, world)
            restart_losses.append(float(losses.mean()))
            keep = select_restart(c.restart_select, losses, best_loss)
            best[keep] = delta[keep]
            best_loss = torch.where(keep, losses, best_loss)
        _, clean_acc = crafting.loss_and_accuracy(model, x, y, c.pgd_batch, compute, world=world)
        _, clean_target_acc = crafting.loss_and_accuracy(model, x, target, c.pgd_batch, compute, world=world)
        _, target_acc = crafting.loss_and_accuracy(model, x, target, c.pgd_batch, compute, delta=best, world=world)
        if bar:
            bar.close()
        extra = {
            "crafting_model_clean_train_acc": round(clean_acc, 3),
            # how often the crafting model puts an image in class (y+1) mod C: clean, then poisoned
            "crafting_model_clean_target_acc": round(clean_target_acc, 3),
            "crafting_model_target_acc": round(target_acc, 3),
            "restart_mean_target_loss": [round(v, 5) for v in restart_losses],
            "selected_mean_target_loss": round(float(best_loss.mean()), 5),
            # under "set": the index of the restart every sample took (None under "sample", which mixes them)
            "selected_restart": _selected(c.restart_select, restart_losses),
            **({"world_size": world.size} if world.distributed else {}),
        }
        epochs = float(world.total(compute.epochs)) if world.distributed else compute.epochs  # every process's work
        return Perturbation(crafting.to_cpu(best), epochs, extra)

    def augmentation(self, x: torch.Tensor, gen: torch.Generator) -> crafting.Transform:
        """The differentiable shift + flip of every attack step; shifted-in pixels take the `pad` colour."""
        fill = x.mean(dim=(0, 2, 3)) if self.config.pad == "mean" else None  # per channel, clean crafting set
        return crafting.shift_flip_transform(gen, fill=fill)

    def _clean_model(self, ds, seed, device, compute, progress, world=distributed.SINGLE):
        """The crafting model trained on clean data with the public code's recipe."""
        c = self.config
        e = c.clean_epochs
        recipe = crafting.clean_recipe("tap-clean", c, (int(e // 2.667), int(e // 1.6), int(e // 1.142)), nesterov=True)
        return crafting.train_clean_model(
            c, ds, recipe, e, seed, device, compute, progress, "tap: clean model", world=world
        )

    def _start(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        c = self.config
        if c.init == "zero":
            return crafting.channels_last(torch.zeros_like(x))
        noise = torch.randn(x.shape, generator=gen) if c.init == "randn" else torch.rand(x.shape, generator=gen) * 2 - 1
        return crafting.project(crafting.channels_last(noise.to(x.device) * c.eps), x, c.eps)

    def _restart(self, model, x, target, gen, augment, compute, bar, world=distributed.SINGLE):
        """One restart: `iterations` passes of targeted signed descent; returns delta and each sample's target
        loss in the last pass (before its last update, as the public code scores it). In a world of several
        processes each updates its share of the batches (drawing its own augmentation) and the rows are put
        together at the end."""
        c = self.config
        delta = self._start(x, gen)
        losses = torch.zeros(len(x), device=x.device)
        parts = crafting.chunks(len(x), c.pgd_batch, x.device)
        mine = parts[world.rank :: world.size]
        for it in range(c.iterations):
            last = it == c.iterations - 1
            for idx in mine:
                d = delta[idx].detach().requires_grad_(True)
                inputs = x[idx] + d
                if augment is not None:
                    inputs = augment(inputs)
                per_sample = F.cross_entropy(model(inputs), target[idx], reduction="none")
                (grad,) = torch.autograd.grad(per_sample.sum(), d)
                delta[idx] = crafting.signed_step(d.detach(), grad, c.step, c.eps, x[idx], descend=True)
                compute.fb(len(idx))
                if last:
                    losses[idx] = per_sample.detach()
            if bar:
                bar.update(1)
        if world.distributed:
            rows = torch.cat(mine) if mine else parts[0][:0]
            delta, losses = world.assemble(delta, rows), world.assemble(losses, rows)
        return delta, losses


def select_restart(rule: str, losses: torch.Tensor, best_loss: torch.Tensor) -> torch.Tensor:
    """Which samples take the new restart's delta: under "set" all of them, if its mean target loss is below the
    best mean so far (a strict <, so a tie keeps the earlier one, as the public code's argmin), else none; under
    "sample" each sample whose own loss is below its best so far. `best_loss` holds the kept losses (inf at first)."""
    if rule == "sample":
        return losses < best_loss
    return torch.full_like(losses, bool(losses.mean() < best_loss.mean()), dtype=torch.bool)


def _selected(rule: str, restart_losses: list[float]) -> int | None:
    if rule != "set":
        return None
    return min(range(len(restart_losses)), key=lambda i: (restart_losses[i], i))
