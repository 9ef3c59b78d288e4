"""Bit-depth reduction (ISS's BDR baseline, APBench's `--bdr`): keep the top 2 bits of every 8-bit value,
as torchvision's RandomPosterize(bits=2, p=1) does: 4 levels {0, 64, 128, 192}, on the training images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from ..core.options import Count
from .base import PreprocessDefense, check, check_type, register_defense


def posterize_u8(images: torch.Tensor, bits: int) -> torch.Tensor:
    mask = (0xFF << (8 - bits)) & 0xFF
    return images & mask


@register_defense
class BDR(PreprocessDefense):
    name = "bdr"
    description = "bit-depth reduction of the training images to 2 bits per channel (4 levels)"
    source = "ISS (Liu et al. ICML 2023) / APBench: torchvision RandomPosterize(bits=2, p=1) on each training image"

    @dataclass
    class Config:
        bits: Annotated[int, Count(8)] = 2  # APBench's --bdr, ISS's --bdr 2
        test: bool = False  # also reduce the test images (ISS's --ISS_both_train_test)

        def __post_init__(self):
            check_type(self.bits, int, "bits")
            check(1 <= self.bits <= 8, f"bits must be in 1..8, got {self.bits}")
            check_type(self.test, bool, "test")

    def filter(self, images: torch.Tensor) -> torch.Tensor:
        return posterize_u8(images, self.config.bits)
