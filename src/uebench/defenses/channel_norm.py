"""Per-image channel normalisation, one of the colour-domain defenses DUNE (Wang et al., ICML 2026, "Dual-branch
Robust Unlearnable Examples", arXiv 2605.01718) is evaluated against: its public code's `--defense picn`
(wxldragon/DUNE train.py, per_image_channel_normalization, at a35cbb6).

Per training image, after crop/flip: each RGB channel standardised to mean 0 and std 1 (a flat channel divided by 1),
then the whole image min-max stretched to [0, 255] (one min and max over its three channels; a flat image becomes
black) and truncated to whole values, as the code's clip + astype(np.uint8) does. A colour cast (a per-channel
offset or gain) is removed; so is a per-channel colour perturbation that is constant over the image. Deterministic;
test images untouched, as in DUNE. Arithmetic in float32 on the batch, as the code's float32 NumPy array (its
reductions round differently, so a value on a whole-number boundary may land one level apart).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.errors import UserError
from ._color import levels, standardise, stretch
from .base import Defense, register_defense


def channel_normalise(x: torch.Tensor) -> torch.Tensor:
    """Float RGB images in [0, 1] holding k/255 values -> DUNE's per-image channel normalisation, k/255 again."""
    if x.shape[1] != 3:
        raise UserError(f"channel-norm: needs 3-channel images, got {x.shape[1]} channels")
    return stretch(standardise(levels(x)), dims=(1, 2, 3)) / 255


@register_defense
class ChannelNorm(Defense):
    name = "channel-norm"
    kind = "augment"
    description = "per-image channel normalisation (DUNE's picn): standardise each channel, stretch the image to 0..255"
    source = "DUNE (Wang et al. ICML 2026) train.py per_image_channel_normalization at a35cbb6, after crop/flip"
    in_probe = True  # a transform of the public code's training loader, like cutout

    @dataclass
    class Config:
        pass

    def batch(self, x, y, *, model=None, generator=None, autocast=None):
        return channel_normalise(x), y
