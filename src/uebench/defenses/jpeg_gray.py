"""ISS with JPEG and grayscale together (ISS-J/G): both of Image Shortcut Squeezing's compressions (Liu et al.,
ICML 2023) on the training images, once, before crop/flip, as the single ones (jpeg.py, gray.py) run.

The order is an option, because the two sources differ:
- `order=jpeg-gray` (default): JPEG quality 10, then grayscale, as DUNE (Wang et al. ICML 2026) evaluates its
  `--defense jpeggray` (wxldragon/DUNE train.py at a35cbb6: JPEGcompression, then Grayscale(3)): the luma of the
  decoded JPEG in every channel.
- `order=gray-jpeg`: grayscale, then JPEG, what ISS's code does when given both --grayscale and --jpeg
  (liuzrcc/ImageShortcutSqueezing augmentations.py aug_train at 005d653 appends Grayscale(3) before the JPEG
  lambda).
Both end exactly gray and agree on most pixels (JPEG codes the luma apart from the chroma): they differ where the
rounding of the colour conversions does (about 0.2% of the values of noise images at quality 10, by up to 11 levels).

Deviation from DUNE: its transforms run after crop/flip, on each epoch's padded crop; here, as ISS does, on the
stored images before crop/flip (the JPEG 8x8 grid then lies on the image, not on the shifted crop). Test images
untouched unless `test=true`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from ..core.options import Count
from .base import PreprocessDefense, check, check_type, register_defense
from .gray import luma_u8
from .jpeg import jpeg_roundtrip

ORDERS = ("jpeg-gray", "gray-jpeg")


def jpeg_gray(images: torch.Tensor, quality: int, order: str) -> torch.Tensor:
    """uint8 (n, C, H, W) -> both compressions, in the order named."""
    if order == "jpeg-gray":
        return luma_u8(jpeg_roundtrip(images, quality))
    return jpeg_roundtrip(luma_u8(images), quality)


@register_defense
class JPEGGray(PreprocessDefense):
    name = "jpeg-gray"
    description = "ISS-J/G: JPEG quality 10 then grayscale on the training images (DUNE's jpeggray order)"
    source = (
        "ISS (Liu et al. ICML 2023) compressions combined: DUNE train.py jpeggray at a35cbb6 (JPEG-10 then "
        "Grayscale(3)); ISS aug_train at 005d653 runs grayscale first (order=gray-jpeg)"
    )

    @dataclass
    class Config:
        quality: Annotated[int, Count(100)] = 10  # ISS's and DUNE's JPEG-10
        order: str = "jpeg-gray"  # jpeg-gray (DUNE) | gray-jpeg (ISS's code with both flags)
        test: bool = False  # also compress the test images (ISS's --ISS_both_train_test)

        def __post_init__(self):
            check_type(self.quality, int, "quality")
            check(1 <= self.quality <= 100, f"quality must be in 1..100, got {self.quality}")
            check(self.order in ORDERS, f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")
            check_type(self.test, bool, "test")

    def filter(self, images: torch.Tensor) -> torch.Tensor:
        return jpeg_gray(images, self.config.quality, self.config.order)
