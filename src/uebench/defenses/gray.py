"""Grayscale (Image Shortcut Squeezing, Liu et al. ICML 2023): ITU-R 601-2 luma in every channel, on the
training images, as torchvision's Grayscale(3) on a PIL image computes it (PIL's integer luma, rounded)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.errors import UserError
from .base import PreprocessDefense, check_type, register_defense


def luma_u8(images: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 3, H, W) -> uint8 (n, 3, H, W) with L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 in all channels
    (PIL's convert("L"): 0.299 R + 0.587 G + 0.114 B in 16-bit fixed point). One channel passes through."""
    if images.shape[1] == 1:
        return images.clone()
    if images.shape[1] != 3:
        raise UserError(f"gray: needs 1- or 3-channel images, got {images.shape[1]} channels")
    x = images.to(torch.int64)
    lum = (19595 * x[:, 0] + 38470 * x[:, 1] + 7471 * x[:, 2] + 32768) >> 16
    return lum.clamp_(0, 255).to(torch.uint8)[:, None].expand_as(images).contiguous()


@register_defense
class Gray(PreprocessDefense):
    name = "gray"
    description = "grayscale training images (ISS): ITU-R 601 luma copied to every channel"
    source = (
        "ISS (Liu et al. ICML 2023) and APBench: torchvision Grayscale(3) on each training image, test images untouched"
    )

    @dataclass
    class Config:
        test: bool = False  # also gray the test images (ISS's --ISS_both_train_test; off in both papers' tables)

        def __post_init__(self):
            check_type(self.test, bool, "test")

    def filter(self, images: torch.Tensor) -> torch.Tensor:
        return luma_u8(images)
