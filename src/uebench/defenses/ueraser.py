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
for K no-grad forwards plus one training pass instead of K training passes. APBench switches Max to Lite after
`repeat_epoch` epochs (300, i.e. never within its 200); this hook has no epoch, so Max is Max throughout.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from . import _ops
from .base import Defense, check, check_type, device_generator, loss_per_sample, rand, register_defense, uniform


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
    repeats: int = 5  # K draws per image; 1 = UEraser-Lite
    p_brightness: float = 0.5
    brightness_roughness: tuple[float, float] = (0.3, 0.7)
    brightness_intensity: tuple[float, float] = (0.5, 1.0)
    p_contrast: float = 0.5
    contrast_roughness: tuple[float, float] = (0.3, 0.7)
    p_shuffle: float = 0.5
    trivial_augment: bool = True
    chunk: int = 2048  # images per scoring forward pass (memory bound for large K x batch)

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


@register_defense
class UEraser(Defense):
    name = "ueraser"
    kind = "augment"
    description = (
        "UEraser-Max: plasma brightness/contrast, channel shuffle, TrivialAugment; train on the max-loss of 5 draws"
    )
    source = "UEraser (Qin et al. 2023) public code (lafeat/ueraser) and APBench defense/ueraser.py (kornia ops, p 0.5; Max: 5 repeats)"
    Config = UEraserConfig

    def augment(self, x: torch.Tensor, generator) -> torch.Tensor:
        """One UEraser draw for every image of x."""
        cfg = self.config
        n, dev = len(x), x.device
        apply = rand((n,), generator, dev) < cfg.p_brightness
        rough = uniform(n, *cfg.brightness_roughness, generator, dev)
        inten = uniform(n, *cfg.brightness_intensity, generator, dev)
        if apply.any():
            i = apply.nonzero().squeeze(1)
            x = x.clone()
            x[i] = _ops.plasma_brightness(x[i], rough[i], inten[i], generator)
        apply = rand((n,), generator, dev) < cfg.p_contrast
        rough = uniform(n, *cfg.contrast_roughness, generator, dev)
        if apply.any():
            i = apply.nonzero().squeeze(1)
            x = x.clone()
            x[i] = _ops.plasma_contrast(x[i], rough[i], generator)
        apply = rand((n,), generator, dev) < cfg.p_shuffle
        x = torch.where(apply.view(-1, 1, 1, 1), _ops.channel_shuffle(x, generator), x)
        if cfg.trivial_augment:
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
        if self.config.repeats == 1:
            return self.augment(x, g), y
        if model is None:
            raise RuntimeError("UEraser-Max needs the model to score its draws: batch(x, y, model=...)")
        chosen, _ = self.select(model, self.candidates(x, g), y, autocast)
        return chosen, y


@dataclass
class UEraserLiteConfig(UEraserConfig):
    repeats: int = 1


@register_defense
class UEraserLite(UEraser):
    name = "ueraser-lite"
    description = "UEraser-Lite: plasma brightness/contrast, channel shuffle, TrivialAugment; one draw per image"
    source = "UEraser (Qin et al. 2023) public code and APBench (repeat_epoch 0 = Lite)"
    Config = UEraserLiteConfig
