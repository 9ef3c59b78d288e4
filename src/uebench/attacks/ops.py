"""OPS: the one-pixel shortcut (Wu, Chen, Tao, Liu; "One-Pixel Shortcut: on the Learning Preference of Deep
Neural Networks", ICLR 2023).

For each class in turn, OPS searches every pixel position and every "boundary" colour (the 2^C corners of the
colour cube: 8 for RGB, black and white for grayscale) for the one that changes the class's images most
*consistently*: it maximises mean(|change|) / std(|change|), the statistics taken over all the class's images and
channels at that position. Every image of the class then gets that pixel set to that colour. The result is
class-wise (one position and colour per class), L0 = 1 pixel.

Vectorised: with x in grey levels and a colour bit b per channel, |change| is x (b = 0) or 255 - x (b = 1), so
the sums of |change| and |change|^2 over a class follow from the class's per-pixel sums of x and x^2. The search
is exact integer arithmetic over all positions and colours at once (deterministic, no float summation order).

Where the public code differs (APBench `attack/ops_poisons.py`)
- It loops over `range(10)` classes: any other number of classes is silently wrong. Here: any number.
- It loops over positions and colours in Python (H*W*8 numpy passes per class); here one vectorised pass.
- With `sparsity` > 1 it can pick one position twice with two colours; here a class's pixels are distinct.
Kept from it: a (position, colour) pair already taken by an earlier class is not offered again, so classes get
distinct shortcuts; positions are searched in row-major order and ties go to the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from ..core.errors import UserError
from ..core.options import MAX_IMAGE_SIZE, Count
from ..data.base import ImageDataset
from .base import Attack, Perturbation, register_attack


@dataclass
class OPSConfig:
    pixels: Annotated[int, Count(MAX_IMAGE_SIZE**2)] = 1  # pixels set per class (paper: 1; APBench's `sparsity`)

    def __post_init__(self) -> None:
        if not isinstance(self.pixels, int) or isinstance(self.pixels, bool) or self.pixels < 1:
            raise ValueError(f"pixels must be a whole number >= 1, got {self.pixels!r}")


def corner_colours(channels: int) -> np.ndarray:
    """(2^C, C) colours at the corners of the colour cube, in {0, 1}; channel 0 is the most significant bit."""
    codes = np.arange(2**channels)
    return ((codes[:, None] >> np.arange(channels - 1, -1, -1)[None]) & 1).astype(np.int64)


def scores(images: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """mean(|change|) / std(|change|) for every (position, colour): (H*W, L) float64.

    images: (n, C, H, W) uint8 of one class; colours: (L, C) in {0, 1}. A change that is the same nonzero amount
    in every image scores +inf (the perfect shortcut); a position that no image would change scores 0.
    """
    n, c, h, w = images.shape
    x = images.astype(np.int64).reshape(n, c, h * w)
    s1 = x.sum(axis=0)  # (C, P) sum of grey levels
    s2 = (x * x).sum(axis=0)  # (C, P) sum of squares
    on = colours[:, :, None].astype(bool)  # (L, C, 1): channel set to 255 (else to 0)
    # sum over images of |change| and |change|^2, per colour and channel, then over channels
    a1 = np.where(on, n * 255 - s1[None], s1[None]).sum(axis=1)  # (L, P)
    a2 = np.where(on, n * 255 * 255 - 2 * 255 * s1[None] + s2[None], s2[None]).sum(axis=1)
    m = n * c
    var_num = m * a2 - a1 * a1  # m^2 * variance, exact in int64
    with np.errstate(divide="ignore", invalid="ignore"):
        score = a1 / np.sqrt(var_num.astype(np.float64))  # = mean / std
    score = np.where(var_num == 0, np.where(a1 > 0, np.inf, 0.0), score)
    return score.T  # (P, L)


def search(images: np.ndarray, labels: np.ndarray, num_classes: int, pixels: int) -> list[list[tuple[int, int]]]:
    """Per class, the chosen (position, colour index) pairs, greedily in class order."""
    n, c, h, w = images.shape
    colours = corner_colours(c)
    taken = np.zeros((h * w, len(colours)), dtype=bool)  # pairs used by earlier classes
    chosen: list[list[tuple[int, int]]] = []
    for k in range(num_classes):
        members = images[labels == k]
        mine: list[tuple[int, int]] = []
        if len(members):
            s = np.where(taken, -np.inf, scores(members, colours))
            order = np.argsort(-s, axis=None, kind="stable")  # best first, ties to the first position/colour
            used_pos: set[int] = set()
            for flat in order:
                pos, col = divmod(int(flat), len(colours))
                if taken[pos, col] or pos in used_pos:
                    continue
                mine.append((pos, col))
                used_pos.add(pos)
                if len(mine) == pixels:
                    break
            if len(mine) < pixels:
                raise UserError(
                    f"ops: class {k} found only {len(mine)} free (pixel, colour) pairs of the {pixels} it needs"
                )
            for pos, col in mine:
                taken[pos, col] = True
        chosen.append(mine)
    return chosen


def apply_pixels(images: np.ndarray, labels: np.ndarray, chosen: list[list[tuple[int, int]]]) -> np.ndarray:
    """The float delta ([0,1] units) that sets each image's class pixels to their colours."""
    n, c, h, w = images.shape
    colours = corner_colours(c) * 255
    delta = np.zeros((n, c, h * w), dtype=np.float32)
    flat = images.reshape(n, c, h * w).astype(np.float32)
    for k, pairs in enumerate(chosen):
        idx = np.flatnonzero(labels == k)
        for pos, col in pairs:
            delta[idx, :, pos] = (colours[col][None, :] - flat[idx, :, pos]) / 255.0
    return delta.reshape(n, c, h, w)


@register_attack
class OPS(Attack):
    name = "ops"
    norm = "l0"
    description = (
        "one-pixel shortcut: per class, the pixel and colour-cube "
        "corner maximising mean/std of the change (Wu et al. 2023)"
    )
    Config = OPSConfig
    presets = {"fast": {}}  # model-free: the paper's settings already take seconds

    def budget(self) -> float:
        return float(self.config.pixels)

    def validate(self, ds: ImageDataset) -> None:
        super().validate(ds)
        c, h, w = ds.shape
        if c > 8:
            raise UserError(
                f"ops: images with {c} channels would have 2^{c} corner colours; OPS handles up to 8 channels"
            )
        pairs = h * w * 2**c
        need = self.config.pixels * ds.num_classes
        if self.config.pixels > h * w or need > pairs:
            raise UserError(
                f"ops: {ds.num_classes} classes x {self.config.pixels} pixel(s) "
                f"need {need} distinct (pixel, colour) shortcuts; "
                f"{h}x{w} images with {2**c} corner colours offer only {pairs}"
            )

    def perturb(self, ds: ImageDataset, *, seed: int, progress: bool) -> Perturbation:
        images = ds.images.numpy()
        labels = ds.labels.numpy()
        chosen = search(images, labels, ds.num_classes, self.config.pixels)
        delta = torch.from_numpy(apply_pixels(images, labels, chosen))
        w = ds.shape[2]
        where = [
            [
                {"row": pos // w, "col": pos % w, "colour": corner_colours(ds.shape[0])[col].tolist()}
                for pos, col in pairs
            ]
            for pairs in chosen
        ]
        # one pass over the class's images to accumulate the statistics: negligible compute
        return Perturbation(delta, epoch_equivalents=0.0, extra={"ops_pixels": where})
