"""Augmentation on whole batches of tensors (no per-sample Python, no DataLoader)."""

from __future__ import annotations

import torch


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `pad` and crop back to size at a random offset per image (torchvision's RandomCrop(padding))."""
    if pad == 0:
        return x
    n, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[batch, chan, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(len(x), generator=generator, device="cpu") < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    return random_flip(random_crop(x, pad, generator), generator)


def crop_only(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    return random_crop(x, pad, generator)


# A recipe's `augment` names one of these. Flips matter to class-wise shortcuts: a mirrored AR process is another
# process, so crop+flip makes a victim learn two per class, while a crop leaves a stationary pattern a pattern.
AUGMENTATIONS = {"crop_flip": crop_flip, "crop": crop_only, "none": None}


def to_float(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1]. No mean/std normalisation (the paper's recipe has none)."""
    return images_u8.float().div_(255.0)
