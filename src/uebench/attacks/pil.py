"""PIL: perturbation-induced linearisation (Liu, Chen, Zhang. "Perturbation-Induced Linearization: Constructing
Unlearnable Data with Solely Linear Classifiers", ICLR 2026, arXiv 2601.19967; code: github.com/jinlinll/pil at
commit 50a2803e7410a1ddb2bbca1bba49c2656c834100, main.py, attacks.py, trainer.py, models/linearmodel.py).

The paper's claim: unlearnable examples work by making a deep victim behave like a linear model, so a linear
surrogate is all the crafting needs. Two steps:

  1. surrogate   a bias-free linear classifier f trained on the clean images (no augmentation, no normalisation):
                 `clean_epochs` (30) epochs of SGD, lr 0.003, momentum 0.9, no weight decay, cosine to 0 (set once
                 per epoch), batch 512. The public code's f is two bias-free layers, d -> K -> K (`surrogate`
                 "factored", the default); the paper writes one matrix, f(x) = xW (`surrogate` "single"): the same
                 family of functions, trained along another path;
  2. noise       per image, a noise n in the Linf ball of `eps` (8/255), started uniform in the ball, then `steps`
                 (30) signed-descent steps of `step` (0.8/255) on
                     lmd * CE(f(n), y) + (1 - lmd) * KL(uniform || softmax(f(x - n))),      lmd = 0.9
                 the first term makes the noise alone a linear shortcut to the label, the second leaves the
                 surrogate nothing to read from the image that carries it ("semantic obfuscation"). The poisoned
                 image is x - n: the perturbation returned here is delta = -n.

The surrogate is frozen during step 2, and its output on one image depends on that image's noise alone, so the
noise of every image is independent of the batch it is crafted in. Crafting cost, counted in passes of the linear
surrogate (each a few ten-thousandths of a CIFAR ResNet-18's): `clean_epochs` + 2 * `steps` (two passes per step:
f(n) and f(x - n)) + 1 (the statistics in `extra`): 91 epoch-equivalents at the paper's settings.

Where this differs from the public code
- The noise is projected onto valid images from its start and at every step (x - n in [0, 1], as the other attacks
  here keep x + delta); the public code clips n to the ball only, so f sees x - n outside [0, 1] while crafting and
  the CE term sees noise that the clipped image does not carry; it clips x - n once, at the end.
- The two losses are summed over the batch rather than averaged (their ratio, and so every sign, is the same; the
  batch size then changes nothing but float rounding), and the KL term is computed from log_softmax (the public
  code's softmax(...).log() is -inf where a probability underflows).
- Any image size and channel count (the public code's linear model is sized for 3x32x32).
- The surrogate trains on seeded shuffled batches; the public code's loader walks the set in file order (CIFAR's
  files are shuffled, a class-sorted folder would not be). Its initialisation is PyTorch's default for nn.Linear
  under the crafting seed; the starting noise comes from a seeded stream over the whole set in index order (the
  public code draws it per batch from the global generator).

Presets: `paper` is the public code's defaults (the README's command). `fast` is the same: the paper's settings
already take seconds on a CPU (8-11 s for the 5,085-image CIFAR-10 subset on one busy thread), as a surrogate
pass is one matrix product, so a poison crafted at `fast` is the paper's.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import UserError
from ..core.options import MAX_EPOCHS, MAX_IMAGES, MAX_STEPS, Count, Within
from ..core.progress import progress_bar
from ..core.seeds import seeded
from ..data.base import ImageDataset
from ..training.fit import fit
from ..training.recipes import Recipe
from ..training.trainer import ClassificationStep, make_optimizer, prepare
from . import _crafting as crafting
from .base import Attack, Perturbation, register_attack

SURROGATES = ("factored", "single")  # factored: d -> K -> K, both bias-free (public code); single: d -> K (paper)
INITS = ("uniform", "zero")  # the noise's start: uniform in the ball (public code) or zero


@dataclass
class PILConfig:
    eps: float = 8 / 255  # Linf budget, [0,1] pixel units
    step: float = 0.8 / 255  # the public code's alpha = 8/2550
    steps: Annotated[int, Count(MAX_STEPS)] = 30  # signed-descent steps on every image's noise (--attack_iter)
    lmd: Annotated[float, Within(0.0, 1.0)] = 0.9  # weight of the shortcut term; 1 - lmd weighs the KL term
    init: str = "uniform"  # uniform (in the ball, public code) | zero
    surrogate: str = "factored"  # factored (public code: two bias-free layers, d -> K -> K) | single (one matrix)
    clean_epochs: Annotated[int, Count(MAX_EPOCHS, low=0)] = 30  # the surrogate's training (--pretrain_iter)
    clean_batch_size: Annotated[int, Count(MAX_IMAGES)] = 512
    clean_lr: float = 0.003  # --lr_train; cosine to 0 over clean_epochs
    clean_momentum: Annotated[float, Within(0.0, 0.999)] = 0.9
    clean_weight_decay: float = 0.0
    pgd_batch: Annotated[int, Count(MAX_IMAGES)] = 512  # images per noise batch: speed (and float rounding) only
    device: str = "auto"  # auto | cpu | cuda[:N]
    # fp32 | bf16 | auto, as the other crafting models (_crafting.ModelConfig), but fp32 by default: the surrogate's
    # first layer reads the input in fp32 under bf16 (_crafting.ExactLinear), so bf16 only touches the K x K layer
    # of "factored" and saves nothing, while PIL crafted so was learned less (docs/results/efficacy.md)
    precision: str = "fp32"


class LinearSurrogate(nn.Module):
    """A bias-free linear classifier on the flattened image: fc2(fc1(x)) ("factored", the public code's
    LinearModel, layer names kept) or fc1(x) ("single")."""

    def __init__(self, in_features: int, num_classes: int, factored: bool):
        super().__init__()
        self.fc1 = nn.Linear(in_features, num_classes, bias=False)
        self.fc2 = nn.Linear(num_classes, num_classes, bias=False) if factored else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc1(x.flatten(1))
        return out if self.fc2 is None else self.fc2(out)


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(uniform || softmax(logits)) of every row: -log K - mean_k log p_k (0 for a flat prediction)."""
    return -F.log_softmax(logits.float(), dim=1).mean(dim=1) - math.log(logits.shape[1])


def pil_loss(model: nn.Module, x: torch.Tensor, delta: torch.Tensor, y: torch.Tensor, lmd: float) -> torch.Tensor:
    """The PIL objective of a batch, summed over it: the noise n = -delta alone predicts y (CE), and the poisoned
    image x + delta = x - n leaves the surrogate undecided (KL to the uniform prediction)."""
    shortcut = F.cross_entropy(model(-delta).float(), y, reduction="sum")
    obfuscation = kl_to_uniform(model(x + delta)).sum()
    return lmd * shortcut + (1 - lmd) * obfuscation


@register_attack
class PIL(Attack):
    name: ClassVar[str] = "pil"
    norm: ClassVar[str] = "linf"
    description: ClassVar[str] = (
        "perturbation-induced linearisation: noise a bias-free linear surrogate reads as the label (Liu et al. 2026)"
    )
    Config: ClassVar[type] = PILConfig
    presets: ClassVar[dict] = {
        # the paper's settings: seconds on a CPU already (module note)
        "fast": {},
    }

    def budget(self) -> float:
        return self.config.eps

    def validate(self, ds: ImageDataset) -> None:
        c = self.config
        crafting.positive(self.name, eps=c.eps)  # a number before the base class compares it
        super().validate(ds)
        crafting.positive(self.name, step=c.step, clean_lr=c.clean_lr)
        crafting.at_least(self.name, 1, steps=c.steps, clean_batch_size=c.clean_batch_size, pgd_batch=c.pgd_batch)
        crafting.at_least(self.name, 0, clean_epochs=c.clean_epochs)
        for key, low, high in (("lmd", 0.0, 1.0), ("clean_momentum", 0.0, 0.999)):
            v = getattr(c, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
                raise UserError(f"pil: {key} must be a number in [{low}, {high}], got {v!r}")
        wd = c.clean_weight_decay
        if isinstance(wd, bool) or not isinstance(wd, (int, float)) or not (math.isfinite(wd) and wd >= 0):
            raise UserError(f"pil: clean_weight_decay must be a finite number >= 0, got {wd!r}")
        if c.surrogate not in SURROGATES:
            raise UserError(f"pil: unknown surrogate '{c.surrogate}'; valid: {', '.join(SURROGATES)}")
        if c.init not in INITS:
            raise UserError(f"pil: unknown init '{c.init}'; valid: {', '.join(INITS)}")
        if ds.num_classes < 2:
            raise UserError(f"pil: needs at least 2 classes to train its classifier, {ds.name} has {ds.num_classes}")
        crafting.crafting_precision(c.precision, crafting.resolve_device(c.device))

    def perturb(self, ds: ImageDataset, *, seed: int, progress: bool) -> Perturbation:
        with crafting.precision_context(self.config):
            return crafting.in_index_order(ds, lambda d: self._perturb(d, seed, progress))

    def _perturb(self, ds: ImageDataset, seed: int, progress: bool) -> Perturbation:
        c = self.config
        device = crafting.resolve_device(c.device)
        compute = crafting.Compute(len(ds))
        model = self.train_surrogate(ds, seed, device, compute, progress)
        for p in model.parameters():
            p.requires_grad_(False)
        images, y = ds.images.to(device), ds.labels.to(device)  # uint8 on the device; a batch is made float when used
        gen = crafting.generator(seed, 1)
        if c.init == "uniform":
            start = (torch.rand(ds.images.shape, generator=gen) * 2 - 1) * c.eps
        else:
            start = torch.zeros(ds.images.shape)
        delta = torch.empty(ds.images.shape)  # on the host: what craft() takes back
        parts = crafting.chunks(len(ds), c.pgd_batch, device)
        bar = progress_bar(progress, len(parts), "pil: noise", unit="batch")
        for idx in parts:
            x = prepare(images[idx], device, channels_last=False)
            d = crafting.project(start[idx.cpu()].to(device), x, c.eps)
            for _ in range(c.steps):
                d = d.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(pil_loss(model, x, d, y[idx], c.lmd), d)
                d = crafting.signed_step(d.detach(), grad, c.step, c.eps, x, descend=True)
                compute.fb(2 * len(idx))  # two surrogate passes per step: f(n) and f(x - n)
            delta[idx.cpu()] = d.detach().float().cpu()
            if bar:
                bar.update(1)
        if bar:
            bar.close()
        extra = self.statistics(model, images, y, delta, compute)
        return Perturbation(delta.contiguous(), compute.epochs, extra)

    def train_surrogate(
        self, ds: ImageDataset, seed: int, device: torch.device, compute: crafting.Compute, progress: bool
    ) -> nn.Module:
        """The bias-free linear classifier trained on the clean images (the one training loop, training.fit)."""
        c = self.config
        with seeded(seed):  # its initialisation depends on the seed only
            model = LinearSurrogate(math.prod(ds.shape), ds.num_classes, c.surrogate == "factored")
        model = crafting.exact_input(model.to(device), c)
        if c.clean_epochs == 0:
            return model.eval()
        recipe = Recipe(
            "pil-surrogate",
            c.clean_epochs,
            c.clean_batch_size,
            c.clean_lr,
            momentum=c.clean_momentum,
            weight_decay=c.clean_weight_decay,
            schedule="cosine",
            augment="none",
        )
        step = ClassificationStep(ds, recipe.augment, device, contextlib.nullcontext, False)
        fit(
            model,
            make_optimizer(model, recipe),
            step,
            len(ds),
            epochs=recipe.epochs,
            batch_size=recipe.batch_size,
            lr_at=recipe.lr_at,
            seed=seed,
            after_epoch=lambda _epoch, _record: compute.fb(len(ds)),
            desc="pil: surrogate" if progress else None,
            postfix=lambda r: {"acc": f"{r['train_acc']:.1f}%"},
            epoch_rng=lambda epoch: crafting.generator(seed, 100 + epoch),
        )
        return model.eval()

    @torch.no_grad()
    def statistics(
        self, model: nn.Module, images: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, compute: crafting.Compute
    ) -> dict:
        """What the surrogate makes of the clean images, the poisoned ones and the noise alone."""
        device = images.device
        sums = dict.fromkeys(("clean", "poisoned", "noise", "clean_kl", "poisoned_kl"), 0.0)
        for idx in crafting.chunks(len(images), self.config.pgd_batch, device):
            x = prepare(images[idx], device, channels_last=False)
            d = delta[idx.cpu()].to(device)
            clean, poisoned, noise = model(x), model((x + d).clamp_(0, 1)), model(-d)
            for key, out in (("clean", clean), ("poisoned", poisoned), ("noise", noise)):
                sums[key] += float((out.argmax(1) == y[idx]).sum())
            sums["clean_kl"] += float(kl_to_uniform(clean).sum())
            sums["poisoned_kl"] += float(kl_to_uniform(poisoned).sum())
            compute.fwd(3 * len(idx))
        n = max(len(images), 1)
        return {
            "surrogate_clean_train_acc": round(100 * sums["clean"] / n, 3),
            "surrogate_poisoned_train_acc": round(100 * sums["poisoned"] / n, 3),
            # how well the noise alone (n = -delta) gives the label away: the shortcut
            "surrogate_noise_acc": round(100 * sums["noise"] / n, 3),
            # KL(uniform || the surrogate's prediction), mean over images: how much it reads from the image
            "surrogate_clean_kl": round(sums["clean_kl"] / n, 5),
            "surrogate_poisoned_kl": round(sums["poisoned_kl"] / n, 5),
        }
