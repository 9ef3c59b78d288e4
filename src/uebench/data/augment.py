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


def grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma (torchvision's rgb_to_grayscale), (N, 1, H, W)."""
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (f * x + (1 - f) * other).clamp_(0, 1)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(1), x.amin(1)
    chroma = maxc - minc
    s = chroma / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    div = torch.where(chroma == 0, torch.ones_like(chroma), chroma)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(chroma == 0, torch.zeros_like(h), h)
    return torch.stack(((h / 6.0) % 1.0, s, maxc), 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p = (v * (1 - s)).clamp(0, 1)
    q = (v * (1 - s * f)).clamp(0, 1)
    t = (v * (1 - s * (1 - f))).clamp(0, 1)
    # sector i of the hue circle picks (r, g, b) from (v, p, q, t)
    table = torch.tensor([[0, 3, 1], [2, 0, 1], [1, 0, 3], [1, 2, 0], [3, 1, 0], [0, 1, 2]], device=x.device)
    parts = torch.stack((v, p, q, t), 1)  # (N, 4, H, W)
    pick = table[i].permute(0, 3, 1, 2)  # (N, 3, H, W): which part each channel takes
    return parts.gather(1, pick)


def _brightness(x, f):
    return _blend(x, torch.zeros_like(x), f)


def _contrast(x, f):
    return _blend(x, grey(x).mean(dim=(1, 2, 3), keepdim=True), f)


def _saturation(x, f):
    return _blend(x, grey(x), f)


def _hue(x, f):
    hsv = rgb_to_hsv(x)
    hsv[:, 0] = (hsv[:, 0] + f[:, 0]) % 1.0
    return hsv_to_rgb(hsv)


def color_jitter(
    x: torch.Tensor, generator: torch.Generator, strength: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.2)
) -> torch.Tensor:
    """torchvision's ColorJitter(brightness, contrast, saturation, hue) per image: factors uniform in [1-s, 1+s]
    (hue: a shift in [-s, s] of the hue circle), the four applied in a random order drawn per image."""
    if x.shape[1] != 3:
        return _brightness(x, _factor(len(x), strength[0], generator, x))  # one channel: brightness alone
    n = len(x)
    ops = (_brightness, _contrast, _saturation, _hue)
    factors = [_factor(n, s, generator, x, shift=k == 3) for k, s in enumerate(strength)]
    order = torch.argsort(torch.rand(n, 4, generator=generator, device="cpu"), dim=1).to(x.device)
    x = x.clone()
    for position in range(4):
        for k, op in enumerate(ops):
            rows = (order[:, position] == k).nonzero().flatten()
            if len(rows):
                x[rows] = op(x[rows], factors[k][rows])
    return x


def _factor(n: int, s: float, generator: torch.Generator, like: torch.Tensor, shift: bool = False) -> torch.Tensor:
    u = torch.rand(n, generator=generator, device="cpu") * 2 - 1
    f = s * u if shift else 1 + s * u
    return f.to(like.device, like.dtype).view(n, 1, 1, 1)


def flip_jitter(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """APBench's ImageNet-100 training transform after the resize: horizontal flip, then ColorJitter(.4, .4, .4, .2)."""
    return color_jitter(random_flip(x, generator), generator)


# A recipe's `augment` names one of these. Flips matter to class-wise shortcuts: a mirrored AR process is another
# process, so crop+flip makes a victim learn two per class, while a crop leaves a stationary pattern a pattern.
AUGMENTATIONS = {"crop_flip": crop_flip, "crop": crop_only, "flip_jitter": flip_jitter, "none": None}


def to_float(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1]. No mean/std normalisation (the paper's recipe has none)."""
    return images_u8.float().div_(255.0)
