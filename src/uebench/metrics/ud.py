"""The paper's #LP and Unlearnable Distance (UD), and reading SAL matrices back from run folders.

#LP of a run = (number of (epoch, layer) cells with SAL strictly above beta) / (number of probed epochs).
UD = #LP(poisoned) / #LP(clean), beta taken from the clean run. Lower = more unlearnable; Table 1 of the paper
satisfies UD = #LP ratio on every row (EM on CIFAR-10: 0.62 / 3.32 = 0.187).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..core.errors import UserError
from ..core.options import MAX_BOOTSTRAP, check_count
from .sal import ORIGINS
from .threshold import as_sal_matrix, learnable_threshold


def learnable_count(sal, beta: float) -> float:
    """#LP: cells strictly greater than beta, per epoch (rows = epochs, columns = layers)."""
    a = as_sal_matrix(sal)
    return float(np.count_nonzero(a > beta) / a.shape[0])


def unlearnable_distance(sal_poisoned, sal_clean, beta: float | None = None) -> float:
    """UD = #LP(poisoned) / #LP(clean), with beta = learnable_threshold(sal_clean) unless given."""
    p, c = as_sal_matrix(sal_poisoned, "poisoned SAL"), as_sal_matrix(sal_clean, "clean SAL")
    if p.shape[1] != c.shape[1]:
        raise UserError(f"SAL arrays have different layer counts: poisoned {p.shape[1]}, clean {c.shape[1]}")
    beta = learnable_threshold(c) if beta is None else beta
    lp_clean = learnable_count(c, beta)
    if lp_clean == 0:
        raise UserError("the clean run has no layer with SAL above beta (#LP = 0): UD is undefined")
    return learnable_count(p, beta) / lp_clean


def ud_if_defined(sal_poisoned, sal_clean, beta: float | None = None) -> float | None:
    """UD as unlearnable_distance computes it, or None where it is undefined (the clean run has no cell above beta):
    for tables that show a gap where unlearnable_distance would refuse."""
    try:
        return unlearnable_distance(sal_poisoned, sal_clean, beta)
    except UserError as e:
        if "#LP = 0" in str(e):
            return None
        raise


def bootstrap_ud(
    sal_poisoned, sal_clean, *, n: int = 1000, level: float = 0.9, seed: int = 0
) -> tuple[float, float] | None:
    """A percentile interval for UD: resample the probed epochs (rows) of both runs with replacement, recompute beta
    from the resampled clean rows and UD from both, `n` times. #LP counts a handful of cells, so UD of two runs
    that differ by one cell can differ by a lot; the interval says how much. None when fewer than half the
    replicates have a defined UD (the clean resample had no cell above its beta)."""
    check_count(n, "bootstrap size", MAX_BOOTSTRAP)
    if not 0 < level < 1:
        raise UserError(f"confidence level must be in (0, 1), got {level}")
    p, c = as_sal_matrix(sal_poisoned, "poisoned SAL"), as_sal_matrix(sal_clean, "clean SAL")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        cs = c[rng.integers(0, len(c), len(c))]
        ps = p[rng.integers(0, len(p), len(p))]
        beta = learnable_threshold(cs)
        lp_clean = learnable_count(cs, beta)
        if lp_clean > 0:
            values.append(learnable_count(ps, beta) / lp_clean)
    if len(values) < n / 2:
        return None
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


# ---- run folders ----------------------------------------------------------------------------------------
@dataclass
class RunSAL:
    """The SAL records of one run: matrix (probed epochs, layers), the layer names, and accuracy figures."""

    path: str
    epochs: list[int]
    layers: list[str]
    sal: np.ndarray
    mode: str | None
    origin: str | None
    final_test_acc: float | None
    peak_test_acc: float | None


def sal_key(origin: str | None) -> str:
    """The record key of the SAL of an origin: "sal" is the run's own origin (sal_origin), "sal_eval" and
    "sal_running" each origin's SAL from the same search."""
    if origin is None:
        return "sal"
    if origin not in ORIGINS:
        raise UserError(f"unknown SAL origin '{origin}'; valid: {', '.join(ORIGINS)}")
    return f"sal_{origin}"


def sal_matrix(
    records: Sequence[dict[str, Any]], layers: Sequence[str] | None = None, where: str = "run", key: str = "sal"
) -> tuple[np.ndarray, list[str], list[int]]:
    """(epochs, layers) SAL matrix from per-epoch records carrying a `key` dict ("sal" unless asked); columns in
    `layers` order (default: the first record's order)."""
    rows = [r for r in records if isinstance(r.get(key), dict) and r[key]]
    if not rows:
        hint = "no epoch was probed" if key == "sal" else f"no {key} records: probed before both origins were recorded"
        raise UserError(f"{where} has no SAL records ({hint})")
    names = list(layers) if layers is not None else list(rows[0][key])
    for r in rows:
        got = set(r[key])
        if got != set(names):
            missing, extra = sorted(set(names) - got), sorted(got - set(names))
            detail = f"missing {', '.join(missing[:3])}" if missing else f"extra {', '.join(extra[:3])}"
            raise UserError(f"{where} epoch {r.get('epoch')}: SAL layers do not match ({detail})")
    try:
        a = np.array([[float(r[key][n]) for n in names] for r in rows])
    except (TypeError, ValueError):
        raise UserError(f"{where} holds SAL values that are not numbers") from None
    return a, names, [int(r.get("epoch", i + 1)) for i, r in enumerate(rows)]


def run_sal(
    records: Sequence[dict[str, Any]], run_dir: str, layers: Sequence[str] | None = None, origin: str | None = None
) -> RunSAL:
    """A run's SAL matrix from its epoch records: of the origin it was probed with (origin None), or of `origin`
    ("eval", "running"). A run folder's: uebench.training.records.load_run_sal."""
    if not records:
        raise UserError(f"{run_dir} has no finished epochs")
    a, names, epochs = sal_matrix(records, layers, where=str(run_dir), key=sal_key(origin))
    accs = [float(r["test_acc"]) for r in records if "test_acc" in r]
    modes = {r.get("sal_mode") for r in records if "sal" in r}
    origins = {r.get("sal_origin") for r in records if "sal" in r}
    if len(modes) > 1 or len(origins) > 1:
        raise UserError(f"{run_dir} mixes SAL modes/origins across epochs ({sorted(map(str, modes | origins))})")
    own = origins.pop()
    return RunSAL(
        str(run_dir),
        epochs,
        names,
        a,
        modes.pop(),
        own if origin is None else origin,
        accs[-1] if accs else None,
        max(accs) if accs else None,
    )


@dataclass
class UDRow:
    run: str
    final_test_acc: float | None
    peak_test_acc: float | None
    lp: float
    ud: float
    epochs: int
    ud_ci_low: float | None = None  # bootstrap interval over probed epochs (bootstrap_ud); None for the clean run
    ud_ci_high: float | None = None


def ud_table(
    clean: RunSAL, poisoned: Sequence[RunSAL], *, bootstrap: int = 1000, level: float = 0.9
) -> tuple[float, list[UDRow]]:
    """beta from the clean run, then one row per run (the clean run first, UD 1 by definition), each poisoned row
    with its bootstrap interval (`bootstrap` replicates; 0 for none)."""
    for p in poisoned:
        if (p.mode, p.origin) != (clean.mode, clean.origin):
            raise UserError(
                f"{p.path} was probed with SAL {p.mode}/{p.origin}, "
                f"the clean run with {clean.mode}/{clean.origin}: not comparable"
            )
    beta = learnable_threshold(clean.sal)
    lp_clean = learnable_count(clean.sal, beta)
    if lp_clean == 0:
        raise UserError(f"the clean run {clean.path} has no layer with SAL above beta (#LP = 0): UD is undefined")
    rows = [UDRow(clean.path, clean.final_test_acc, clean.peak_test_acc, lp_clean, 1.0, len(clean.epochs))]
    for p in poisoned:
        lp = learnable_count(p.sal, beta)
        ci = bootstrap_ud(p.sal, clean.sal, n=bootstrap, level=level) if bootstrap else None
        rows.append(
            UDRow(p.path, p.final_test_acc, p.peak_test_acc, lp, lp / lp_clean, len(p.epochs), *(ci or (None, None)))
        )
    return beta, rows
