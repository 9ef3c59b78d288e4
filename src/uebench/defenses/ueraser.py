"""UEraser (Qin et al. 2023, "Learning the Unlearnable: Adversarial Augmentations Suppress Unlearnable Example
Attacks"), as its public code and APBench run it: per batch, after crop/flip,

    plasma brightness (p 0.5, roughness U(0.3, 0.7), intensity U(0.5, 1.0))
    -> plasma contrast (p 0.5, roughness U(0.3, 0.7)) -> channel shuffle (p 0.5) -> one TrivialAugment op,

and, for UEraser-Max, K = 5 independent draws per image of which the model trains on the one with the highest
loss (the paper's adversarial augmentation: the mean over images of the max over draws of the loss).
UEraser-Lite (`ueraser-lite`) trains on one draw.

How the max is taken here: the K draws are scored in one no-grad forward pass (model in train mode, as the
public code scores them, batch-norm running statistics restored afterwards), and the chosen draw of each image
is what the trainer then trains on. The gradient is that of the paper's loss (the max picks one draw per image),
for K no-grad forwards plus one training pass instead of K training passes.

Warm-up (`max_epochs`): APBench trains on the max-loss only for its first `repeat_epoch` epochs and on one draw
after ("0 for -lite / 50 for UEraser / 300 for -max"; its default 300 never ends within its 200 epochs). None here
(the default) is Max throughout; `max_epochs=50` is APBench's "UEraser".

Versions of the draw probabilities: the UEraser repository (lafeat/ueraser, ueraser.py) applies the plasma
brightness and contrast with p 0.5, the default here; APBench's defense/ueraser.py at its head (ebd1e4c, 2024-05)
uses p 1.0 (`p_brightness=1 p_contrast=1`), and 0.5 at its first commit (4d60c50, 2023-06).

TrivialAugment: UEraser runs kornia's, and so does this defense (`trivial_augment_impl=kornia`, the default: one op of
its policy per batch, applied to each image with p 0.5 at its own magnitude, kornia's additive brightness and
multiplicative contrast). `trivial_augment_impl=uebench` is uebench's batched version, the only one before: an op
drawn per image (the TrivialAugment paper's), always applied, PIL's ImageEnhance definitions over kornia's magnitude
ranges. The two are not the same augmentation.

JPEG (`jpeg`, `ueraser-jpeg`): the UEraser repository's UEraserJPEG compresses at quality 10 *after* the draw
(`jpeg=after jpeg_quality=10`); APBench's UEraser_jpeg, which its train.py uses for TAP and AR poisons, compresses
*before* the draw at a quality drawn in [10, 100) per batch, with the plasma ops at p 0.8 (the `ueraser-jpeg`
defaults). Its first commit computed the JPEG and then augmented the uncompressed batch (a bug fixed at 6b54d1e).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Annotated

import torch

from ..core.io import recorded
from ..core.options import MAX_EPOCHS, MAX_IMAGES, MAX_REPEATS, Count
from . import _ops
from .base import Defense, check, check_type, device_generator, loss_per_sample, rand, register_defense, uniform
from .jpeg import jpeg_roundtrip

JPEG_PLACES = ("none", "before", "after")
PLASMA_SEEDS = ("kornia", "full")
# options added after runs recorded the defense, with the values that reproduce it as it was before them: absent from
# its params (and so from a run's key) at those values
ADDED_LATER = {
    "max_epochs": None,
    "jpeg": "none",
    "jpeg_quality": None,
    "plasma": "full",
    "trivial_augment_impl": "uebench",
}


def _range(value, name: str) -> None:
    check(
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value),
        f"{name} must be a [low, high] pair, got {value!r}",
    )
    check(0 <= value[0] <= value[1], f"{name} must satisfy 0 <= low <= high, got {value!r}")


@dataclass
class UEraserConfig:
    repeats: Annotated[int, Count(MAX_REPEATS)] = 5  # K draws per image; 1 = UEraser-Lite
    p_brightness: float = 0.5
    brightness_roughness: tuple[float, float] = (0.3, 0.7)
    brightness_intensity: tuple[float, float] = (0.5, 1.0)
    p_contrast: float = 0.5
    contrast_roughness: tuple[float, float] = (0.3, 0.7)
    p_shuffle: float = 0.5
    trivial_augment: bool = True
    chunk: Annotated[int, Count(MAX_IMAGES)] = (
        2048  # images per scoring forward pass (memory bound for large K x batch)
    )
    max_epochs: Annotated[int | None, Count(MAX_EPOCHS, low=0)] = (
        None  # Max-loss for the first N epochs, one draw after (APBench repeat_epoch); None: all
    )
    jpeg: str = "none"  # JPEG compression of each draw: none | before (APBench) | after (UEraser repository)
    jpeg_quality: Annotated[int | None, Count(100)] = (
        None  # None: drawn in [10, 100) per batch (APBench); else fixed (repository: 10)
    )
    # the plasma fractal: kornia's diamond_square (what UEraser draws), or "full", uebench's construction before it
    # was checked against kornia (every seed node drawn: maps about 35% more varied at roughness 0.3)
    plasma: str = "kornia"
    # TrivialAugment: kornia's own (UEraser's: an op per batch, p 0.5 per image, kornia's definitions) or uebench's
    # batched one (an op per image, always applied, PIL's enhance definitions: the only one before). See the module note
    trivial_augment_impl: str = "kornia"

    def __post_init__(self):
        check_type(self.repeats, int, "repeats")
        check(self.repeats >= 1, f"repeats must be >= 1, got {self.repeats}")
        for name in ("p_brightness", "p_contrast", "p_shuffle"):
            v = getattr(self, name)
            check_type(v, (int, float), name)
            check(0 <= v <= 1, f"{name} must be in [0, 1], got {v}")
        for name in ("brightness_roughness", "brightness_intensity", "contrast_roughness"):
            _range(getattr(self, name), name)
            setattr(self, name, tuple(float(v) for v in getattr(self, name)))
        check_type(self.trivial_augment, bool, "trivial_augment")
        check_type(self.chunk, int, "chunk")
        check(self.chunk >= 1, f"chunk must be >= 1, got {self.chunk}")
        if self.max_epochs is not None:
            check_type(self.max_epochs, int, "max_epochs")
            check(self.max_epochs >= 0, f"max_epochs must be >= 0, got {self.max_epochs}")
        check(self.jpeg in JPEG_PLACES, f"jpeg must be one of {', '.join(JPEG_PLACES)}, got {self.jpeg!r}")
        check(self.plasma in PLASMA_SEEDS, f"plasma must be one of {', '.join(PLASMA_SEEDS)}, got {self.plasma!r}")
        impls = ("kornia", "uebench")
        check(self.trivial_augment_impl in impls, f"trivial_augment_impl must be one of {', '.join(impls)}")
        # the constructions uebench used before they were checked against kornia stay for the runs made with them
        for name, old in (("plasma", "full"), ("trivial_augment_impl", "uebench")):
            if getattr(self, name) == old:
                warnings.warn(
                    f"ueraser {name}={old} is deprecated (uebench's construction before the kornia check), removed "
                    "in uebench 0.3.0",
                    FutureWarning,
                    stacklevel=2,
                )
        if self.jpeg_quality is not None:
            check_type(self.jpeg_quality, int, "jpeg_quality")
            check(1 <= self.jpeg_quality <= 95, f"jpeg_quality must be in [1, 95], got {self.jpeg_quality}")


@register_defense
class UEraser(Defense):
    name = "ueraser"
    kind = "augment"
    description = (
        "UEraser-Max: plasma brightness/contrast, channel shuffle, TrivialAugment; train on the max-loss of 5 draws"
    )
    source = (
        "UEraser (Qin et al. 2023) public code (lafeat/ueraser: plasma p 0.5, Max 5 repeats, kornia's plasma maps and "
        "TrivialAugment, checked in tests/test_kornia_parity.py); APBench's head uses p 1.0 (p_brightness=1 "
        "p_contrast=1) and Max for its first repeat_epoch epochs (max_epochs)"
    )
    Config = UEraserConfig

    epoch: int | None = None  # the epoch training is in (begin_epoch); None outside training

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def params(self):
        """The settings, without the later options at the values that reproduce the defense before them (the
        settings an earlier run recorded are then what its run would record now)."""
        return recorded(super().params(), ADDED_LATER)

    def maximising(self) -> bool:
        """Whether this batch trains on the max-loss draw (Max, within its warm-up) or on one draw (Lite)."""
        m = self.config.max_epochs
        return self.config.repeats > 1 and (m is None or self.epoch is None or self.epoch < m)

    def compress(self, x: torch.Tensor, generator) -> torch.Tensor:
        """The batch through JPEG (float [0, 1] -> rounded uint8 -> Pillow at the configured or a drawn quality)."""
        q = self.config.jpeg_quality
        if q is None:
            q = 10 + int(rand((1,), generator, x.device).mul(90).floor().clamp(max=89))
        u8 = x.detach().mul(255).add(0.5).clamp(0, 255).to(torch.uint8).cpu()
        return jpeg_roundtrip(u8, q).to(x.device, x.dtype).div(255).contiguous(memory_format=_format(x))

    def augment(self, x: torch.Tensor, generator) -> torch.Tensor:
        """One UEraser draw for every image of x (with its JPEG, where configured)."""
        if self.config.jpeg == "before":
            x = self.compress(x, generator)
        x = self._draw(x, generator)
        return self.compress(x, generator) if self.config.jpeg == "after" else x

    def _draw(self, x: torch.Tensor, generator) -> torch.Tensor:
        cfg = self.config
        n, dev = len(x), x.device
        apply = rand((n,), generator, dev) < cfg.p_brightness
        rough = uniform(n, *cfg.brightness_roughness, generator, dev)
        inten = uniform(n, *cfg.brightness_intensity, generator, dev)
        if apply.any():
            i = apply.nonzero().squeeze(1)
            x = x.clone()
            x[i] = _ops.plasma_brightness(x[i], rough[i], inten[i], generator, cfg.plasma)
        apply = rand((n,), generator, dev) < cfg.p_contrast
        rough = uniform(n, *cfg.contrast_roughness, generator, dev)
        if apply.any():
            i = apply.nonzero().squeeze(1)
            x = x.clone()
            x[i] = _ops.plasma_contrast(x[i], rough[i], generator, cfg.plasma)
        apply = rand((n,), generator, dev) < cfg.p_shuffle
        x = torch.where(apply.view(-1, 1, 1, 1), _ops.channel_shuffle(x, generator), x)
        if cfg.trivial_augment and cfg.trivial_augment_impl == "kornia":
            x = _ops.kornia_trivial_augment(x, generator)
        elif cfg.trivial_augment:
            x = _ops.trivial_augment(x, generator)
        return x

    def candidates(self, x: torch.Tensor, generator) -> torch.Tensor:
        """(K, N, C, H, W): K independent draws for every image."""
        return torch.stack([self.augment(x, generator) for _ in range(self.config.repeats)])

    @torch.no_grad()
    def scores(self, model, cands: torch.Tensor, y: torch.Tensor, autocast=contextlib.nullcontext) -> torch.Tensor:
        """(K, N) loss of every draw, model in train mode (as training scores them), buffers left untouched."""
        k, n = cands.shape[:2]
        saved = [b.detach().clone() for b in model.buffers()]
        flat, labels = cands.flatten(0, 1), y.repeat(k, *([1] * (y.ndim - 1)))
        try:
            losses = []
            for i in range(0, len(flat), self.config.chunk):
                with autocast():
                    logits = model(flat[i : i + self.config.chunk])
                losses.append(loss_per_sample(logits, labels[i : i + self.config.chunk]))
        finally:
            for b, s in zip(model.buffers(), saved):
                b.copy_(s)
        return torch.cat(losses).view(k, n)

    def select(
        self, model, cands: torch.Tensor, y: torch.Tensor, autocast=contextlib.nullcontext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The highest-loss draw of each image, and the (K, N) losses it was chosen from."""
        losses = self.scores(model, cands, y, autocast)
        best = losses.argmax(0)
        return cands[best, torch.arange(cands.shape[1], device=cands.device)], losses

    def batch(self, x, y, *, model=None, generator=None, autocast=contextlib.nullcontext):
        g = device_generator(generator, x.device)
        if not self.maximising():
            return self.augment(x, g), y
        if model is None:
            raise RuntimeError("UEraser-Max needs the model to score its draws: batch(x, y, model=...)")
        chosen, _ = self.select(model, self.candidates(x, g), y, autocast)
        return chosen, y


@dataclass
class UEraserLiteConfig(UEraserConfig):
    repeats: Annotated[int, Count(MAX_REPEATS)] = 1


@register_defense
class UEraserLite(UEraser):
    name = "ueraser-lite"
    description = "UEraser-Lite: plasma brightness/contrast, channel shuffle, TrivialAugment; one draw per image"
    source = "UEraser (Qin et al. 2023) public code and APBench (repeat_epoch 0 = Lite)"
    Config = UEraserLiteConfig


def _format(x: torch.Tensor) -> torch.memory_format:
    return (
        torch.channels_last
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        else torch.contiguous_format
    )


@dataclass
class UEraserJPEGConfig(UEraserConfig):
    p_brightness: float = 0.8
    p_contrast: float = 0.8
    jpeg: str = "before"


@register_defense
class UEraserJPEG(UEraser):
    name = "ueraser-jpeg"
    description = "UEraser-Max with JPEG before each draw (quality drawn in [10, 100)), plasma ops at p 0.8"
    source = (
        "APBench defense/ueraser.py UEraser_jpeg at ebd1e4c (its train.py's choice for TAP and AR); the UEraser "
        "repository's UEraserJPEG is jpeg=after jpeg_quality=10 p_brightness=0.5 p_contrast=0.5"
    )
    Config = UEraserJPEGConfig
