"""CutMix (Yun et al. ICCV 2019), APBench's `--cutmix` (kornia RandomCutMixV2): into each image, paste the box of
a partner image from a random permutation of the batch. lam ~ Beta(1, 1); the box has sides W sqrt(1 - lam) and
H sqrt(1 - lam), a uniformly random centre, clipped at the borders; the label weight of the partner is the
pasted area fraction after clipping (as both the paper's code and kornia correct it)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Defense, beta, check, check_type, one_hot, rand, randperm, register_defense


@register_defense
class CutMix(Defense):
    name = "cutmix"
    kind = "augment"
    description = "CutMix: paste a random box from another image, labels weighted by area; alpha 1, prob 1 (per batch)"
    source = (
        "CutMix (Yun et al. 2019, beta 1.0; its CIFAR runs use cutmix_prob 0.5); APBench uses kornia "
        "RandomCutMixV2 (beta 1, p=1.0, per-image boxes), which is the default here"
    )

    @dataclass
    class Config:
        alpha: float = 1.0  # the paper's `beta`
        prob: float = (
            1.0  # probability that an image gets a box (APBench/kornia 1.0; the CutMix paper's CIFAR runs 0.5)
        )

        def __post_init__(self):
            check_type(self.alpha, (int, float), "alpha")
            check(self.alpha > 0, f"alpha must be > 0, got {self.alpha}")
            check_type(self.prob, (int, float), "prob")
            check(0 <= self.prob <= 1, f"prob must be in [0, 1], got {self.prob}")

    def draw(self, n: int, h: int, w: int, generator, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(perm, mask (n, 1, h, w) bool: pixels taken from the partner, area fraction of the partner (n,))."""
        perm = randperm(n, generator, device)
        lam = beta(n, float(self.config.alpha), generator, device)
        cut = torch.sqrt(1.0 - lam)
        cut_w, cut_h = (w * cut).floor().long(), (h * cut).floor().long()
        cx = (rand((n,), generator, device) * w).long().clamp_(max=w - 1)
        cy = (rand((n,), generator, device) * h).long().clamp_(max=h - 1)
        applied = rand((n,), generator, device) < self.config.prob
        x1, x2 = (cx - cut_w // 2).clamp(0, w), (cx + cut_w // 2).clamp(0, w)
        y1, y2 = (cy - cut_h // 2).clamp(0, h), (cy + cut_h // 2).clamp(0, h)
        rows = torch.arange(h, device=device)[None, :]
        cols = torch.arange(w, device=device)[None, :]
        in_r = (rows >= y1[:, None]) & (rows < y2[:, None])
        in_c = (cols >= x1[:, None]) & (cols < x2[:, None])
        mask = (in_r[:, :, None] & in_c[:, None, :]) & applied[:, None, None]
        area = mask.flatten(1).float().mean(1)
        return perm, mask[:, None], area

    def batch(self, x, y, *, model=None, generator=None, autocast=None):
        n, _, h, w = x.shape
        perm, mask, area = self.draw(n, h, w, generator, x.device)
        target = one_hot(y, self.num_classes)
        x = torch.where(mask, x[perm], x)
        a = area.view(-1, 1)
        return x, (1 - a) * target + a * target[perm]
