"""Batch image operations for UEraser: plasma fractals, plasma brightness/contrast, channel shuffle, and a
TrivialAugment-style random op per image. Float (N, C, H, W) in [0, 1] in and out; every random number comes
from the generator given; no per-image Python loops (one masked pass per operation type)."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .base import rand


# ---- plasma fractal (diamond-square midpoint displacement) ------------------------------------------------
def plasma(n: int, h: int, w: int, roughness: torch.Tensor, generator, device, seed: str = "kornia") -> torch.Tensor:
    """n plasma fractals of size (h, w), values in [0, 1], shape (n, h, w): kornia.contrib.diamond_square's
    construction (TorMentor's variant), which UEraser's kornia augmentations draw.

    Grown on a (2^k + 1)-sided grid and cropped at its top-left corner. The seed is a 3 x K grid (K x 3 for a map
    taller than wide) whose even nodes of its first and last rows are U[0, 1) draws and whose other nodes are the
    means of their neighbours (`seed="full"`: the 3 x 3 seed is all draws, uebench's construction before it was
    checked against kornia, kept so that runs made with it can be told apart). Each level doubles the grid; a new
    node is (1 - s) * (mean of its neighbours) + s * u with s = roughness^level and one full-grid U[0, 1) draw per
    level (diamond nodes first, then square nodes, which see the diamond nodes; a border node has 3 neighbours).
    With the draws in kornia's order (seed (n, 1, 2, K'), then one (n, 1, H_l, W_l) per level) a generator gives
    kornia's maps to float rounding."""
    side_h = 2 ** math.ceil(math.log2(max(h, 3) - 1)) + 1
    side_w = 2 ** math.ceil(math.log2(max(w, 3) - 1)) + 1
    depth = int(min(math.log2(side_h - 1) - 1, math.log2(side_w - 1) - 1))
    seed_h, seed_w = (side_h - 1) // 2**depth + 1, (side_w - 1) // 2**depth + 1
    if seed == "full":
        g = rand((n, seed_h, seed_w), generator, device)
    else:
        g = _corner_seed(n, seed_h, seed_w, generator, device)
    r = roughness.to(device).view(n, 1, 1).float()
    s = torch.ones_like(r)
    for _ in range(depth):
        s = s * r
        g = _double(g, s, rand((n, 2 * g.shape[1] - 1, 2 * g.shape[2] - 1), generator, device))
    return g[:, :h, :w]


def _corner_seed(n: int, rows: int, cols: int, generator, device) -> torch.Tensor:
    """kornia's 3 x K seed (transposed for K x 3): draws at the even nodes of the outer rows, means elsewhere."""
    transpose = cols == 3  # kornia transposes whenever the second side is 3, a square seed too
    if transpose:
        rows, cols = cols, rows
    g = torch.zeros(n, 3, cols, device=device)
    g[:, ::2, ::2] = rand((n, 2, (cols + 1) // 2), generator, device)
    g[:, 1, 1::2] = (g[:, 0, :-2:2] + g[:, 0, 2::2] + g[:, 2, :-2:2] + g[:, 2, 2::2]) / 4.0
    g[:, 0, 1::2] = (g[:, 0, :-2:2] + g[:, 0, 2::2] + g[:, 1, 1::2]) / 3.0
    g[:, 2, 1::2] = (g[:, 2, :-2:2] + g[:, 2, 2::2] + g[:, 1, 1::2]) / 3.0
    g[:, 1, 0] = (g[:, 0, 0] + g[:, 2, 0] + g[:, 1, 1]) / 3.0
    g[:, 1, -1] = (g[:, 0, -1] + g[:, 2, -1] + g[:, 1, -2]) / 3.0
    if cols > 3:
        g[:, 1, 2:-1:2] = (g[:, 0, 2:-1:2] + g[:, 2, 2:-1:2] + g[:, 1, 1:-2:2] + g[:, 1, 3::2]) / 4.0
    return g.transpose(1, 2) if transpose else g


def _double(g: torch.Tensor, s: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One diamond and one square step: (n, a, b) -> (n, 2a - 1, 2b - 1), new nodes mixed with the draws u."""
    n, a, b = g.shape
    out = torch.zeros(n, 2 * a - 1, 2 * b - 1, device=g.device, dtype=g.dtype)
    out[:, ::2, ::2] = g
    su = u * s
    # diamond: the centre of every cell from its 4 corners
    corners = (g[:, :-1, :-1] + g[:, 1:, :-1] + g[:, :-1, 1:] + g[:, 1:, 1:]) * 0.25
    out[:, 1::2, 1::2] = (1 - s) * corners + su[:, 1::2, 1::2]
    # square: every edge midpoint from its up/down/left/right neighbours (3 at the border: their sum times 4/3 / 4)
    padded = F.pad(out, (1, 1, 1, 1))
    around = padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
    weight = torch.full(out.shape[1:], 0.25, device=g.device, dtype=g.dtype)
    weight[0, :] = weight[-1, :] = weight[:, 0] = weight[:, -1] = 0.25 / 0.75
    mean = around * weight
    rows = torch.arange(out.shape[1], device=g.device).view(-1, 1) % 2
    cols = torch.arange(out.shape[2], device=g.device).view(1, -1) % 2
    edge = (rows + cols) == 1
    return torch.where(edge, (1 - s) * mean + su, out)


def plasma_brightness(
    x: torch.Tensor, roughness: torch.Tensor, intensity: torch.Tensor, generator, seed: str = "kornia"
) -> torch.Tensor:
    """kornia RandomPlasmaBrightness: x + intensity * (2 P - 1), one fractal per channel, clamped to [0, 1]."""
    n, c, h, w = x.shape
    p = plasma(n * c, h, w, roughness.repeat_interleave(c), generator, x.device, seed).view(n, c, h, w).to(x.dtype)
    return (x + intensity.view(-1, 1, 1, 1).to(x.dtype) * (2 * p - 1)).clamp(0, 1)


def plasma_contrast(x: torch.Tensor, roughness: torch.Tensor, generator, seed: str = "kornia") -> torch.Tensor:
    """kornia RandomPlasmaContrast: (x - 0.5) * 4 P + 0.5, one fractal per channel, clamped to [0, 1]."""
    n, c, h, w = x.shape
    p = plasma(n * c, h, w, roughness.repeat_interleave(c), generator, x.device, seed).view(n, c, h, w).to(x.dtype)
    return ((x - 0.5) * (4 * p) + 0.5).clamp(0, 1)


def channel_shuffle(x: torch.Tensor, generator) -> torch.Tensor:
    """A random permutation of the channels of each image."""
    n, c = x.shape[:2]
    perm = rand((n, c), generator, x.device).argsort(dim=1)
    return x.gather(1, perm.view(n, c, 1, 1).expand_as(x))


# ---- TrivialAugment: one random op with a random magnitude per image ----------------------------------------
# kornia.augmentation.auto.TrivialAugment's default policy (what UEraser runs), with its magnitude ranges.
TA_OPS = (
    "auto_contrast",
    "equalize",
    "rotate",
    "posterize",
    "solarize",
    "contrast",
    "brightness",
    "sharpness",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
MAX_ROTATE_DEG = 30.0
MAX_SHEAR = 0.3
MAX_TRANSLATE = 0.5  # fraction of the image side
FACTOR_RANGE = (0.1, 1.9)  # contrast, brightness, sharpness (PIL ImageEnhance factors)
POSTERIZE_BITS = (1, 4)  # bits kept (kornia's (0, 4) range would allow 0 bits, a black image; 1..4 here)


def _luma(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:
        w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


def auto_contrast(x: torch.Tensor) -> torch.Tensor:
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp(min=1e-12), x)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """Per-channel histogram equalisation on 256 levels, PIL ImageOps.equalize's lookup table."""
    n, c, h, w = x.shape
    v = (x * 255).round().clamp(0, 255).long().view(n * c, h * w)
    hist = torch.zeros(n * c, 256, device=x.device).scatter_add_(1, v, torch.ones_like(v, dtype=torch.float))
    last_bin = torch.where(hist > 0, torch.arange(256, device=x.device), -1).amax(1, keepdim=True)
    step = ((h * w - hist.gather(1, last_bin)) / 255).floor()
    cum = hist.cumsum(1) - hist
    lut = ((step / 2).floor() + cum).div(step.clamp(min=1)).floor().clamp(max=255)
    lut = torch.where(step > 0, lut, torch.arange(256, device=x.device, dtype=lut.dtype))
    return (lut.gather(1, v) / 255).view(n, c, h, w).to(x.dtype)


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    v = (x * 255).round().clamp(0, 255).long()
    shift = (8 - bits).view(-1, 1, 1, 1)
    return ((v >> shift) << shift).to(x.dtype) / 255


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= threshold.view(-1, 1, 1, 1), 1 - x, x)


def blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: degenerate + factor * (x - degenerate), clamped."""
    f = factor.view(-1, 1, 1, 1).to(x.dtype)
    return (degenerate + f * (x - degenerate)).clamp(0, 1)


def sharpness_degenerate(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter (3x3, centre 5, others 1, /13) inside, the original pixels on the border."""
    n, c, h, w = x.shape
    if h < 3 or w < 3:
        return x
    k = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    k[1, 1] = 5
    k = (k / 13).view(1, 1, 3, 3)
    smooth = F.conv2d(x.reshape(n * c, 1, h, w), k).view(n, c, h - 2, w - 2)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = smooth
    return out


def affine(x: torch.Tensor, op: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Rotate / shear / translate each image (op index into GEOMETRIC) about its centre; bilinear, zero fill."""
    n, _, h, w = x.shape
    m = torch.eye(2, device=x.device).repeat(n, 1, 1)  # output -> input, pixel units about the centre
    t = torch.zeros(n, 2, device=x.device)
    rad = value * math.pi / 180
    is_ = [op == i for i in range(len(GEOMETRIC))]
    cos, sin = torch.cos(rad), torch.sin(rad)
    m[:, 0, 0] = torch.where(is_[0], cos, m[:, 0, 0])
    m[:, 0, 1] = torch.where(is_[0], -sin, torch.where(is_[1], value, m[:, 0, 1]))
    m[:, 1, 0] = torch.where(is_[0], sin, torch.where(is_[2], value, m[:, 1, 0]))
    m[:, 1, 1] = torch.where(is_[0], cos, m[:, 1, 1])
    t[:, 0] = torch.where(is_[3], value * w, t[:, 0])
    t[:, 1] = torch.where(is_[4], value * h, t[:, 1])
    d = torch.tensor([w / 2, h / 2], device=x.device)
    theta = torch.cat([m * d.view(1, 1, 2) / d.view(1, 2, 1), (t / d).unsqueeze(2)], dim=2)  # D^-1 M D, D^-1 t
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def trivial_augment(x: torch.Tensor, generator) -> torch.Tensor:
    """Each image gets one op drawn uniformly from TA_OPS with a uniform magnitude (and a random sign for the
    symmetric ones). Unlike kornia's TrivialAugment, which draws one op for the whole batch, the op is drawn per
    image, as in the TrivialAugment paper."""
    n = len(x)
    dev = x.device
    op = (rand((n,), generator, dev) * len(TA_OPS)).long().clamp_(max=len(TA_OPS) - 1)
    mag = rand((n,), generator, dev)
    sign = torch.where(rand((n,), generator, dev) < 0.5, -1.0, 1.0)
    out = x.clone()

    geo_ids = torch.tensor([TA_OPS.index(g) for g in GEOMETRIC], device=dev)
    geo = torch.isin(op, geo_ids)
    if geo.any():
        i = geo.nonzero().squeeze(1)
        which = (op[i][:, None] == geo_ids[None]).float().argmax(1)  # index into GEOMETRIC
        scale = torch.tensor([MAX_ROTATE_DEG, MAX_SHEAR, MAX_SHEAR, MAX_TRANSLATE, MAX_TRANSLATE], device=dev)[which]
        out[i] = affine(x[i], which, sign[i] * mag[i] * scale)

    lo, hi = FACTOR_RANGE
    factor = lo + (hi - lo) * mag
    for name in TA_OPS:
        if name in GEOMETRIC:
            continue
        i = (op == TA_OPS.index(name)).nonzero().squeeze(1)
        if len(i) == 0:
            continue
        xi = x[i]
        if name == "auto_contrast":
            out[i] = auto_contrast(xi)
        elif name == "equalize":
            out[i] = equalize(xi)
        elif name == "posterize":
            b_lo, b_hi = POSTERIZE_BITS
            bits = (b_lo + (mag[i] * (b_hi - b_lo + 1)).floor().long()).clamp(max=b_hi)
            out[i] = posterize(xi, bits)
        elif name == "solarize":
            out[i] = solarize(xi, mag[i])
        elif name == "contrast":
            mean = _luma(xi).mean(dim=(1, 2, 3), keepdim=True)
            out[i] = blend(mean.expand_as(xi), xi, factor[i])
        elif name == "brightness":
            out[i] = blend(torch.zeros_like(xi), xi, factor[i])
        elif name == "sharpness":
            out[i] = blend(sharpness_degenerate(xi), xi, factor[i])
    return out


def kornia_trivial_augment(x: torch.Tensor, generator) -> torch.Tensor:
    """kornia.augmentation.auto.TrivialAugment itself (what UEraser's code runs): one op of its default policy for
    the whole batch, each image taking it with p 0.5 at a magnitude of its own, kornia's op definitions (additive
    brightness, multiplicative contrast). kornia draws from torch's global generator: it is seeded here from
    `generator` inside a forked RNG state, so a seed gives the same batch and the caller's global state is untouched."""
    seed = int(rand((1,), generator, x.device).mul(2**31 - 1).floor())
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return _kornia_trivial_augment()(x)


@functools.cache
def _kornia_trivial_augment():
    """One kornia TrivialAugment for the process: it holds no state of its own (its draws come from torch's
    generator), and building it costs about as much as running it on a batch of 128 CIFAR images."""
    from kornia.augmentation.auto import TrivialAugment  # imported here: only UEraser needs kornia

    return TrivialAugment()
