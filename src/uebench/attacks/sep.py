"""SEP: self-ensemble protection (Chen, Yuan, Cheng, Gong, Qin, Wang, Huang. "Self-Ensemble Protection: Training
Checkpoints Are Good Data Protectors", ICLR 2023; code: github.com/Sizhe-Chen/SEP, ens.py).

One clean training run, many models: the checkpoints of a crafting model's own training form an ensemble, and every
image becomes a targeted adversarial example against all of them at once, towards the class (y + K/2) mod K. An
image no checkpoint of training ever gets right teaches a victim features that do not generalise. The paper finds
the checkpoints' input gradients nearly orthogonal, as diverse as models of different architectures.

The recipe of the public code (vanilla.py for the run, ens.py for the attack; the plain SEP, not SEP-FA-VR):
  crafting run   ResNet-18, 120 epochs, SGD lr 0.1 (momentum 0.9, wd 5e-4), batch 128, lr x0.1 at 75 and 90;
  ensemble       `models` (30) checkpoints spread evenly over the run: of `models` equal stretches of the saved
                 checkpoints, the last of each;
  attack         `iterations` (30) signed-descent steps of `step` (1/255) on the mean over the checkpoints of the
                 cross-entropy towards (y + K/2) mod K, each checkpoint in eval mode, from the clean image (no
                 random start), projected onto the Linf ball of `eps` (2/255, the paper's headline budget; it
                 reports 8/255 too) and onto valid images.

Where this differs from the public code: its run keeps a checkpoint only when test accuracy improves (a crafter
here has no test set), so here every epoch's model is a candidate and the `models` are chosen among all `clean_epochs`
of them; its first epoch warms the lr up linearly from 0.001 (here: constant from the start). SEP-FA (feature
alignment) and SEP-FA-VR (variance reduction), the paper's stronger variants, are not built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F

from ..core.options import MAX_EPOCHS, MAX_IMAGES, MAX_STEPS, Count
from ..core.progress import progress_bar
from ..data.base import ImageDataset
from ..training.recipes import Recipe
from . import _crafting as crafting
from .base import Perturbation, register_attack


@dataclass
class SEPConfig(crafting.ModelConfig):
    eps: float = 2 / 255
    step: float = 1 / 255
    iterations: Annotated[int, Count(MAX_STEPS)] = 30
    models: Annotated[int, Count(MAX_STEPS)] = 30  # checkpoints in the ensemble
    pgd_batch: Annotated[int, Count(MAX_IMAGES)] = 512
    # fp32 by default: SEP crafted in bf16 was learned less on both seeds measured (docs/results/efficacy.md)
    precision: str = "fp32"
    clean_epochs: Annotated[int, Count(MAX_EPOCHS)] = 120
    clean_batch_size: Annotated[int, Count(MAX_IMAGES)] = 128
    clean_lr: float = 0.1
    clean_weight_decay: float = 5e-4


def spread(n: int, k: int) -> list[int]:
    """Which k of n checkpoints (0-based, in training order) the ensemble takes: the last of each of k equal
    stretches (the public code's ckpts[interval - 1 :: interval] with interval = n // k, trimmed to k)."""
    k = min(k, n)
    interval = n // k
    return list(range(interval - 1, n, interval))[-k:] if interval else list(range(n))


@register_attack
class SEP(crafting.ModelAttack):
    name: ClassVar[str] = "sep"
    description: ClassVar[str] = (
        "self-ensemble protection: targeted perturbations towards (y + K/2) mod K against a run's own checkpoints"
    )
    Config: ClassVar[type] = SEPConfig
    presets: ClassVar[dict] = {
        # CPU-sized: an eighth-width ResNet-18 trained 10 epochs, every second epoch's model in the ensemble (the first
        # epochs' near-chance models would steer the mean gradient)
        "fast": {"width": 0.125, "clean_epochs": 10, "models": 5, "iterations": 20, "pgd_batch": 256},
    }

    def check(self, c: SEPConfig) -> None:
        crafting.positive(self.name, step=c.step, clean_lr=c.clean_lr)
        crafting.at_least(
            self.name,
            1,
            iterations=c.iterations,
            models=c.models,
            clean_epochs=c.clean_epochs,
            clean_batch_size=c.clean_batch_size,
        )

    def clean_recipe(self) -> Recipe:
        c = self.config
        e = c.clean_epochs
        # the public code's lr x0.1 at 75 and 90 of 120 epochs
        return crafting.clean_recipe("sep-clean", c, (round(e * 75 / 120), round(e * 90 / 120)))

    def _perturb(self, ds: ImageDataset, seed: int, progress: bool) -> Perturbation:
        c = self.config
        device = crafting.resolve_device(c.device)
        compute = crafting.Compute(len(ds))
        keep = set(spread(c.clean_epochs, c.models))
        snapshots: list[torch.nn.Module] = []

        def snapshot(epoch: int, model: torch.nn.Module) -> None:
            if epoch in keep:
                snapshots.append(crafting.eval_copy(model))  # a frozen copy: training goes on

        crafting.train_clean_model(
            c, ds, self.clean_recipe(), c.clean_epochs, seed, device, compute, progress, "sep: clean run", snapshot
        )
        x, y = crafting.tensors(ds, device)
        target = (y + ds.num_classes // 2) % ds.num_classes
        delta = crafting.channels_last(torch.zeros_like(x))
        chunks = crafting.chunks(len(x), c.pgd_batch, device)
        bar = progress_bar(progress, c.iterations, "sep", unit="step")
        for _ in range(c.iterations):
            for idx in chunks:
                d = delta[idx].detach().requires_grad_(True)
                loss = ensemble_loss(snapshots, x[idx] + d, target[idx])
                (grad,) = torch.autograd.grad(loss, d)
                delta[idx] = crafting.signed_step(d.detach(), grad, c.step, c.eps, x[idx], descend=True)
                compute.fb(len(idx) * len(snapshots))
            if bar:
                bar.update(1)
        if bar:
            bar.close()
        hits = [crafting.loss_and_accuracy(m, x, target, c.pgd_batch, compute, delta=delta) for m in snapshots]
        clean = [crafting.loss_and_accuracy(m, x, y, c.pgd_batch, compute)[1] for m in snapshots]
        clean_hits = [crafting.loss_and_accuracy(m, x, target, c.pgd_batch, compute) for m in snapshots]
        extra = {
            "ensemble_epochs": sorted(e + 1 for e in keep),
            # per checkpoint: accuracy on the clean images, how often it puts a clean and a poisoned image in the
            # target class, and its cross-entropy towards the target on both (the loss the attack descends)
            "checkpoint_clean_train_acc": [round(a, 3) for a in clean],
            "checkpoint_clean_target_acc": [round(a, 3) for _, a in clean_hits],
            "checkpoint_target_acc": [round(a, 3) for _, a in hits],
            "checkpoint_clean_target_loss": [round(loss, 4) for loss, _ in clean_hits],
            "checkpoint_target_loss": [round(loss, 4) for loss, _ in hits],
        }
        return Perturbation(crafting.to_cpu(delta), compute.epochs, extra)


def ensemble_loss(models: list[torch.nn.Module], inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The mean over models of the summed cross-entropy towards `target` (the public code averages the models'
    gradients of their losses: the same sign)."""
    return sum(F.cross_entropy(m(inputs), target, reduction="sum") for m in models) / len(models)
