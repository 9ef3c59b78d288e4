"""mixup (Zhang et al. ICLR 2018), APBench's `--mixup` (kornia RandomMixUpV2): each image is blended with a
partner from a random permutation of the batch, x = lam x_i + (1 - lam) x_j, and its label becomes the same
mixture of the two one-hot labels. lam ~ Beta(alpha, alpha), alpha = 1 (uniform on [0, 1], kornia's default),
drawn per image as kornia does (`per_sample=false`: one lam per batch, as the mixup paper)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Defense, beta, check, check_type, one_hot, rand, randperm, register_defense


@register_defense
class Mixup(Defense):
    name = "mixup"
    kind = "augment"
    description = "mixup: convex mixtures of image pairs and their labels, lam ~ Beta(1, 1) (per batch)"
    source = (
        "mixup (Zhang et al. 2018, CIFAR alpha 1.0); APBench uses kornia RandomMixUpV2 (lam ~ U[0,1] per image, p=1)"
    )

    @dataclass
    class Config:
        alpha: float = 1.0
        prob: float = 1.0  # probability that an image is mixed at all (kornia p=1.0)
        per_sample: bool = True  # one lam per image (APBench/kornia) or one per batch (the mixup paper)

        def __post_init__(self):
            check_type(self.alpha, (int, float), "alpha")
            check(self.alpha > 0, f"alpha must be > 0, got {self.alpha}")
            check_type(self.prob, (int, float), "prob")
            check(0 <= self.prob <= 1, f"prob must be in [0, 1], got {self.prob}")
            check_type(self.per_sample, bool, "per_sample")

    def draw(self, n: int, generator, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(perm, lam): partner index and weight of the image itself, per image."""
        perm = randperm(n, generator, device)
        lam = beta(n if self.config.per_sample else 1, float(self.config.alpha), generator, device).expand(n).clone()
        lam = torch.where(rand((n,), generator, device) < self.config.prob, lam, torch.ones_like(lam))
        return perm, lam

    def batch(self, x, y, *, model=None, generator=None, autocast=None):
        perm, lam = self.draw(len(x), generator, x.device)
        target = one_hot(y, self.num_classes)
        lx = lam.to(x.dtype).view(-1, 1, 1, 1)
        x = lx * x + (1 - lx) * x[perm]
        ly = lam.view(-1, 1)
        return x, ly * target + (1 - ly) * target[perm]
