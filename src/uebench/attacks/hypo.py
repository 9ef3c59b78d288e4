"""HYPO: hypocritical perturbations (Tao, Feng, Yi, Huang, Chen. "Better Safe Than Sorry: Preventing Delusive
Adversaries with Adversarial Training", NeurIPS 2021; code: github.com/TLMichael/Delusive-Adversary, attack P2).

Error-minimising noise against a *fixed* model trained on the clean data: each image is moved, by projected
descent on the cross-entropy of its own label, to where that model is (even) more confident. Unlike EM there is
no bi-level loop: the crafting model never sees the perturbations. The victim that trains on them finds the
labels "explained" by the perturbation and learns less of the content.

Two published settings:
- the authors' code (poison.py, P2): an L2 ball of 0.5 on CIFAR-10, 100 steps of size eps/5 along the normalised
  gradient, against a VGG-16 trained 150 epochs (SGD lr 0.1, momentum 0.9, wd 5e-4, batch 128, lr x0.1 at 100 and
  125, crop + flip, on 49,000 images: 1,000 held out);
- APBench (HYPO/hypo_poisons_generate.py), the setting benchmarks report: Linf 8/255, 100 signed steps of 0.8/255
  against a clean ResNet-18, exported by rounding. This is the one implemented here (`variant` "apbench").
Both start from the clean image (no random start), keep the model in eval mode and use no augmentation.

The crafting model is trained here with the authors' recipe (150 epochs, milestones at 2/3 and 5/6 of them) on
the whole crafting set; APBench loads an unnamed checkpoint. The L2 variant is not built: an attack's norm is a
property of its class in uebench, and the Linf one is what the benchmarks compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch

from ..core.options import MAX_EPOCHS, MAX_IMAGES, MAX_STEPS, Count
from ..core.progress import progress_bar
from ..data.base import ImageDataset
from ..training.recipes import Recipe
from . import _crafting as crafting
from .base import Perturbation, register_attack


@dataclass
class HYPOConfig(crafting.ModelConfig):
    eps: float = 8 / 255
    step: float = 0.8 / 255
    steps: Annotated[int, Count(MAX_STEPS)] = 100
    pgd_batch: Annotated[int, Count(MAX_IMAGES)] = 512
    clean_epochs: Annotated[int, Count(MAX_EPOCHS, low=0)] = 150
    clean_batch_size: Annotated[int, Count(MAX_IMAGES)] = 128
    clean_lr: float = 0.1
    clean_weight_decay: float = 5e-4
    clean_augment: str = "crop_flip"
    variant: str = "apbench"  # Linf 8/255, signed steps (the authors' own default is L2 0.5: not built)


@register_attack
class HYPO(crafting.ModelAttack):
    name: ClassVar[str] = "hypo"
    description: ClassVar[str] = (
        "hypocritical perturbations: error-minimising noise against a fixed clean-trained model (Tao et al. 2021)"
    )
    Config: ClassVar[type] = HYPOConfig
    presets: ClassVar[dict] = {
        # CPU-sized: an eighth-width ResNet-18 trained 8 epochs, 20 steps of 2/255 (5x the ball, as 100 x 0.8/255
        # is 10x)
        "fast": {"width": 0.125, "clean_epochs": 8, "steps": 20, "step": 2 / 255, "pgd_batch": 256},
    }

    def check(self, c: HYPOConfig) -> None:
        crafting.positive(self.name, step=c.step, clean_lr=c.clean_lr)
        crafting.at_least(self.name, 1, steps=c.steps, clean_batch_size=c.clean_batch_size)
        crafting.at_least(self.name, 0, clean_epochs=c.clean_epochs)
        self.clean_recipe()  # an unknown clean_augment is refused here, before any training

    def clean_recipe(self) -> Recipe:
        c = self.config
        e = c.clean_epochs
        # the authors' lr x0.1 at 100 and 125 of 150 epochs
        return crafting.clean_recipe("hypo-clean", c, (round(e * 2 / 3), round(e * 5 / 6)), augment=c.clean_augment)

    def _perturb(self, ds: ImageDataset, seed: int, progress: bool) -> Perturbation:
        c = self.config
        device = crafting.resolve_device(c.device)
        compute = crafting.Compute(len(ds))
        model = crafting.train_clean_model(
            c, ds, self.clean_recipe(), c.clean_epochs, seed, device, compute, progress, "hypo: clean model"
        )
        model = crafting.eval_copy(model)  # fixed from here on: frozen, BatchNorm folded
        x, y = crafting.tensors(ds, device)
        delta = crafting.channels_last(torch.zeros_like(x))
        chunks = crafting.chunks(len(x), c.pgd_batch, device)
        bar = progress_bar(progress, len(chunks), "hypo", unit="batch")
        for idx in chunks:
            delta[idx] = crafting.pgd(
                model, x[idx], y[idx], delta[idx], eps=c.eps, step=c.step, steps=c.steps, descend=True, compute=compute
            )
            if bar:
                bar.update(1)
        if bar:
            bar.close()
        clean_loss, clean_acc = crafting.loss_and_accuracy(model, x, y, c.pgd_batch, compute)
        loss, acc = crafting.loss_and_accuracy(model, x, y, c.pgd_batch, compute, delta=delta)
        extra = {
            "crafting_model_clean_train_acc": round(clean_acc, 3),
            "crafting_model_clean_train_loss": round(clean_loss, 5),
            # how much more confident the fixed model is on the poisoned images than on the clean ones
            "crafting_model_poisoned_train_acc": round(acc, 3),
            "crafting_model_poisoned_train_loss": round(loss, 5),
        }
        return Perturbation(crafting.to_cpu(delta), compute.epochs, extra)
