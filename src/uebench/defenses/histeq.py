"""Histogram equalisation per channel, one of the colour-domain defenses DUNE (Wang et al., ICML 2026, arXiv
2605.01718) is evaluated against: its public code's `--defense histeq` (wxldragon/DUNE train.py,
histogram_equalization, at a35cbb6), cv2.equalizeHist on each RGB channel of each training image after crop/flip.

OpenCV's definition, reproduced: with h the channel's 256-bin histogram, m its lowest value present and c the
cumulative count, value v maps to round((c(v) - h(m)) * 255 / (N - h(m))) (so m maps to 0 and the highest value to
255); a channel of one value is left as it is. In float32 as OpenCV computes it (the scale 255 / (N - h(m)) rounded
to float32, times the count, then cvRound, half to even), so an exact half can round either way: 28 * 255 / 56 gives
127. Equal to cv2.equalizeHist value for value (tests/test_opencv_parity.py). Deterministic; test images untouched,
as in DUNE.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._color import levels
from .base import Defense, register_defense


def equalise(u: torch.Tensor) -> torch.Tensor:
    """cv2.equalizeHist on every channel of whole-valued float images (n, C, H, W) 0..255."""
    n, c, h, w = u.shape
    flat = u.reshape(n * c, h * w).long()
    hist = torch.zeros(n * c, 256, dtype=torch.int64, device=u.device).scatter_add_(1, flat, torch.ones_like(flat))
    cum = hist.cumsum(1)
    lowest = (hist > 0).to(torch.int8).argmax(1, keepdim=True)
    base = hist.gather(1, lowest)  # pixels at the lowest value
    total = h * w
    # float32 255 / (N - h(m)) as OpenCV's scale; torch's 255.0 / t is 255 * (1 / t), off by an ulp that flips ties
    scale = torch.full_like(base, 255, dtype=torch.float32) / (total - base).clamp(min=1).to(torch.float32)
    lut = ((cum - base).to(torch.float32) * scale).round_().clamp_(0, 255)
    flat_channel = base == total
    lut = torch.where(flat_channel, lowest.to(torch.float32).expand_as(lut), lut)
    return lut.gather(1, flat).reshape(n, c, h, w).to(u.dtype)


@register_defense
class HistEq(Defense):
    name = "hist-eq"
    kind = "augment"
    description = "histogram equalisation of each colour channel of every training image (DUNE's histeq)"
    source = "DUNE (Wang et al. ICML 2026) train.py histogram_equalization at a35cbb6: cv2.equalizeHist per channel"
    in_probe = True  # a transform of the public code's training loader, like cutout

    @dataclass
    class Config:
        pass

    def batch(self, x, y, *, model=None, generator=None, autocast=None):
        return equalise(levels(x)) / 255, y
