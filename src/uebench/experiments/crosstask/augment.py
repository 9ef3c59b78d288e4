"""Random crop (pad 4) + horizontal flip applied jointly to a batch of images and their dense targets.

The victim recipe's augmentation (uebench.data.augment) moves pixels; a dense target must move with them. One
draw of offsets and flips per image is applied to the images and to every dense target, and the padded border
of a target gets that task's `pad` value, which its loss ignores (an image pads with 0, as the trainer does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw(n: int, pad: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image crop offsets (dy, dx) in [0, 2 pad] and flip flags, from the CPU generator."""
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return dy, dx, flip


def apply(
    t: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int, value: float
) -> torch.Tensor:
    """Crop-and-flip a (N, H, W) or (N, C, H, W) tensor with given offsets; the border gets `value`."""
    squeeze = t.ndim == 3
    x = t[:, None] if squeeze else t
    n, c, h, w = x.shape
    dev = x.device
    xp = (
        F.pad(x, (pad, pad, pad, pad), value=value)
        if x.is_floating_point()
        else F.pad(x, (pad, pad, pad, pad), value=int(value))
    )
    rows = (dy.to(dev)[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = dx.to(dev)[:, None] + torch.arange(w, device=dev)
    cols = torch.where(flip.to(dev)[:, None], cols.flip(1), cols)[:, None, None, :]
    out = xp[
        torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None], rows, cols
    ]
    return out[:, 0] if squeeze else out


def crop_flip_joint(
    x: torch.Tensor, targets: dict[str, torch.Tensor], pads: dict[str, float], generator: torch.Generator, pad: int = 4
):
    """(augmented images, augmented targets): dense targets (ndim >= 3) move with the pixels, others stay."""
    dy, dx, flip = draw(len(x), pad, generator)
    out_x = apply(x, dy, dx, flip, pad, 0.0)
    out_t = {k: apply(v, dy, dx, flip, pad, pads[k]) if v.ndim >= 3 else v for k, v in targets.items()}
    return out_x, out_t
