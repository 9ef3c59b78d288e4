"""LSP: linearly separable synthetic perturbations (Yu, Zhang, Chen, Yin, Liu; "Availability Attacks Create
Shortcuts", KDD 2022; called "synthetic noise" there, LSP in APBench).

The paper's recipe, from its public code (dayu11/Availability-Attacks-Create-Shortcuts, synthetic_perturbations):
1. draw synthetic points as scikit-learn's `make_classification` does, with one Gaussian cluster per class
   (n_informative = n_features, class_sep = 10, no label noise): class centres on distinct vertices of the
   hypercube {-class_sep, +class_sep}^F, each cluster a standard normal pushed through its own random linear map
   (entries uniform in [-1, 1]) and shifted to its centre; F = (#patches) x C, one feature per patch and channel;
2. lay each point out as a (C, H/8, W/8) grid and upsample every value to an 8x8 patch (nearest);
3. scale each pattern to L2 = sqrt(C*H*W) * 6/255 (1.304 for 3x32x32: the L2 norm of a 6/255 Linf box corner);
4. add to image i a point drawn from the cluster of its class.
The noise is thus *sample-wise*, drawn from a *class-wise* distribution: the points of one class sit near one
hypercube vertex, far from the others, so the perturbations are linearly separable by class.
`classwise=True` gives every image of a class the same pattern (one draw per class): not the paper's setting.

Where the public code differs
- It draws `n` points with `make_classification`'s balanced classes and takes the first n_c of each class; a
  class with more than n/K images gets too few points (the reason SVHN runs double n). Here each class draws
  exactly as many points as it has images.
- For sizes not divisible by the patch size it sizes the grid inconsistently (ceil for the grid, floor for the
  feature count); here the grid is ceil(H/8) x ceil(W/8) and the upsampled pattern is cropped.
- It quantises with `astype(uint8)` after adding (floor), so negative changes grow and the baked L2 norm can
  exceed the budget; here the pattern is placed on the uint8 grid at the largest L2 norm <= the budget
  (poison.quantize_l2).
scikit-learn is not needed: the few lines of its generator that matter are re-derived here with numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, ClassVar

import numpy as np
import torch

from ..core.errors import UserError
from ..core.options import MAX_IMAGE_SIZE, Count
from ..data.base import ImageDataset
from ..poisons.poison import quantize_l2
from .base import Attack, Perturbation, register_attack


@dataclass
class LSPConfig:
    patch_size: Annotated[int, Count(MAX_IMAGE_SIZE)] = (
        8  # each synthetic feature becomes a patch_size x patch_size patch (paper: 8)
    )
    eps: float = 6 / 255  # per-pixel scale of the L2 budget: L2 = sqrt(C*H*W) * eps (paper: 6/255)
    class_sep: float = 10.0  # half the distance between hypercube vertices (make_classification's class_sep)
    classwise: bool = False  # one pattern per class instead of one draw per image (not the paper's setting)

    def __post_init__(self) -> None:
        if self.patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {self.patch_size}")
        if self.class_sep <= 0:
            raise ValueError(f"class_sep must be positive, got {self.class_sep}")


def hypercube_vertices(rng: np.random.Generator, k: int, dim: int) -> np.ndarray:
    """k distinct random vertices of {0, 1}^dim (as float), redrawn until distinct."""
    v = rng.integers(0, 2, size=(k, dim))
    while len(np.unique(v, axis=0)) < k:
        _, first = np.unique(v, axis=0, return_index=True)
        dup = np.setdiff1d(np.arange(k), first)
        v[dup] = rng.integers(0, 2, size=(len(dup), dim))
    return v.astype(np.float64)


def cluster_points(rng: np.random.Generator, counts: list[int], dim: int, class_sep: float) -> list[np.ndarray]:
    """make_classification's clusters (one per class): counts[c] points of class c, each (dim,)."""
    centres = hypercube_vertices(rng, len(counts), dim) * 2 * class_sep - class_sep
    maps = 2 * rng.random((len(counts), dim, dim)) - 1  # each cluster's random covariance
    return [rng.standard_normal((n, dim)) @ maps[c] + centres[c] for c, n in enumerate(counts)]


def patches_to_images(points: np.ndarray, shape: tuple[int, int, int], patch: int) -> np.ndarray:
    """(n, F) points -> (n, C, H, W): one value per (channel, patch), repeated over the patch, cropped."""
    c, h, w = shape
    gh, gw = -(-h // patch), -(-w // patch)
    grid = points.reshape(len(points), gh, gw, c).transpose(0, 3, 1, 2)  # grid laid out HWC as in the paper
    return grid.repeat(patch, axis=2).repeat(patch, axis=3)[:, :, :h, :w]


def l2_budget(shape: tuple[int, int, int], eps: float) -> float:
    return math.sqrt(shape[0] * shape[1] * shape[2]) * eps


@register_attack
class LSP(Attack):
    name = "lsp"
    norm = "l2"
    description = (
        "linearly separable synthetic patches: class-clustered "
        "noise on 8x8 patches, L2 sqrt(CHW)*6/255 (Yu et al. 2022)"
    )
    budget_note: ClassVar[str] = "sqrt(C*H*W)*6/255; 1.304 at 3x32x32"
    Config = LSPConfig
    presets = {"fast": {}}  # model-free: the paper's settings already take seconds

    _shape: tuple[int, int, int] = (3, 32, 32)  # the budget scales with the image; CIFAR until a dataset is seen

    def budget(self) -> float:
        return l2_budget(self._shape, self.config.eps)

    def validate(self, ds: ImageDataset) -> None:
        self._shape = ds.shape
        if not (0 < self.config.eps <= 1):
            raise UserError(
                f"lsp: eps {self.config.eps} outside (0, 1] (per-pixel scale of the L2 budget; paper: 6/255 = 0.0235)"
            )
        super().validate(ds)
        c, h, w = ds.shape
        dim = c * -(-h // self.config.patch_size) * -(-w // self.config.patch_size)
        if dim < 63 and ds.num_classes > 2**dim:
            raise UserError(
                f"lsp: {ds.num_classes} classes need more than the {2**dim} "
                f"hypercube vertices of {dim} features; lower patch_size"
            )

    def perturb(self, ds: ImageDataset, *, seed: int, progress: bool) -> Perturbation:
        cfg = self.config
        c, h, w = ds.shape
        dim = c * -(-h // cfg.patch_size) * -(-w // cfg.patch_size)
        labels = ds.labels.numpy()
        counts = np.bincount(labels, minlength=ds.num_classes)
        rng = np.random.default_rng([seed, 0x15B])
        draws = [1] * ds.num_classes if cfg.classwise else counts.tolist()
        points = cluster_points(rng, draws, dim, cfg.class_sep)
        noise = np.empty((len(ds), c, h, w), dtype=np.float32)
        for k in range(ds.num_classes):
            idx = np.flatnonzero(labels == k)  # the class's images, in dataset order, get its points in order
            pats = patches_to_images(points[k], (c, h, w), cfg.patch_size)
            noise[idx] = pats if not cfg.classwise else np.broadcast_to(pats, (len(idx), c, h, w))
        norms = np.linalg.norm(noise.reshape(len(noise), -1), axis=1)
        eps = self.budget()
        delta = torch.from_numpy(noise / np.maximum(norms, 1e-12)[:, None, None, None] * eps).float()
        return Perturbation(quantize_l2(delta, eps), epoch_equivalents=0.0, extra={"lsp_features": dim})
