"""CUDA: convolution-based unlearnable datasets (Sadasivan, Soltanolkotabi, Feizi; CVPR 2023).

Model-free and class-wise: every image of class k is convolved with class k's random filter and rescaled so that
its brightest value is 1. A network then learns the filters (a shortcut in the image's local correlations) rather
than the content. The perturbation is multiplicative and not Lp-bounded (norm "none"): the paper argues that
Lp-bounded defenses such as adversarial training cannot undo a blur, and reports none.

The recipe, from the authors' code (vinusankars/Convolution-based-Unlearnability, final_filter_unlearnable.py):
1. numpy's legacy generator seeded with the seed; per class k in order: a depthwise k x k filter (kernel 3) with
   entries uniform in [0, blur_parameter] (0.3 for CIFAR-10), one entry of channel 0 at a uniformly drawn position
   set to center_parameter (1.0); every channel then takes channel 0's filter; no bias; zero padding.
2. x in [0, 1] -> conv_k(x) / max(conv_k(x)) (the maximum over the whole image, all channels), clipped to [0, 1].
3. written as uint8 by truncation (`astype(uint8)` of x * 255).
The filters here are drawn with numpy's RandomState in the same order, so a seed gives the authors' filters.

Where this differs from the public code
- It draws a per-image `np.random.random() < mix` to poison a share of the data; uebench's partial poisoning
  (`--poison-fraction`, per class and seeded) does that, so `mix` is not a parameter here (its default, 1.0, poisons
  every image and draws nothing that changes the filters).
- `quantize="floor"` (default) truncates as the authors' export does; `quantize="round"` rounds to the nearest grey
  level instead (the paper states no quantisation).
- An image whose convolution is 0 everywhere (an all-black image) stays black instead of becoming NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import UserError
from ..core.options import MAX_IMAGE_SIZE, Count
from ..data.base import ImageDataset
from .base import Attack, Perturbation, register_attack


@dataclass
class CUDAConfig:
    blur_parameter: float = 0.3  # filter entries uniform in [0, blur_parameter] (paper: 0.3 on CIFAR-10)
    center_parameter: float | None = 1.0  # one entry per filter set to this; None: no such entry
    kernel_size: Annotated[int, Count(MAX_IMAGE_SIZE)] = 3
    grayscale: bool = False  # the authors' option: the convolved image's channel mean in every channel
    same: bool = False  # the authors' ablation: every class gets class 0's filter (not unlearnable by design)
    quantize: str = "floor"  # floor: the authors' export (astype(uint8)); round: nearest grey level

    def __post_init__(self) -> None:
        if not (self.blur_parameter > 0 and np.isfinite(self.blur_parameter)):
            raise ValueError(f"blur_parameter must be positive and finite, got {self.blur_parameter}")
        if self.center_parameter is not None and not (self.center_parameter > 0 and np.isfinite(self.center_parameter)):
            raise ValueError(f"center_parameter must be positive and finite (or None), got {self.center_parameter}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd and >= 1 (the filter keeps the image size), got {self.kernel_size}"
            )
        if self.quantize not in ("floor", "round"):
            raise ValueError(f"quantize must be floor or round, got {self.quantize!r}")


def class_filters(num_classes: int, channels: int, cfg: CUDAConfig, seed: int) -> torch.Tensor:
    """(K, C, k, k) float64 depthwise filters, drawn in the authors' order from numpy's RandomState(seed)."""
    rng = np.random.RandomState(seed)
    k = cfg.kernel_size
    filters = np.empty((num_classes, channels, k, k))
    for c in range(num_classes):
        w = rng.uniform(low=0, high=cfg.blur_parameter, size=(3, 1, k, k))  # 3 channels drawn, as the authors do
        if cfg.center_parameter is not None:
            w[0, 0, rng.randint(k), rng.randint(k)] = cfg.center_parameter
        filters[c] = w[0, 0]  # every channel takes channel 0's filter
    if cfg.same:
        filters[:] = filters[0]
    return torch.from_numpy(filters)


def convolve_classwise(
    images: torch.Tensor, labels: torch.Tensor, filters: torch.Tensor, grayscale: bool = False
) -> torch.Tensor:
    """Float64 (N, C, H, W) in [0, 1]: each image convolved with its class's filter, divided by its maximum."""
    x = images.double() / 255.0
    out = torch.empty_like(x)
    c, pad = x.shape[1], filters.shape[-1] // 2
    for k in labels.unique().tolist():
        sel = labels == k
        w = filters[k].unsqueeze(1)  # (C, 1, k, k): depthwise
        out[sel] = F.conv2d(x[sel], w, padding=pad, groups=c)
    if grayscale:
        out = out.mean(1, keepdim=True).expand_as(out).clone()
    peak = out.flatten(1).amax(1).view(-1, 1, 1, 1)
    return torch.where(peak > 0, out / peak.clamp_min(1e-300), torch.zeros_like(out)).clamp_(0, 1)


@register_attack
class CUDA(Attack):
    name = "cuda"
    norm = "none"
    description = (
        "class-wise random 3x3 convolutions, rescaled to max 1 (model-free, not Lp-bounded; Sadasivan et al. 2023)"
    )
    budget_note: ClassVar[str] = "a multiplicative blur; the paper reports no Lp norm"
    Config = CUDAConfig
    presets = {"fast": {}}  # model-free: the paper's settings take seconds

    def budget(self) -> float:
        return 0.0  # no norm bound

    def validate(self, ds: ImageDataset) -> None:
        super().validate(ds)
        if self.config.kernel_size > min(ds.shape[1:]):
            raise UserError(f"cuda: kernel_size {self.config.kernel_size} is larger than the {ds.shape[1:]} images")

    def perturb(self, ds: ImageDataset, *, seed: int, progress: bool) -> Perturbation:
        cfg = self.config
        filters = class_filters(ds.num_classes, ds.shape[0], cfg, seed)
        y = convolve_classwise(ds.images, ds.labels, filters, cfg.grayscale) * 255.0
        # the grey levels the export writes; bake() adds the difference back onto the same uint8 images exactly
        grey = torch.floor(y + 1e-9) if cfg.quantize == "floor" else torch.round(y)
        delta = ((grey - ds.images.double()) / 255.0).float()
        return Perturbation(delta, epoch_equivalents=0.0, extra={"filters": filters.flatten(1).tolist()})
