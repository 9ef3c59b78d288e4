"""Orthogonal projection (Sandoval-Segura et al., NeurIPS 2023, "What Can We Learn from Unlearnable Datasets?",
Algorithm 1; psandovalsegura/learn-from-unlearnable at 605dea2, orthogonal_projection_step_1.py, step_2.py and
utils_projection.py): learn a linear model on the poisoned training set, then remove its class directions from every
training image before training.

1. Fit: a bias-free linear classifier on the flattened training images in [0, 1] (no normalisation, no
   augmentation), cross-entropy, plain SGD at lr 0.1 (no momentum, no weight decay), batches of 1024 in dataset order
   (the code's DataLoader does not shuffle), 20 epochs, lr x 0.1 at 50% and 75% of them; weights initialised as
   torch's nn.Linear does, U(-1/sqrt(d), 1/sqrt(d)), from `seed`.
2. Project: the C class weight vectors, each normalised, are orthonormalised by a QR decomposition (Q, d x C); every
   training image x becomes x - Q Q^T x (the code subtracts the C projections one by one, the same map).

Deviations: the projected images are held as uint8 here, like every training set in uebench, so x - Q Q^T x is rounded
to whole pixel values and clipped to [0, 255]; the code trains on the float projection, which leaves [0, 1]. The share
of clipped values is recorded (`meta["ortho_clipped"]`). On a subset, batch 1024 gives the linear model a tenth of the
paper's ~980 steps and the projection misses the class-wise poisons; `batch_size=128` on 5,000 images restores the steps
(docs/results/efficacy.md). The code trains its ResNet-18 after the projection with its own strong augmentation and
input normalisation; that is the victim's recipe, not the defense, and is not part of it. Memory stays bounded: images
are made float one batch at a time. Test images are untouched unless `test=true` (the code's --project-test flag is
parsed but not used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F

from ..core.options import MAX_EPOCHS, MAX_IMAGES, MAX_SEED, Count
from ..data.base import ImageDataset
from .base import PreprocessDefense, check, check_type, map_images, register_defense


def fit_linear(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> torch.Tensor:
    """The class weight vectors (C, d) of a bias-free linear classifier trained on uint8 images scaled to [0, 1]."""
    n = len(images)
    d = images[0].numel()
    g = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(d)
    w = ((torch.rand(num_classes, d, generator=g, dtype=torch.float32) * 2 - 1) * bound).requires_grad_()
    milestones = [int(epochs * 0.5), int(epochs * 0.75)]  # MultiStepLR's; one at epoch 0 never fires there
    for epoch in range(epochs):
        step = lr * 0.1 ** sum(1 for m in milestones if 1 <= m <= epoch)
        for i in range(0, n, batch_size):
            x = images[i : i + batch_size].reshape(-1, d).float().div_(255)
            loss = F.cross_entropy(x @ w.t(), labels[i : i + batch_size])
            (grad,) = torch.autograd.grad(loss, w)
            with torch.no_grad():
                w -= step * grad
    return w.detach()


def class_basis(weights: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (d, C) of the span of the class weight vectors (each normalised first, then QR)."""
    unit = weights.double() / weights.double().norm(dim=1, keepdim=True)
    q, _ = torch.linalg.qr(unit.t())
    return q


def project_out(images: torch.Tensor, basis: torch.Tensor) -> tuple[torch.Tensor, int]:
    """uint8 images (n, C, H, W) -> uint8 images with the span of `basis` removed (x - Q Q^T x on [0, 1] values),
    rounded and clipped; and how many values the clip changed."""
    n = len(images)
    x = images.reshape(n, -1).double() / 255
    y = (x - (x @ basis) @ basis.t()) * 255
    clipped = int(((y < -0.5) | (y > 255.5)).sum())
    return y.round_().clamp_(0, 255).to(torch.uint8).reshape(images.shape), clipped


@register_defense
class OrthoProjection(PreprocessDefense):
    name = "ortho-proj"
    description = "orthogonal projection: fit a linear classifier on the training set, project its class directions out"
    source = (
        "Sandoval-Segura et al. NeurIPS 2023, psandovalsegura/learn-from-unlearnable at 605dea2: linear model "
        "(no bias, SGD lr 0.1, batch 1024, 20 epochs), QR of its normalised class weights, x - QQ^T x"
    )

    @dataclass
    class Config:
        epochs: Annotated[int, Count(MAX_EPOCHS)] = 20  # orthogonal_projection_step_1.py --epochs
        lr: float = 0.1
        batch_size: Annotated[int, Count(MAX_IMAGES)] = 1024
        seed: Annotated[int, Count(MAX_SEED, low=0)] = 0  # the linear model's initial weights
        test: bool = False  # also project the test images with the training set's directions

        def __post_init__(self):
            check_type(self.epochs, int, "epochs")
            check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
            check_type(self.lr, (int, float), "lr")
            check(0 < self.lr <= 10, f"lr must be in (0, 10], got {self.lr}")
            check_type(self.batch_size, int, "batch_size")
            check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
            check_type(self.seed, int, "seed")
            check(0 <= self.seed <= MAX_SEED, f"seed must be in [0, 2**63 - 1], got {self.seed}")
            check_type(self.test, bool, "test")

    basis_: torch.Tensor | None = None  # learned in prepare(): (d, C) float64

    def fit(self, ds: ImageDataset) -> torch.Tensor:
        cfg = self.config
        weights = fit_linear(
            ds.images,
            ds.labels,
            ds.num_classes,
            epochs=cfg.epochs,
            lr=float(cfg.lr),
            batch_size=cfg.batch_size,
            seed=cfg.seed,
        )
        self.basis_ = class_basis(weights)
        return self.basis_

    def filter(self, images: torch.Tensor) -> torch.Tensor:
        if self.basis_ is None:
            raise RuntimeError("ortho-proj: call prepare(train_set) first, it fits the projection")
        out, clipped = project_out(images, self.basis_)
        self._clipped += clipped
        return out

    def _map(self, ds: ImageDataset) -> ImageDataset:
        self._clipped = 0
        out = map_images(ds, self.filter, chunk=1024, defense=self.name)
        out.meta["ortho_clipped"] = self._clipped / max(ds.images.numel(), 1)
        return out

    def prepare(self, ds: ImageDataset) -> ImageDataset:
        ds = super(PreprocessDefense, self).prepare(ds)  # the class count; the filter needs the fit first
        self.fit(ds)
        return self._map(ds)

    def prepare_test(self, ds: ImageDataset) -> ImageDataset:
        return self._map(ds) if self.config.test else ds
