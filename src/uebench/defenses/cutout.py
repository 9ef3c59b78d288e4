"""Cutout (DeVries & Taylor 2017), APBench's `--cutout`: per image, a 16x16 square of zeros centred at a
uniformly random pixel, clipped at the borders (so near an edge less than 16x16 is erased), after crop/flip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from ..core.options import MAX_IMAGE_SIZE, Count
from .base import Defense, check, check_type, rand, register_defense


def cutout_mask(n: int, h: int, w: int, length: int, generator, device) -> torch.Tensor:
    """(n, 1, h, w) float: 0 inside each image's square [cy - L//2, cy + L//2) x [cx - L//2, cx + L//2), else 1."""
    cy = (rand((n,), generator, device) * h).long().clamp_(max=h - 1)
    cx = (rand((n,), generator, device) * w).long().clamp_(max=w - 1)
    rows = torch.arange(h, device=device)[None, :]
    cols = torch.arange(w, device=device)[None, :]
    in_r = (rows >= cy[:, None] - length // 2) & (rows < cy[:, None] + length // 2)
    in_c = (cols >= cx[:, None] - length // 2) & (cols < cx[:, None] + length // 2)
    return (~(in_r[:, :, None] & in_c[:, None, :])).float()[:, None]


@register_defense
class Cutout(Defense):
    name = "cutout"
    kind = "augment"
    in_probe = True
    description = "Cutout: zero a random 16x16 square of every training image (per batch)"
    source = "Cutout (DeVries & Taylor 2017, CIFAR length 16) as APBench util.Cutout(16), after crop/flip/ToTensor"

    @dataclass
    class Config:
        length: Annotated[int, Count(MAX_IMAGE_SIZE)] = 16

        def __post_init__(self):
            check_type(self.length, int, "length")
            check(self.length >= 1, f"length must be >= 1, got {self.length}")

    def batch(self, x, y, *, model=None, generator=None, autocast=None):
        n, _, h, w = x.shape
        return x * cutout_mask(n, h, w, self.config.length, generator, x.device).to(x.dtype), y
