"""How visible a poison is: PSNR and SSIM of every poisoned image against its clean original.

    stats = imperceptibility(poison.images, clean.images[poison.indices], poison.indices)
    stats["psnr_mean"], stats["psnr_worst"], stats["psnr_worst_index"], stats["ssim_mean"], ...

Image against image, so a perturbation that is not additive (CUDA's blur, a colour shift) is measured the same way.
Both metrics are computed on the baked uint8 images, the bytes a victim downloads:

- **data range** 255 (uint8 grey levels; the same numbers as data_range=1 on images divided by 255).
- **PSNR** per image = 10 log10(255^2 / MSE), the MSE over all of an image's values (every channel and pixel). An
  image identical to its original has an infinite PSNR: it is left out of the PSNR mean and the worst image, and
  counted (`unchanged`); a poison that changes no image has no PSNR (None).
- **SSIM** per image as scikit-image's `structural_similarity` computes it with its defaults (Wang et al. 2004, with
  skimage's conventions): a 7x7 **uniform** window (gaussian_weights=False), sample covariance (N / (N - 1)),
  K1 = 0.01, K2 = 0.03, C1 = (K1 * 255)^2, C2 = (K2 * 255)^2; the SSIM map is averaged over the window positions that
  lie wholly inside the image (skimage crops the (7 - 1) / 2 = 3 pixels of border its filter padded), and **each
  channel is computed alone and the channels averaged** (channel_axis). No grayscale conversion, no downsampling.
  Images smaller than 7 pixels a side use the largest odd window that fits (at least 3; below that SSIM is None).
  These are also the settings DUNE (wxldragon/DUNE, generate_unlearnable.py) scores its own poisons with:
  `ssim(clean, poisoned, channel_axis=-1, data_range=1)` on [0,1] images.

The SSIM here is vectorised (the five window sums of a few dozen images at a time, as two separable sliding sums),
not a loop over skimage: equal to skimage's to 1e-13 per image (tests/test_imperceptibility.py). Cost, measured by
benchmarks/imperceptibility_cost.py on the shared CIFAR-10 subset (5,085 images of 32x32, one thread of a busy
2-core AMD EPYC): PSNR and SSIM of every image in 0.4-1.0 s, skimage's per-image loop 1.7-3.3 s. SSIM reads every
image up to 2^28 pixel values (all of CIFAR-10/100 or SVHN, about 15 s); past that, an evenly spaced selection.

The numbers are derived from the images, so they sit outside a poison's content hash (poison.DERIVED_META): a file
written before they existed, or without them, has the same content hash as one with them.
"""

from __future__ import annotations

import math
from typing import Any

import torch

DATA_RANGE = 255.0
SSIM_WINDOW = 7
K1, K2 = 0.01, 0.03
CHUNK_VALUES = 1 << 16  # pixel values per pass (21 CIFAR images): small enough to stay in cache (measured fastest)
MAX_SSIM_VALUES = 1 << 28  # SSIM over every image up to this many pixel values (about 15 s on one CPU thread)
SETTINGS = (
    "uint8 images, data range 255; PSNR per image over all values; SSIM as skimage's structural_similarity defaults: "
    "7x7 uniform window, sample covariance, K1=0.01, K2=0.03, border of 3 cropped, per channel then averaged"
)
KEYS = (
    "images",
    "unchanged",
    "ssim_images",
    "psnr_mean",
    "psnr_worst",
    "psnr_worst_index",
    "ssim_mean",
    "ssim_worst",
    "ssim_worst_index",
    "settings",
)


def psnr(poisoned: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB (N,) float64 of two uint8 (N, C, H, W) batches; inf where an image is unchanged."""
    d = poisoned.double() - clean.double()
    mse = d.flatten(1).pow(2).mean(dim=1)
    return 10.0 * torch.log10(DATA_RANGE**2 / mse)  # mse 0 -> inf


def ssim_window(h: int, w: int) -> int | None:
    """The SSIM window for h x w images: 7, or the largest odd size that fits (None below 3)."""
    win = min(SSIM_WINDOW, h, w)
    win -= 1 - win % 2
    return win if win >= 3 else None


def ssim(poisoned: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (N,) float64 of two uint8 (N, C, H, W) batches, with the settings in the module's docstring
    (skimage's structural_similarity defaults, per channel, channels averaged)."""
    if poisoned.dtype != torch.uint8 or clean.dtype != torch.uint8:
        raise ValueError(f"SSIM is computed on uint8 images, got {poisoned.dtype} and {clean.dtype}")
    n, c, h, w = clean.shape
    win = ssim_window(h, w)
    if win is None:
        raise ValueError(f"images of {h}x{w} are too small for SSIM (a window of at least 3x3)")
    # The window sums of x, y, x^2, y^2 and xy at every position wholly inside the image (the positions skimage keeps
    # after cropping its padded border). Integers below 49 * 255^2 < 2^24 at every step of the two separable sums, so
    # float32 holds them exactly (3-5x faster than float64); the formula itself is evaluated in float64.
    x, y = clean.float(), poisoned.float()
    moments = torch.stack([x, y, x * x, y * y, x * y])
    sums = moments.unfold(-1, win, 1).sum(-1).unfold(-2, win, 1).sum(-1).double()
    ux, uy, xx, yy, xy = sums / (win * win)
    cov_norm = win * win / (win * win - 1.0)  # sample covariance, as skimage's use_sample_covariance=True
    vx, vy, vxy = cov_norm * (xx - ux * ux), cov_norm * (yy - uy * uy), cov_norm * (xy - ux * uy)
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(2).mean(dim=2).mean(dim=1)  # each channel's map averaged, then the channels


def imperceptibility(
    poisoned: torch.Tensor, clean: torch.Tensor, indices: torch.Tensor, max_ssim_values: int = MAX_SSIM_VALUES
) -> dict[str, Any]:
    """PSNR and SSIM of each poisoned image against its clean original: the per-image means, the worst image of each
    (lowest PSNR, lowest SSIM) with its dataset index (`indices`), how many images are unchanged, and the settings.
    Plain JSON values (None where there is nothing to report), as a poison's metadata keeps them.

    PSNR reads every image. SSIM reads every image up to `max_ssim_values` pixel values in all (2^28: all of CIFAR-10,
    CIFAR-100 or SVHN); past that, an evenly spaced selection of images that fits, and `ssim_images` says how many."""
    if poisoned.shape != clean.shape or poisoned.ndim != 4:
        raise ValueError(f"poisoned {tuple(poisoned.shape)} and clean {tuple(clean.shape)} images differ in shape")
    n, per_image = len(poisoned), math.prod(clean.shape[1:])
    chunk = max(1, CHUNK_VALUES // max(per_image, 1))
    p = torch.cat([psnr(poisoned[i : i + chunk], clean[i : i + chunk]) for i in range(0, n, chunk)] or [_empty()])
    changed = torch.isfinite(p)
    out: dict[str, Any] = {"images": n, "unchanged": int((~changed).sum())}
    out.update(_summary("psnr", p[changed], indices[changed]))
    rows = torch.arange(n)
    if ssim_window(*clean.shape[2:]) is None:
        rows = rows[:0]
    elif n * per_image > max_ssim_values:
        rows = torch.linspace(0, n - 1, max(1, max_ssim_values // per_image)).round().long().unique()
    s = torch.cat(
        [ssim(poisoned[r], clean[r]) for r in (rows[i : i + chunk] for i in range(0, len(rows), chunk))] or [_empty()]
    )
    out["ssim_images"] = len(rows)
    out.update(_summary("ssim", s, indices[rows]))
    out["settings"] = SETTINGS
    return out


def _empty() -> torch.Tensor:
    return torch.empty(0, dtype=torch.float64)


def _summary(name: str, values: torch.Tensor, indices: torch.Tensor) -> dict[str, Any]:
    if not len(values):
        return {f"{name}_mean": None, f"{name}_worst": None, f"{name}_worst_index": None}
    k = int(values.argmin())  # the first of equals: the lowest dataset position among the poison's order
    return {
        f"{name}_mean": _finite(float(values.mean())),
        f"{name}_worst": _finite(float(values[k])),
        f"{name}_worst_index": int(indices[k]),
    }


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def is_valid(stats: Any) -> bool:
    """Whether a poison file's `imperceptibility` holds the numbers this module writes (a file is untrusted: a value
    of another type is shown as missing, never used)."""
    if not isinstance(stats, dict) or not stats:
        return False
    for key in ("psnr_mean", "psnr_worst", "ssim_mean", "ssim_worst"):
        v = stats.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            return False
    return True


def summary(stats: Any) -> dict[str, Any] | None:
    """The numbers of a poison's `imperceptibility` without the settings line (what `uebench craft` and `uebench
    import` print); None where the poison has none (a file of an earlier uebench, an unpaired poison)."""
    if not is_valid(stats):
        return None
    return {k: stats.get(k) for k in KEYS if k != "settings"}
