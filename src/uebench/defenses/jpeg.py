"""JPEG compression (Image Shortcut Squeezing, Liu et al. ICML 2023): quality 10, once, on the training images.

Real JPEG: each uint8 image goes through Pillow's encoder (8x8 DCT blocks, quantisation tables scaled for the
quality, 4:2:0 chroma subsampling for RGB, Pillow's default) and back, as ISS and APBench do with PIL per image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from PIL import Image

from ..core.errors import UserError
from ..core.options import Count
from .base import PreprocessDefense, check, check_type, register_defense


def jpeg_roundtrip(images: torch.Tensor, quality: int) -> torch.Tensor:
    """uint8 (n, C, H, W), C in {1, 3} -> the same images JPEG-encoded at `quality` and decoded."""
    n, c, h, w = images.shape
    if c not in (1, 3):
        raise UserError(f"jpeg: needs 1- or 3-channel images, got {c} channels")
    arr = images.permute(0, 2, 3, 1).contiguous().numpy()
    out = np.empty_like(arr)
    for i in range(n):
        img = Image.fromarray(arr[i, :, :, 0] if c == 1 else arr[i], mode="L" if c == 1 else "RGB")
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        dec = np.asarray(Image.open(buf).convert("L" if c == 1 else "RGB"))
        out[i] = dec[:, :, None] if c == 1 else dec
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


@register_defense
class JPEG(PreprocessDefense):
    name = "jpeg"
    description = "JPEG compression of the training images (ISS), quality 10"
    source = "ISS (Liu et al. ICML 2023) and APBench: PIL JPEG quality 10 on each training image, test images untouched"

    @dataclass
    class Config:
        quality: Annotated[int, Count(100)] = 10  # ISS's JPEG-10, APBench's `--jpeg`
        test: bool = False  # also compress the test images (ISS's --ISS_both_train_test; off in both papers' tables)

        def __post_init__(self):
            check_type(self.quality, int, "quality")
            check(1 <= self.quality <= 100, f"quality must be in 1..100, got {self.quality}")
            check_type(self.test, bool, "test")

    def filter(self, images: torch.Tensor) -> torch.Tensor:
        return jpeg_roundtrip(images, self.config.quality)
