"""From trajectories to the paper's Figure 2: coordinate planes,
loss grids, the 1-D interpolation, per-weight statistics.

A *plane* is a centre (a run's end point) and two orthonormal directions in weight space. For scalar-weight
coordinates ("movers", "divergent") the directions are unit vectors e_i, e_j: moving along them changes weights i
and j and nothing else. For "pca" they are the top two principal directions of the joint trajectory. The loss on a
plane at offsets (a, b) is the training loss of `center + a*d1 + b*d2`, every other weight held at the end point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...core.errors import UserError
from ...data.base import ImageDataset
from ...training.trainer import prepare
from .trajectory import Trajectory, set_flat_weights

COORDINATES = ("movers", "divergent", "pca")


# ---- coordinate selection -----------------------------------------------------------------------------------
def top_k(values: np.ndarray, k: int = 2) -> list[int]:
    """Indices of the k largest values, largest first (ties: the lower index first)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.lexsort((np.arange(len(values)), -values))
    return [int(i) for i in order[:k]]


def select_movers(start: np.ndarray, end: np.ndarray, k: int = 2) -> list[int]:
    """The k scalar weights that move most from start to end (|end - start|)."""
    return top_k(np.abs(np.asarray(end, np.float64) - np.asarray(start, np.float64)), k)


def select_divergent(end_a: np.ndarray, end_b: np.ndarray, k: int = 2) -> list[int]:
    """The k scalar weights whose end points differ most between two runs."""
    return top_k(np.abs(np.asarray(end_a, np.float64) - np.asarray(end_b, np.float64)), k)


def pca_directions(
    trajectories: Sequence[Trajectory], k: int = 2, max_bytes: int = 64 << 20
) -> tuple[np.ndarray, np.ndarray]:
    """The top-k principal directions (k, P) of all rows of all trajectories together, and their explained ratios.

    Memory stays bounded: with X the (T, P) stack of rows centred on its mean, the T x T Gram matrix X X^T is summed
    over column blocks, its top eigenvectors U give the directions X^T U / sqrt(lambda), again block by block.
    The directions are orthonormal (re-orthonormalised in float64); their signs are fixed so that the largest
    |component| of each is positive.
    """
    rows = sum(len(t) for t in trajectories)
    P = trajectories[0].num_params
    if any(t.num_params != P for t in trajectories):
        raise UserError("trajectories of different models cannot share a PCA plane")
    width = trajectories[0].block_width(max_bytes, rows)
    mean = np.zeros(P)
    for j0 in range(0, P, width):
        j1 = min(P, j0 + width)
        mean[j0:j1] = np.concatenate([t.columns(j0, j1) for t in trajectories]).astype(np.float64).mean(axis=0)
    gram = np.zeros((rows, rows))
    for j0 in range(0, P, width):
        j1 = min(P, j0 + width)
        xb = np.concatenate([t.columns(j0, j1) for t in trajectories]).astype(np.float64) - mean[j0:j1]
        gram += xb @ xb.T
    lam, vec = np.linalg.eigh(gram)
    lam, vec = lam[::-1], vec[:, ::-1]
    total = float(lam.clip(min=0).sum())
    if total <= 0 or lam[k - 1] <= 1e-12 * lam[0]:
        raise UserError(
            f"the trajectories span fewer than {k} directions; record more steps (--record-every) or train longer"
        )
    dirs = np.zeros((k, P))
    for j0 in range(0, P, width):
        j1 = min(P, j0 + width)
        xb = np.concatenate([t.columns(j0, j1) for t in trajectories]).astype(np.float64) - mean[j0:j1]
        dirs[:, j0:j1] = (vec[:, :k].T @ xb) / np.sqrt(lam[:k])[:, None]
    q, _ = np.linalg.qr(dirs.T)  # exact orthonormality against rounding
    dirs = q.T[:k] * np.sign(np.sum(q.T[:k] * dirs, axis=1))[:, None]
    for i in range(k):
        if dirs[i, np.argmax(np.abs(dirs[i]))] < 0:
            dirs[i] = -dirs[i]
    return dirs, lam[:k] / total


def unit_directions(indices: Sequence[int], num_params: int) -> np.ndarray:
    d = np.zeros((len(indices), num_params))
    for r, j in enumerate(indices):
        d[r, j] = 1.0
    return d


# ---- grids ---------------------------------------------------------------------------------------------------
def axis_through_zero(lo: float, hi: float, n: int) -> np.ndarray:
    """n evenly spaced offsets covering about [lo, hi] (lo <= 0 <= hi) with one of them exactly 0."""
    if n < 2:
        raise UserError(f"grid resolution must be >= 2, got {n}")
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0:
        lo, hi = -1e-3, 1e-3
    h = (hi - lo) / (n - 1)
    first = int(np.round(lo / h))
    first = min(0, max(first, -(n - 1)))  # keep 0 on the grid
    return h * (np.arange(n) + first)


def plane_axes(projections: Sequence[np.ndarray], n: int, pad: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Offsets along each direction covering every projected point (and 0) with a margin of `pad` of the span."""
    pts = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in projections] + [np.zeros((1, 2))])
    axes = []
    for c in range(2):
        lo, hi = float(pts[:, c].min()), float(pts[:, c].max())
        span = hi - lo
        axes.append(axis_through_zero(lo - pad * span, hi + pad * span, n))
    return axes[0], axes[1]


class LossEvaluator:
    """Mean cross-entropy of a model at given flat weights on a fixed set of images (batched, no_grad, eval mode)."""

    def __init__(self, model: nn.Module, ds: ImageDataset, device: torch.device | str = "cpu", batch_size: int = 1024):
        self.model = model
        self.device = torch.device(device)
        self.batches = [
            (
                prepare(ds.images[i : i + batch_size], self.device, channels_last=False),
                ds.labels[i : i + batch_size].to(self.device),
            )
            for i in range(0, len(ds), batch_size)
        ]
        self.n = len(ds)
        if self.n == 0:
            raise UserError("the loss-evaluation set is empty")

    @torch.no_grad()
    def current(self) -> float:
        """The loss of the model's weights as they are now."""
        was = self.model.training
        self.model.eval()
        total = sum(float(F.cross_entropy(self.model(x), y, reduction="sum")) for x, y in self.batches)
        self.model.train(was)
        return total / self.n

    def __call__(self, weights: np.ndarray | torch.Tensor) -> float:
        set_flat_weights(self.model, weights)
        return self.current()


def loss_grid(
    evaluate: LossEvaluator,
    center: np.ndarray,
    directions: np.ndarray,
    alphas: np.ndarray,
    betas: np.ndarray,
    progress: Callable[[], Any] | None = None,
) -> np.ndarray:
    """Loss at center + a*d1 + b*d2 for every (a, b): an array indexed [beta, alpha] (rows = second axis)."""
    c = torch.as_tensor(np.asarray(center, np.float64))
    d1, d2 = (torch.as_tensor(np.asarray(d, np.float64)) for d in directions[:2])
    out = np.empty((len(betas), len(alphas)))
    for bi, b in enumerate(betas):
        for ai, a in enumerate(alphas):
            w = c if (a == 0 and b == 0) else c + float(a) * d1 + float(b) * d2  # the exact end point at (0, 0)
            out[bi, ai] = evaluate(w.float())
            if progress is not None:
                progress()
    return out


def line_alphas(n: int = 29, before: float = 0.2, after: float = 0.2) -> np.ndarray:
    """Interpolation coefficients from -before to 1 + after; 0 and 1 (start, end) are always on it."""
    inner = max(2, round(n * 1.0 / (1.0 + before + after)))
    h = 1.0 / (inner - 1)
    lo, hi = -int(np.ceil(before / h - 1e-9)), (inner - 1) + int(np.ceil(after / h - 1e-9))
    return np.arange(lo, hi + 1) / (inner - 1)


def line_losses(evaluate: LossEvaluator, start: np.ndarray, end: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Loss along the straight line start + alpha * (end - start)."""
    s, e = np.asarray(start, np.float64), np.asarray(end, np.float64)
    return np.array([evaluate((s + a * (e - s)).astype(np.float32)) for a in alphas])


# ---- per-weight statistics ----------------------------------------------------------------------------------
QUANTILES = (0.5, 0.9, 0.99, 0.999, 1.0)


def quantiles(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, np.float64)
    out = {f"q{q:g}": float(np.quantile(x, q)) for q in QUANTILES}
    out["mean"] = float(x.mean())
    return out


@dataclass
class Tolerance:
    """When a weight 'ends at the clean end point': |end - clean_end| <= value (absolute), or <= value times the
    weight's own clean displacement |clean_end - start| (relative: it covered at least 1 - value of the clean move)."""

    value: float = 0.1
    mode: str = "relative"

    def __post_init__(self) -> None:
        if self.mode not in ("relative", "absolute"):
            raise UserError(f"unknown tolerance mode '{self.mode}'; valid: absolute, relative")
        if not (self.value > 0 and np.isfinite(self.value)):
            raise UserError(f"--tol must be a positive number, got {self.value}")

    def within(self, end: np.ndarray, clean_end: np.ndarray, start: np.ndarray) -> np.ndarray:
        gap = np.abs(np.asarray(end, np.float64) - clean_end)
        if self.mode == "absolute":
            return gap <= self.value
        return gap <= self.value * np.abs(np.asarray(clean_end, np.float64) - start)


def parameter_stats(
    start: np.ndarray,
    ends: dict[str, np.ndarray],
    tol: Tolerance,
    slots=None,
    critical_fractions: Sequence[float] = (0.01, 0.1),
    bins: int = 60,
) -> dict[str, Any]:
    """Displacements |end - start| per run, and how many weights of each run end near the clean end point.

    `ends` maps run name -> end point and must hold "clean". "Critical" weights are the clean run's largest movers
    (top 1% and 10% by clean displacement): the paper's claim is that on UEs only some of these converge as on clean
    data.
    """
    start = np.asarray(start, np.float64)
    clean = np.asarray(ends["clean"], np.float64)
    disp = {name: np.abs(np.asarray(e, np.float64) - start) for name, e in ends.items()}
    P = len(start)
    order = np.argsort(-disp["clean"], kind="stable")
    crit = {f"top{f * 100:g}%": order[: max(1, int(round(f * P)))] for f in critical_fractions}
    out: dict[str, Any] = {"num_params": P, "tolerance": {"value": tol.value, "mode": tol.mode}, "runs": {}}
    positive = np.concatenate([d[d > 0] for d in disp.values()])
    lo = float(positive.min()) if positive.size else 1e-8
    hi = float(max(d.max() for d in disp.values())) or 1.0
    edges = np.geomspace(max(lo, hi * 1e-7), hi * 1.0001, bins + 1)
    for name, end in ends.items():
        end = np.asarray(end, np.float64)
        d = disp[name]
        gap = np.abs(end - clean)
        run: dict[str, Any] = {
            "displacement": quantiles(d),
            "displacement_l2": float(np.linalg.norm(end - start)),
            "histogram": np.histogram(np.clip(d[d > 0], edges[0], edges[-1]), bins=edges)[0].tolist(),
            "unmoved": int(
                (d == 0).sum()
            ),  # e.g. weights on pixels that are 0 in every training image (MNIST's border)
        }
        if name != "clean":
            near = tol.within(end, clean, start)
            run["gap_to_clean"] = quantiles(gap)
            run["gap_to_clean_l2"] = float(np.linalg.norm(gap))
            run["within_tol"] = {"all": _frac(near), **{k: _frac(near[idx]) for k, idx in crit.items()}}
            run["within_tol_count"] = int(near.sum())
            # relative gap |end - clean_end| / |clean_end - start|, for the CDF figure (where the clean move is > 0)
            moved = disp["clean"] > 0
            rel = gap[moved] / disp["clean"][moved]
            run["relative_gap_cdf"] = _cdf(rel)
            run["relative_gap_cdf_critical"] = (
                _cdf(gap[crit["top1%"]] / np.maximum(disp["clean"][crit["top1%"]], 1e-30)) if "top1%" in crit else None
            )
            if slots is not None:
                run["per_tensor"] = {
                    s.name: {
                        "params": s.numel,
                        "within_tol": _frac(near[s.offset : s.offset + s.numel]),
                        "median_displacement": float(np.median(d[s.offset : s.offset + s.numel])),
                        "median_clean_displacement": float(np.median(disp["clean"][s.offset : s.offset + s.numel])),
                        "median_gap_to_clean": float(np.median(gap[s.offset : s.offset + s.numel])),
                    }
                    for s in slots
                }
        elif slots is not None:
            run["per_tensor"] = {
                s.name: {"params": s.numel, "median_displacement": float(np.median(d[s.offset : s.offset + s.numel]))}
                for s in slots
            }
        out["runs"][name] = run
    out["histogram_edges"] = edges.tolist()
    out["critical"] = {k: len(v) for k, v in crit.items()}
    return out


def _frac(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else float("nan")


def _cdf(x: np.ndarray, points: int = 81) -> dict[str, list[float]]:
    """Fraction of values <= t for t on a log grid 1e-3 .. 1e2 (plus 0)."""
    t = np.concatenate([[0.0], np.geomspace(1e-3, 1e2, points - 1)])
    xs = np.sort(np.asarray(x, np.float64))
    frac = np.searchsorted(xs, t, side="right") / max(len(xs), 1)
    return {"t": t.tolist(), "frac": frac.tolist()}
