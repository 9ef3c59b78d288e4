"""Task metrics as small pure functions on whole tensors (predictions and targets of a full evaluation set).

Pixels whose target is the task's "ignore" value (-1 for labels and binary maps, NaN for depth) never count:
they are the border a random crop pads in, or invalid depth in Taskonomy.
"""

from __future__ import annotations

import math

import torch

IGNORE = -1


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Percent of correct class ids."""
    return 100.0 * float((pred == target).float().mean()) if len(target) else float("nan")


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Mean intersection-over-union (%) over the classes present in the target or the prediction."""
    valid = target != IGNORE
    p, t = pred[valid].long(), target[valid].long()
    inter = torch.bincount(t[p == t], minlength=num_classes).float()
    area_p = torch.bincount(p, minlength=num_classes).float()
    area_t = torch.bincount(t, minlength=num_classes).float()
    union = area_p + area_t - inter
    present = union > 0
    return 100.0 * float((inter[present] / union[present]).mean()) if present.any() else float("nan")


def pair_confusion(same_pred: torch.Tensor, same_true: torch.Tensor) -> tuple[float, float, float, float]:
    """(tp, fp, fn, tn) of the relation "the two pixels are in the same segment" over a set of pixel pairs."""
    sp, st = same_pred.bool(), same_true.bool()
    tp = float((sp & st).sum())
    fp = float((sp & ~st).sum())
    fn = float((~sp & st).sum())
    tn = float((~sp & ~st).sum())
    return tp, fp, fn, tn


def adjusted_rand_from_pairs(tp: float, fp: float, fn: float, tn: float) -> float:
    """The adjusted Rand index from a pair confusion matrix (the pair-counting form of Hubert & Arabie's ARI,
    the one scikit-learn computes). 1 = the same partition on these pairs, 0 = chance, or a constant answer."""
    denom = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    if denom == 0:
        return 1.0 if fp == fn == 0 else 0.0
    return 2.0 * (tp * tn - fn * fp) / denom


def _ranked(score: torch.Tensor, target: torch.Tensor):
    """Valid pixels sorted by descending score: cumulative true positives, the last position of every run of tied
    scores (one threshold each), and the number of positives; None when there is no positive."""
    valid = target != IGNORE
    s, t = score[valid].double().flatten(), target[valid].double().flatten()
    n_pos = float(t.sum())
    if n_pos == 0:
        return None
    order = torch.argsort(s, descending=True)
    s, t = s[order], t[order]
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    return torch.cumsum(t, 0), last, n_pos


def average_precision(score: torch.Tensor, target: torch.Tensor) -> float:
    """Average precision (%) of per-pixel scores against a {0,1} map (ignored pixels: target -1).

    The area under the precision-recall curve as a step function (scikit-learn's definition); tied scores
    form one threshold, so a constant score gets AP = the positive rate."""
    ranked = _ranked(score, target)
    if ranked is None:
        return float("nan")
    tp, last, n_pos = ranked
    k = torch.arange(1, len(tp) + 1, dtype=tp.dtype)  # pixels predicted positive at each threshold
    tp, k = tp[last], k[last]
    precision = tp / k
    recall = tp / n_pos
    prev = torch.cat([torch.zeros(1, dtype=recall.dtype), recall[:-1]])
    return 100.0 * float(((recall - prev) * precision).sum())


def best_f1(score: torch.Tensor, target: torch.Tensor) -> float:
    """The best F1 (%) over all thresholds (the dataset-scale "ODS" F1 of edge detection, without tolerance)."""
    ranked = _ranked(score, target)
    if ranked is None:
        return float("nan")
    tp, last, n_pos = ranked
    k = torch.arange(1, len(tp) + 1, dtype=tp.dtype)
    f1 = 2 * tp[last] / (k[last] + n_pos)
    return 100.0 * float(f1.max())


def l1_error(pred: torch.Tensor, target: torch.Tensor) -> float:
    valid = torch.isfinite(target)
    return float((pred[valid] - target[valid]).abs().mean()) if valid.any() else float("nan")


def rmse(pred: torch.Tensor, target: torch.Tensor) -> float:
    valid = torch.isfinite(target)
    return float(((pred[valid] - target[valid]) ** 2).mean().sqrt()) if valid.any() else float("nan")


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of images in [0, 1], from the mean squared error over the whole set."""
    mse = float(((pred.float() - target.float()) ** 2).mean())
    return 10.0 * math.log10(1.0 / mse) if mse > 0 else float("inf")
