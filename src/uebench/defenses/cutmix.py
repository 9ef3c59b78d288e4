"""CutMix (Yun et al. ICCV 2019), APBench's `--cutmix` (kornia RandomCutMixV2): into each image, paste the box of
a partner image from a random permutation of the batch, lam ~ Beta(1, 1), box sides floor(W sqrt(1 - lam)) and
floor(H sqrt(1 - lam)); the label weight of the partner is the pasted area fraction. Where the box goes:

- `box=inside` (default; kornia's CutmixGenerator, what APBench runs): the box lies wholly inside the image, its
  corner uniform over the positions that fit;
- `box=clip` (the CutMix paper's code): a uniformly random centre, the box clipped at the borders (so its area, and
  the partner's label weight, is smaller near the edges). This was uebench's only placement before kornia's was
  checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.io import recorded
from .base import Defense, beta, check, check_type, one_hot, rand, randperm, register_defense


@register_defense
class CutMix(Defense):
    name = "cutmix"
    kind = "augment"
    description = "CutMix: paste a random box from another image, labels weighted by area; alpha 1, prob 1 (per batch)"
    source = (
        "CutMix (Yun et al. 2019, beta 1.0; its CIFAR runs use cutmix_prob 0.5); APBench uses kornia "
        "RandomCutMixV2 (beta 1, p=1.0, per-image boxes inside the image), the default here; box=clip is the paper's"
    )

    @dataclass
    class Config:
        alpha: float = 1.0  # the paper's `beta`
        prob: float = (
            1.0  # probability that an image gets a box (APBench/kornia 1.0; the CutMix paper's CIFAR runs 0.5)
        )

        box: str = "inside"  # inside (kornia, APBench) | clip (the CutMix paper's code)

        def __post_init__(self):
            check_type(self.alpha, (int, float), "alpha")
            check(self.alpha > 0, f"alpha must be > 0, got {self.alpha}")
            check_type(self.prob, (int, float), "prob")
            check(0 <= self.prob <= 1, f"prob must be in [0, 1], got {self.prob}")
            check(self.box in BOXES, f"box must be one of {', '.join(BOXES)}, got {self.box!r}")

    def params(self):
        """The settings; `box` is left out at `clip`, the placement of the runs made before it was an option."""
        return recorded(super().params(), {"box": "clip"})

    def draw(self, n: int, h: int, w: int, generator, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(perm, mask (n, 1, h, w) bool: pixels taken from the partner, area fraction of the partner (n,))."""
        perm = randperm(n, generator, device)
        lam = beta(n, float(self.config.alpha), generator, device)
        cut = torch.sqrt(1.0 - lam)
        cut_w, cut_h = (w * cut).floor().long(), (h * cut).floor().long()
        ux, uy = rand((n,), generator, device), rand((n,), generator, device)
        applied = rand((n,), generator, device) < self.config.prob
        if self.config.box == "inside":  # kornia: a corner uniform over the positions where the box fits
            x1 = torch.minimum((ux * (w - cut_w + 1)).floor().long(), w - cut_w)
            y1 = torch.minimum((uy * (h - cut_h + 1)).floor().long(), h - cut_h)
            x2, y2 = x1 + cut_w, y1 + cut_h
        else:  # the CutMix paper: a uniform centre, the box clipped at the borders
            cx, cy = (ux * w).long().clamp_(max=w - 1), (uy * h).long().clamp_(max=h - 1)
            x1, x2 = (cx - cut_w // 2).clamp(0, w), (cx + cut_w // 2).clamp(0, w)
            y1, y2 = (cy - cut_h // 2).clamp(0, h), (cy + cut_h // 2).clamp(0, h)
        mask = box_mask(x1, y1, x2, y2, h, w) & applied[:, None, None, None]
        return perm, mask, mask.flatten(1).float().mean(1)

    def batch(self, x, y, *, model=None, generator=None, autocast=None):
        n, _, h, w = x.shape
        perm, mask, area = self.draw(n, h, w, generator, x.device)
        return paste(x, one_hot(y, self.num_classes), perm, mask, area)


BOXES = ("inside", "clip")


def box_mask(x1: torch.Tensor, y1: torch.Tensor, x2: torch.Tensor, y2: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(n, 1, h, w) bool: the pixels of each image's box [y1, y2) x [x1, x2)."""
    rows = torch.arange(h, device=x1.device)[None, :]
    cols = torch.arange(w, device=x1.device)[None, :]
    in_r = (rows >= y1[:, None]) & (rows < y2[:, None])
    in_c = (cols >= x1[:, None]) & (cols < x2[:, None])
    return (in_r[:, :, None] & in_c[:, None, :])[:, None]


def paste(x: torch.Tensor, target: torch.Tensor, perm: torch.Tensor, mask: torch.Tensor, area: torch.Tensor):
    """Each image with its partner's box pasted in, and the labels mixed by the pasted area."""
    a = area.view(-1, 1).to(target.dtype)
    return torch.where(mask, x[perm], x), (1 - a) * target + a * target[perm]
