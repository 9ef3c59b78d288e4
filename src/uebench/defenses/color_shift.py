"""Colour shift with noise, one of the colour-domain defenses DUNE (Wang et al., ICML 2026, arXiv 2605.01718) is
evaluated against: its public code's `--defense colorGaussian` (wxldragon/DUNE train.py, RandomPixelShift then
RandomGaussianNoise, at a35cbb6, with its defaults --shift 8 --std 8).

Per training image, after crop/flip and anew each time it is drawn: add to each RGB channel its own offset
U(-shift, shift)/255 and clip to [0, 1]; then add Gaussian noise N(0, s^2) per pixel with s ~ U(0, std)/255 drawn once
per image, and clip to [0, 1]. The model sees the float result (not re-quantised), as in the code, whose transforms
run after ToTensor. Every draw from the trainer's generator (the code uses Python's `random` and torch's global
state). Test images untouched, as in DUNE. (DUNE's `colorat`, the shift without noise under adversarial training,
is a combination of two defenses, not offered here.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from ..core.options import Within
from .base import Defense, check, check_type, device_generator, rand, register_defense


def color_shift(x: torch.Tensor, shift: float, std: float, generator: torch.Generator | None) -> torch.Tensor:
    """x float (n, C, H, W) in [0, 1]; shift and std in pixel units (0..255)."""
    n, c = x.shape[:2]
    offsets = (2 * rand((n, c), generator, x.device) - 1) * (shift / 255)
    x = (x + offsets.view(n, c, 1, 1).to(x.dtype)).clamp(0, 1)
    sigma = rand((n,), generator, x.device) * (std / 255)
    g = device_generator(generator, x.device)
    noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
    return (x + noise * sigma.view(n, 1, 1, 1).to(x.dtype)).clamp(0, 1)


@register_defense
class ColorShift(Defense):
    name = "color-shift"
    kind = "augment"
    description = "colour shift with noise: per-channel offset U(-8, 8)/255, then Gaussian noise of std U(0, 8)/255"
    source = (
        "DUNE (Wang et al. ICML 2026) train.py colorGaussian at a35cbb6: RandomPixelShift(8/255) then "
        "RandomGaussianNoise(8/255), after crop/flip"
    )
    in_probe = True  # a transform of the public code's training loader, like cutout

    @dataclass
    class Config:
        shift: Annotated[float, Within(0, 255)] = 8.0  # largest per-channel offset, in pixel units (DUNE's --shift)
        std: Annotated[float, Within(0, 255)] = 8.0  # largest noise standard deviation, in pixel units (--std)

        def __post_init__(self):
            for name in ("shift", "std"):
                v = getattr(self, name)
                check_type(v, (int, float), name)
                check(0 <= v <= 255, f"{name} must be in [0, 255] (pixel units), got {v}")

    def batch(self, x, y, *, model=None, generator=None, autocast=None):
        return color_shift(x, float(self.config.shift), float(self.config.std), generator), y
