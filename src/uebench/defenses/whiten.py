"""Colour-space whitening, two of the colour-domain defenses DUNE (Wang et al., ICML 2026, arXiv 2605.01718) is
evaluated against: its public code's `--defense lab` and `--defense yuv` (wxldragon/DUNE train.py, lab_whitening and
yuv_whitening, at a35cbb6).

Per training image, after crop/flip: convert the 8-bit RGB image to 8-bit Lab (or YUV) with OpenCV, standardise each
of the three channels (mean 0, std 1; a flat channel divided by 1), min-max stretch each channel on its own to
[0, 255] (a flat channel becomes 0) and truncate to whole values (clip + astype(np.uint8)), then convert back to RGB
with OpenCV. Every channel of the colour space then spans the full range: global brightness, contrast and the colour
balance of the image are replaced. Deterministic; test images untouched, as in DUNE.

The YUV and Lab conversions are OpenCV's 8-bit ones, integer for integer (see _color.py). The float steps between
them truncate values that are whole in exact arithmetic (a channel spanning 0..255 is stretched onto itself), so
rounding noise decides those: a NumPy float32 reimplementation differs by one level there and nowhere else, on under
1% to 15% of the stretched values of CIFAR-10 and random images (tests/test_opencv_parity.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch

from ..core.errors import UserError
from . import _color
from .base import Defense, register_defense


def whiten(x: torch.Tensor, to_space: Callable, to_rgb: Callable) -> torch.Tensor:
    """Float RGB images in [0, 1] holding k/255 values -> DUNE's whitening in the given colour space, k/255 again."""
    if x.shape[1] != 3:
        raise UserError(f"whitening: needs 3-channel images, got {x.shape[1]} channels")
    space = to_space(_color.levels(x)).to(torch.float32)
    return to_rgb(_color.stretch(_color.standardise(space), dims=(2, 3))) / 255


class _Whiten(Defense):
    kind = "augment"
    in_probe = True  # a transform of the public code's training loader, like cutout
    space: ClassVar[str]

    @dataclass
    class Config:
        pass

    def batch(self, x, y, *, model=None, generator=None, autocast=None):
        if self.space == "lab":
            return whiten(x, _color.rgb_to_lab, _color.lab_to_rgb), y
        return whiten(x, _color.rgb_to_yuv, _color.yuv_to_rgb), y


@register_defense
class LabWhiten(_Whiten):
    name = "lab-whiten"
    space = "lab"
    description = "Lab whitening of every training image: each Lab channel standardised and stretched (DUNE's lab)"
    source = "DUNE (Wang et al. ICML 2026) train.py lab_whitening at a35cbb6 (OpenCV 8-bit Lab), after crop/flip"


@register_defense
class YuvWhiten(_Whiten):
    name = "yuv-whiten"
    space = "yuv"
    description = "YUV whitening of every training image: each YUV channel standardised and stretched (DUNE's yuv)"
    source = "DUNE (Wang et al. ICML 2026) train.py yuv_whitening at a35cbb6 (OpenCV 8-bit YUV), after crop/flip"
