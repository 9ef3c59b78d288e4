"""AR: autoregressive perturbations (Sandoval-Segura, Singla, Geiping, Goldblum, Goldstein, Jacobs;
"Autoregressive Perturbations for Data Poisoning", NeurIPS 2022).

Every class gets its own 2D autoregressive (AR) process, one 3x3 process per channel: a pixel is a fixed linear
combination of the 8 pixels above and to its left in the 3x3 window whose bottom-right corner it is,

    x[i, j] = sum_{(a, b) != (2, 2)} coef[a, b] * x[i - 2 + a, j - 2 + b].

Each image gets its own sample of its class's process: a Gaussian start of (C, H + crop, W + crop), the recursion
run over it in raster order, the top-left `crop` rows and columns (the random start and the transient) dropped,
and the result scaled to L2 = eps (1.0 in the paper, [0, 1] pixel units). A matching filter (the coefficients
with -1 at the output position) gives exactly zero response on its own process and a large one on the others':
a shortcut one convolution filter can read, although no pixel moves by more than a few grey levels.

Coefficients are sampled as the paper's public parameter finder (autoregressive_param_finder.py) does: Gaussian,
zero at the output position, each channel normalised to sum to 1. A process is kept when its generated patterns
stay bounded (`stability`, below) and when it is separable from the processes kept before it: every earlier
process's matching filter responds to the new process's pattern with at least `min_response` (sum of ReLU of the
response; the public finder's "required_nm_response": 10 for CIFAR-10, 3 for CIFAR-100).

Stability (`stability`):
- "authors" (default): the public finder's test. On `trials` (3) random starts, the 3x32x32 pattern (cropped
  from 36x36) must be finite with joint L2 norm over all channels <= `l2_bound` (its `gen_norm_upper_bound`: 50
  since 2022, a per-element RMS of 50 / sqrt(3072) = 0.90 against the unit-variance start; its help text says
  l_inf, but the norm it bounds is generate(p=2)'s).
- "rms": each channel's RMS <= `rms_bound` (3) on its own: about 3x looser (uebench's rule before it followed the
  finder). Re-tested on fresh starts, 50-80% of the 10 CIFAR-10 processes it keeps pass the authors' test, against
  75-100% of the authors' rule's (the test is random, so even the finder's own processes fail it at times).
Both also refuse a constant pattern (a colour shift, not an AR texture).

Published coefficients (`coefficients=PATH`) are used exactly, class k getting row k, with no stability or
separation selection: the authors' `torch.save` layout (params-classes-10-mr-10.pt: a list of (3, 3, 3) tensors;
params-classes-100-mr-3.pt: one (100, 3, 3, 3) tensor), read with torch.load(weights_only=True), or a .npy of
shape (classes, C, 3, 3). The noise samples still come from the seed; the processes do not.

Where the public code differs
- APBench generates AR poisons with `--eps 8/255` by default, a budget read as L2, about 32x smaller than the
  paper's L2 = 1.0. Here eps is 1.0 and the budget is checked on the baked uint8 images.
- The 100-class coefficients APBench ships (attack/data/params-classes-100-mr-3.pt, the authors' file before
  their 2024 fix "fix process at index 9 for cifar-100") contain an exploding process: class 9's patterns reach
  an RMS of ~1e124 before scaling, so its poisons are inf/NaN. Here sampled processes are stability-tested for any
  number of classes, and a coefficient file whose process explodes (pattern RMS > 1e3) is refused.
- The public finder draws a 3-channel process at once and rejects it when it explodes (about three in four random
  channels do). Here channels are drawn one by one and a channel that alone breaks the bound (its own L2 norm is
  part of the joint one) is dropped at once; the survivors are grouped in threes and the joint test runs on the
  same starts. The distribution is the finder's (independent channels, conditioned on the joint test) at a
  fraction of the cost.
- The finder's bound is for 3x32x32 patterns. For other image shapes the bound keeps its RMS:
  l2_bound * sqrt(C*H*W / 3072); the separation threshold likewise scales with sqrt(#filter positions / 900).
- The float perturbation is placed on the uint8 grid so that its L2 norm is as close to eps as possible without
  exceeding it (poison.quantize_l2); the public export rounds after clipping, so its norm drifts either way.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from ..core.errors import UserError
from ..core.options import MAX_IMAGE_SIZE, MAX_STEPS, Count
from ..data.base import ImageDataset
from ..poisons.poison import quantize_l2
from .base import Attack, Perturbation, register_attack

KERNEL = 3  # the paper's 3x3 processes
CHUNK = 2048  # images generated at once
STABILITY = ("authors", "rms")
AUTHORS_ELEMENTS = 3 * 32 * 32  # the public finder's l2 bound is on 3x32x32 patterns
EXPLODES = 1e3  # pattern RMS (start noise: 1) above which a process explodes; stable ones stay below ~3, bad ones 1e7+


@dataclass
class ARConfig:
    eps: float = 1.0  # L2 budget per image, [0,1] pixel units (paper: 1.0)
    crop: Annotated[int, Count(MAX_IMAGE_SIZE, low=0)] = (
        4  # generate at (H + crop, W + crop), drop the first `crop` rows and columns (paper: 36 -> 32)
    )
    stability: str = "authors"  # "authors": joint L2 of each 3x32x32 pattern <= l2_bound; "rms": per channel RMS
    l2_bound: float = 50.0  # the public finder's gen_norm_upper_bound (stability="authors")
    rms_bound: float = 3.0  # per-channel RMS bound, the start noise having RMS 1 (stability="rms")
    trials: Annotated[int, Count(MAX_STEPS)] = (
        3  # patterns per candidate process in the stability test (public finder: 3)
    )
    min_response: float | None = None  # class separation; None: 10 up to 10 classes, else 3 (the public values)
    max_candidates: Annotated[int, Count(MAX_STEPS)] = (
        200_000  # give up (with a clear error) after this many sampled channels
    )
    coefficients: str | None = None  # a published coefficient file (.pt as the authors save it, or .npy), used exactly

    def __post_init__(self) -> None:
        if not _positive(self.eps):  # NaN, inf, 0, negative or not a number: no budget (the upper end: validate())
            raise ValueError(f"eps must be positive and finite (L2, [0,1] pixel units; paper: 1), got {self.eps!r}")
        if self.stability not in STABILITY:
            raise ValueError(f"stability must be one of {', '.join(STABILITY)}, got {self.stability!r}")
        for name in ("l2_bound", "rms_bound"):
            if not _positive(getattr(self, name)):
                raise ValueError(f"{name} must be finite and > 0, got {getattr(self, name)!r}")
        if self.crop < 0 or self.trials < 1 or self.max_candidates < 1:
            raise ValueError("crop >= 0, trials >= 1 and max_candidates >= 1 are required")
        if self.coefficients is not None and not isinstance(self.coefficients, str):
            raise ValueError(f"coefficients must be a file path, got {self.coefficients!r}")


def _positive(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def ar_generate(coef: np.ndarray, field: np.ndarray) -> np.ndarray:
    """Run 3x3 causal AR processes over `field` and return the result (a new array).

    coef: (M, 3, 3), one process per row (coef[:, 2, 2] is ignored: the output position);
    field: (M, S, T) float64 starts. Rows and columns 0 and 1 keep their start values, as in the paper.
    """
    x = np.ascontiguousarray(field.transpose(1, 2, 0), dtype=np.float64)
    return np.ascontiguousarray(_run(coef, x).transpose(2, 0, 1))


def _run(coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    """ar_generate on an (S, T, M) field, in place: the M fields last in memory, so every step reads contiguous
    memory. Vectorised over the fields; within a row only the two left neighbours are sequential."""
    s, t, m = x.shape
    if s < KERNEL or t < KERNEL:
        return x
    c = coef.astype(np.float64)
    left2, left1 = c[:, 2, 0], c[:, 2, 1]
    for i in range(2, s):
        # contribution of the two rows above, for every output column j = 2..T-1 at once
        up = sum(c[:, a, b] * x[i - 2 + a, b : t - 2 + b] for a in range(2) for b in range(KERNEL))
        row = x[i]
        for j in range(2, t):
            v = up[j - 2]
            v += left2 * row[j - 2]
            v += left1 * row[j - 1]
            row[j] = v
    return x


def sample_channels(rng: np.random.Generator, n: int) -> np.ndarray:
    """n candidate 3x3 coefficient sets: Gaussian, zero at the output position, normalised to sum to 1."""
    c = rng.standard_normal((n, KERNEL, KERNEL))
    c[:, 2, 2] = 0.0
    return c / c.sum(axis=(1, 2), keepdims=True)


def stable(
    coef: np.ndarray, rng: np.random.Generator, size: tuple[int, int], crop: int, trials: int, rms_bound: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which candidate channels stay finite, non-constant and at RMS <= rms_bound on `trials` random starts each;
    each trial's sum of squares of the cropped pattern, (trials, K) (inf where a channel was dropped before that
    trial); and each candidate's last pattern, (size[0], size[1], K) (meaningful where stable)."""
    ok = np.ones(len(coef), dtype=bool)
    sumsq = np.full((trials, len(coef)), np.inf)
    last = np.zeros((size[0], size[1], len(coef)))
    for t in range(trials):  # most candidates fail the first trial: go on with the survivors only
        live = np.flatnonzero(ok)
        x = rng.standard_normal((size[0] + crop, size[1] + crop, len(live)))
        with np.errstate(all="ignore"):
            out = _run(coef[live], x)[crop:, crop:]
            ss = np.sum(out**2, axis=(0, 1))
            rms = np.sqrt(ss / (size[0] * size[1]))
            spread = out.std(axis=(0, 1))  # a constant pattern is a colour shift, not an AR texture
        ok[live] = np.isfinite(rms) & (rms <= rms_bound) & (rms > 1e-6) & (spread > 1e-3 * np.maximum(rms, 1e-12))
        sumsq[t, live] = np.where(np.isfinite(ss), ss, np.inf)
        last[:, :, live] = np.nan_to_num(out)
    return ok, sumsq, last


def joint_bound(cfg: ARConfig, channels: int, size: tuple[int, int]) -> float:
    """The authors' L2 bound for a (channels, *size) pattern: l2_bound at 3x32x32, the same RMS elsewhere."""
    return cfg.l2_bound * math.sqrt(channels * size[0] * size[1] / AUTHORS_ELEMENTS)


def channel_rms_bound(cfg: ARConfig, channels: int, size: tuple[int, int]) -> float:
    """The per-channel RMS a channel must stay under: rms_bound, or for the authors' joint test the RMS at which
    this channel alone breaks the joint bound (a cheap first cut; the joint test runs after)."""
    if cfg.stability == "rms":
        return cfg.rms_bound
    return joint_bound(cfg, channels, size) / math.sqrt(size[0] * size[1])


def joint_ok(sumsq: np.ndarray, bound: float) -> np.ndarray:
    """The authors' test on per-channel sums of squares (trials, P, C): every trial's pattern has L2 <= bound."""
    with np.errstate(invalid="ignore"):
        return (np.sqrt(sumsq.sum(axis=2)) <= bound).all(axis=0)


def stable_processes(coefs: np.ndarray, rng: np.random.Generator, size: tuple[int, int], cfg: ARConfig) -> np.ndarray:
    """Which (P, C, 3, 3) processes pass cfg.stability on cfg.trials random starts each: (P,) bool."""
    p, c = coefs.shape[:2]
    flat = coefs.reshape(p * c, KERNEL, KERNEL)
    ok, sumsq, _ = stable(flat, rng, size, cfg.crop, cfg.trials, channel_rms_bound(cfg, c, size))
    ok = ok.reshape(p, c).all(axis=1)
    if cfg.stability == "authors":
        ok &= joint_ok(sumsq.reshape(cfg.trials, p, c), joint_bound(cfg, c, size))
    return ok


def matching_filter(coef: np.ndarray) -> torch.Tensor:
    """(1, C, 3, 3) filter whose response to the process's own output is zero: coefficients, -1 at the output."""
    f = torch.from_numpy(coef.copy())
    f[:, 2, 2] = -1.0
    return f.unsqueeze(0)


def response(patterns: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Sum of ReLU of each filter's response to each (C, H, W) pattern (the public finder's test): (B, K)."""
    if not len(filters):
        return torch.zeros(len(patterns), 0, dtype=patterns.dtype)
    return torch.nn.functional.conv2d(patterns, filters).clamp_min(0).sum(dim=(2, 3))


def sample_processes(
    num_classes: int, channels: int, size: tuple[int, int], cfg: ARConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(num_classes, C, 3, 3) stable, mutually separable AR coefficients, from a seeded RNG, and the joint L2
    norms of each kept process's stability-test patterns, (num_classes, trials) (the authors' test: all <= 50).

    Greedy, as the public parameter finder: a candidate that passes cfg.stability is kept when every kept
    process's matching filter responds to one of its (unit-norm) patterns with at least `min_response`.
    Candidates are drawn and tested in batches so that the raster-order recursion runs once per batch, not once
    per candidate.
    """
    min_response = cfg.min_response if cfg.min_response is not None else (10.0 if num_classes <= 10 else 3.0)
    # the public thresholds are for 32x32; a unit-norm pattern's summed response grows with sqrt(#positions)
    min_response *= math.sqrt(max(size[0] - 2, 1) * max(size[1] - 2, 1) / 900.0)
    channel_rms, bound = channel_rms_bound(cfg, channels, size), joint_bound(cfg, channels, size)
    kept: list[np.ndarray] = []
    kept_norms: list[np.ndarray] = []
    filters = torch.zeros(0, channels, KERNEL, KERNEL, dtype=torch.float64)
    drawn = 0
    batch = 512
    while len(kept) < num_classes:
        if drawn >= cfg.max_candidates:
            raise UserError(
                f"ar: found only {len(kept)} of {num_classes} stable, separable AR processes in {drawn} candidate "
                f"channels; lower min_response (now {min_response:.3g}) or raise max_candidates"
            )
        cand = sample_channels(rng, batch)
        drawn += batch
        ok, sumsq, last = stable(cand, rng, size, cfg.crop, cfg.trials, channel_rms)
        good = np.flatnonzero(ok)
        good = good[: len(good) // channels * channels].reshape(-1, channels)
        if cfg.stability == "authors":  # consecutive stable channels make a process; the joint test on their starts
            good = good[joint_ok(sumsq[:, good], bound)]
        if not len(good):
            continue
        # a process's test pattern is its channels' last stability patterns (the finder's last `gen`)
        triples = cand[good.ravel()].reshape(-1, channels, KERNEL, KERNEL)
        patterns = last[:, :, good.ravel()].transpose(2, 0, 1).reshape(len(triples), channels, *size)
        norms = np.sqrt(sumsq[:, good].sum(axis=2)).T  # (process, trial)
        unit = torch.from_numpy(
            patterns / np.linalg.norm(patterns.reshape(len(patterns), -1), axis=1)[:, None, None, None]
        )
        resp = response(unit, filters)  # tested at L2 = 1, as the public finder does
        for b in range(len(triples)):
            if len(kept) and float(resp[b].min()) < min_response:
                continue
            kept.append(triples[b])
            kept_norms.append(norms[b])
            new = matching_filter(triples[b])
            filters = torch.cat([filters, new])
            resp = torch.cat([resp, response(unit, new)], dim=1)
            if len(kept) == num_classes:
                break
    return np.stack(kept), np.stack(kept_norms)


def ar_noise(
    coefs: np.ndarray, labels: np.ndarray, shape: tuple[int, int, int], crop: int, rng: np.random.Generator
) -> np.ndarray:
    """One fresh pattern per image from its class's process: (N, C, H, W), each image's pattern unscaled."""
    c, h, w = shape
    n = len(labels)
    per_image = coefs[labels].reshape(n * c, KERNEL, KERNEL)  # image i, channel k -> its class's channel-k process
    start = rng.standard_normal((n * c, h + crop, w + crop))  # image-major draws: the same for any chunking
    x = _run(per_image, np.ascontiguousarray(start.transpose(1, 2, 0)))[crop:, crop:]
    return np.ascontiguousarray(x.transpose(2, 0, 1)).reshape(n, c, h, w)


def load_coefficients(path: str, num_classes: int, channels: int) -> np.ndarray:
    """(num_classes, channels, 3, 3) float64 coefficients from a published file, or one UserError line saying why not.

    .pt/.pth: the authors' torch.save layout, a list of (C, 3, 3) tensors or one (K, C, 3, 3) tensor, read with
    torch.load(weights_only=True): tensors and containers only, never arbitrary unpickling. .npy: a plain numeric
    array, np.load(allow_pickle=False)."""
    p = Path(path).expanduser()
    where = f"ar: coefficient file {path}"
    if not p.is_file():
        raise UserError(f"{where} not found")
    ext = p.suffix.lower()
    if ext in (".pt", ".pth"):
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # not a torch file, or one holding objects beyond tensors and containers
            raise UserError(
                f"{where} cannot be read by torch.load(weights_only=True) ({type(e).__name__}); "
                "only tensors are accepted, never arbitrary pickled objects"
            ) from None
        if isinstance(obj, (list, tuple)) and obj and all(isinstance(t, torch.Tensor) for t in obj):
            shapes = sorted({tuple(t.shape) for t in obj})
            if len(shapes) > 1:
                raise UserError(f"{where} holds tensors of different shapes {shapes}; expected (channels, 3, 3) each")
            obj = torch.stack(list(obj))
        if not isinstance(obj, torch.Tensor):
            raise UserError(f"{where} holds a {type(obj).__name__}; expected a tensor or a list of tensors")
        if obj.is_complex() or obj.dtype == torch.bool:
            raise UserError(f"{where} holds {obj.dtype} values, not real coefficients")
        arr = obj.detach().to(torch.float64).numpy()
    elif ext == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as e:  # object arrays need pickling: refused
            raise UserError(f"{where} is not a plain .npy array ({type(e).__name__}: {str(e)[:120]})") from None
        if arr.dtype.kind not in "fiu":
            raise UserError(f"{where} holds {arr.dtype} values, not real coefficients")
        arr = arr.astype(np.float64)
    else:
        raise UserError(f"{where}: unknown extension '{p.suffix}'; use .pt/.pth (torch.save, as the authors) or .npy")
    shape = tuple(arr.shape)
    if len(shape) != 4:
        want = (num_classes, channels, KERNEL, KERNEL)
        raise UserError(f"{where} has shape {shape}; expected (classes, channels, 3, 3) = {want}")
    if shape[0] != num_classes:
        raise UserError(f"{where} has {shape[0]} processes; the dataset has {num_classes} classes (one process each)")
    if shape[1] != channels:
        raise UserError(f"{where} has {shape[1]}-channel processes; the dataset's images have {channels} channels")
    if shape[2:] != (KERNEL, KERNEL):
        raise UserError(f"{where} has {shape[2]}x{shape[3]} kernels; AR processes are {KERNEL}x{KERNEL}")
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise UserError(f"{where} has {bad} non-finite coefficients (NaN or inf)")
    if (arr[:, :, 2, 2] != 0).any():  # the authors' generate() would mix the start value at the output position in
        raise UserError(f"{where}: coefficient [2, 2] (the output position) must be 0 in every channel")
    return arr


def exploding(
    coefs: np.ndarray, rng: np.random.Generator, size: tuple[int, int], crop: int, trials: int = 3
) -> np.ndarray:
    """Classes whose process explodes (a pattern's RMS above EXPLODES or not finite) on `trials` random starts."""
    k = len(coefs)
    with np.errstate(all="ignore"):
        noise = ar_noise(coefs, np.repeat(np.arange(k), trials), (coefs.shape[1], *size), crop, rng)
        rms = np.sqrt(np.mean(noise.reshape(k, trials, -1) ** 2, axis=2))
    return np.flatnonzero(~(rms <= EXPLODES).all(axis=1))


def file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()


@register_attack
class AR(Attack):
    name = "ar"
    norm = "l2"
    description = (
        "autoregressive perturbations: class-wise 3x3 AR processes, "
        "a fresh sample per image, L2 1.0 (Sandoval-Segura et al. 2022)"
    )
    Config = ARConfig
    presets = {"fast": {}}  # model-free: the paper's settings already take seconds
    _coefs: np.ndarray | None = None  # a coefficient file's processes, read (and checked) by validate()

    def budget(self) -> float:
        return float(self.config.eps)

    def validate(self, ds: ImageDataset) -> None:
        super().validate(ds)
        c, h, w = ds.shape
        if h < KERNEL or w < KERNEL:
            raise UserError(
                f"ar: images of {h}x{w} are smaller than its {KERNEL}x{KERNEL} process; "
                f"AR needs at least {KERNEL}x{KERNEL}"
            )
        if self.config.eps > math.sqrt(c * h * w):
            raise UserError(
                f"ar: L2 budget {self.config.eps} is larger than the whole "
                f"image range ({math.sqrt(c * h * w):.4g}) for {c}x{h}x{w}"
            )
        self._coefs = None
        if self.config.coefficients is not None:
            coefs = load_coefficients(self.config.coefficients, ds.num_classes, c)
            bad = exploding(coefs, np.random.default_rng(0), (h, w), self.config.crop)
            if len(bad):
                raise UserError(
                    f"ar: coefficient file {self.config.coefficients}: the processes of classes "
                    f"{bad.tolist()} explode (pattern RMS > {EXPLODES:g} against a unit-variance start; "
                    "stable ones stay below ~3)"
                )
            self._coefs = coefs

    def perturb(self, ds: ImageDataset, *, seed: int, progress: bool) -> Perturbation:
        cfg = self.config
        c, h, w = ds.shape
        rng = np.random.default_rng([seed, 0xA2])
        if cfg.coefficients is not None:  # the published processes, exactly; only the noise samples follow the seed
            coefs = self._coefs if self._coefs is not None else load_coefficients(cfg.coefficients, ds.num_classes, c)
            source = {"source": "file", "path": cfg.coefficients, "sha256": file_digest(cfg.coefficients)}
        else:
            coefs, norms = sample_processes(ds.num_classes, c, (h, w), cfg, rng)
            authors = cfg.stability == "authors"
            rule = {"l2_bound": joint_bound(cfg, c, (h, w))} if authors else {"rms_bound": cfg.rms_bound}
            source = {
                "source": "sampled",
                "stability": cfg.stability,
                **rule,
                "pattern_l2_max": np.round(norms.max(axis=1), 3).tolist(),
            }  # each process, on its test starts
        labels = ds.labels.numpy()
        delta = torch.empty(ds.images.shape, dtype=torch.float32)
        for s in range(0, len(ds), CHUNK):  # in chunks: the float64 fields of a whole dataset can be large
            noise = ar_noise(coefs, labels[s : s + CHUNK], (c, h, w), cfg.crop, rng)
            norms = np.linalg.norm(noise.reshape(len(noise), -1), axis=1)
            if not np.isfinite(noise).all() or (norms <= 0).any():
                classes = sorted(set(labels[s : s + CHUNK][~(np.isfinite(norms) & (norms > 0))].tolist()))
                fix = "check the coefficient file" if cfg.coefficients is not None else "try another --seed"
                raise UserError(f"ar: a generated pattern of classes {classes} is not finite or is zero; {fix}")
            scaled = torch.from_numpy(noise / norms[:, None, None, None] * cfg.eps).float()
            delta[s : s + CHUNK] = quantize_l2(scaled, cfg.eps)
        extra = {"ar_coefficients": np.round(coefs, 6).tolist(), "ar_processes": source}
        return Perturbation(delta, epoch_equivalents=0.0, extra=extra)
