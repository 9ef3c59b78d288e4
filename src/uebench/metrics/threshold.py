"""The paper's learnable threshold beta, computed from the clean run's SAL only.

For each probed epoch t, split that epoch's per-layer SAL values into two clusters with 2-means; beta_t is the
midpoint of the two centres; beta is the mean of beta_t over the epochs.

The public code (analysis/get_ud.py) runs sklearn's KMeans(n_clusters=2, random_state=0) per epoch. Here the
1-D 2-means problem is solved exactly: the optimal clusters are a split of the sorted values, so every split is
tried and the one of least within-cluster sum of squares is kept (the first, on an exact tie). It is
deterministic, needs no sklearn, and equals KMeans wherever Lloyd's iterations find the global optimum (always
for two well-separated groups). A constant row has both centres at the constant; one layer, the same.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import UserError


def as_sal_matrix(sal, what: str = "SAL") -> np.ndarray:
    """A finite float array of shape (epochs, layers) with at least one of each, or a UserError."""
    a = np.asarray(sal, dtype=float)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise UserError(f"{what} must be a non-empty (epochs, layers) array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise UserError(f"{what} holds NaN or infinite values")
    return a


def two_means_1d(values) -> tuple[float, float]:
    """The centres (low, high) of the exact 2-means clustering of 1-D values."""
    v = np.sort(np.asarray(values, dtype=float).ravel())
    if v.size == 0:
        raise UserError("2-means of no values")
    if v.size == 1 or v[0] == v[-1]:
        return float(v[0]), float(v[-1])
    n = v.size
    k = np.arange(1, n)  # left cluster = v[:k]
    csum, csq = np.cumsum(v), np.cumsum(v * v)
    left_sum, left_sq = csum[:-1], csq[:-1]
    right_sum, right_sq = csum[-1] - left_sum, csq[-1] - left_sq
    sse = (left_sq - left_sum**2 / k) + (right_sq - right_sum**2 / (n - k))
    best = int(np.argmin(sse))  # argmin keeps the first of equal minima
    kb = best + 1
    return float(left_sum[best] / kb), float(right_sum[best] / (n - kb))


def epoch_thresholds(sal_clean) -> np.ndarray:
    """beta_t for every epoch (row): the midpoint of that row's two 2-means centres."""
    a = as_sal_matrix(sal_clean, "clean SAL")
    return np.array([sum(two_means_1d(row)) / 2 for row in a])


def learnable_threshold(sal_clean) -> float:
    """beta = mean over epochs of beta_t (SAL of the clean run, shape (epochs, layers))."""
    return float(epoch_thresholds(sal_clean).mean())
