"""COIN (Li, Wang et al., AAAI 2025, "Detecting and Corrupting Convolution-based Unlearnable Examples",
arXiv 2410.03644): random pixel interpolation against convolution-based poisons (CUDA and its variants).

Every training image, after crop/flip and anew each time it is drawn, is resampled at randomly displaced positions:
pixel (i, j) takes the bilinear interpolation of the image at (i + dy, j + dx), with dx, dy ~ U(-alpha, alpha)
drawn per pixel (shared by the channels) and alpha = 2.0 (the paper's severity 4 of the table 0.8, 1.2, ..., 3.2).
As in the public code (wxldragon/COIN train.py, COIN_trans, at 6577fa8; the same function in wxldragon/DUNE
train.py at a35cbb6), which resamples with scipy.ndimage.map_coordinates(order=1, mode="wrap") on the float image
in [0, 1]:

- positions outside the image wrap with scipy's legacy `wrap` period, side - 1 (the first and last rows coincide),
  not the side: reproduced here, checked against scipy in the tests;
- the result is clipped to [0, 1], scaled by 255 and *truncated* to uint8 (np.uint8 of a float array), so the model
  sees whole pixel values again.

Here it is one batched operation on the device (gather of the four neighbours), every draw from the trainer's
generator; the public code draws with NumPy's global state in its loader workers. Test images are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from ..core.options import Count
from .base import Defense, check, check_type, rand, register_defense

SEVERITY_ALPHA = (0.8, 1.2, 1.6, 2.0, 2.4, 2.8, 3.2)  # the public code's table of displacement bounds


def legacy_wrap(v: torch.Tensor, size: int) -> torch.Tensor:
    """scipy.ndimage's `wrap` mode for a coordinate: periodic with period size - 1, into [0, size - 1]."""
    if size == 1:
        return torch.zeros_like(v)
    period = size - 1
    below = v < 0
    v = torch.where(below, v + period * (torch.trunc(-v / period) + 1), v)
    above = v > period
    return torch.where(above, v - period * torch.trunc(v / period), v)


def bilinear_at(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """x (n, C, H, W) sampled at real positions rows, cols (n, H, W) in [0, H - 1] x [0, W - 1], bilinear."""
    n, c, h, w = x.shape
    r0, c0 = rows.floor(), cols.floor()
    tr, tc = (rows - r0).unsqueeze(1), (cols - c0).unsqueeze(1)
    r0, c0 = r0.long(), c0.long()
    r1, c1 = (r0 + 1).clamp_(max=h - 1), (c0 + 1).clamp_(max=w - 1)
    flat = x.reshape(n, c, h * w)

    def at(r: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return flat.gather(2, (r * w + k).reshape(n, 1, h * w).expand(n, c, h * w)).reshape(n, c, h, w)

    top = at(r0, c0) * (1 - tc) + at(r0, c1) * tc
    bottom = at(r1, c0) * (1 - tc) + at(r1, c1) * tc
    return top * (1 - tr) + bottom * tr


def coin(x: torch.Tensor, alpha: float, generator: torch.Generator | None) -> torch.Tensor:
    """COIN on float images in [0, 1] (n, C, H, W): random bilinear resampling, then truncation to k/255."""
    n, _, h, w = x.shape
    dx = (2 * rand((n, h, w), generator, x.device) - 1) * alpha
    dy = (2 * rand((n, h, w), generator, x.device) - 1) * alpha
    grid_r = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    grid_c = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
    rows = legacy_wrap(grid_r + dy.to(x.dtype), h)
    cols = legacy_wrap(grid_c + dx.to(x.dtype), w)
    y = bilinear_at(x, rows, cols)
    return (y.clamp(0, 1) * 255).floor_().div_(255)


@register_defense
class COIN(Defense):
    name = "coin"
    kind = "augment"
    description = "COIN: resample every training image at randomly displaced positions (bilinear, |d| <= 2 px)"
    source = (
        "COIN (Li, Wang et al. AAAI 2025), wxldragon/COIN train.py COIN_trans at 6577fa8: severity 4 (alpha 2.0), "
        "after crop/flip, anew each epoch, test images untouched"
    )
    in_probe = True  # a transform of the public code's training loader, like cutout

    @dataclass
    class Config:
        severity: Annotated[int, Count(len(SEVERITY_ALPHA))] = 4  # alpha = 0.8, 1.2, ..., 3.2 for 1..7; 4: 2.0

        def __post_init__(self):
            check_type(self.severity, int, "severity")
            check(1 <= self.severity <= len(SEVERITY_ALPHA), f"severity must be in 1..7, got {self.severity}")

    @property
    def alpha(self) -> float:
        return SEVERITY_ALPHA[self.config.severity - 1]

    def batch(self, x, y, *, model=None, generator=None, autocast=None):
        return coin(x, self.alpha, generator), y
