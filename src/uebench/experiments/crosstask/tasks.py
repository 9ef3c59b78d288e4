"""The tasks of the cross-task experiment, each registered as one Task record.

    class       scene class                  accuracy (%)       labels of any dataset
    segment     semantic segmentation        mIoU (%)           `scenes` ground truth, Taskonomy segment_semantic
    unsup       unsupervised segmentation    pair ARI           Felzenszwalb superpixels of the clean RGB (or
                                                                Taskonomy segment_unsup2d)
    depth       depth                        RMSE (lower better) `scenes` ground truth, Taskonomy depth_zbuffer
    edges       edges                        AP (%)             `scenes` occlusion edges / Taskonomy edge_texture,
                                                                else Canny edges of the clean RGB
    keypoints   keypoints (heatmap)          AP (%)             `scenes` keypoints / Taskonomy keypoints2d, else
                                                                Harris corners of the clean RGB; 3x3 tolerance
    autoencode  reconstruct the clean image  PSNR (dB)          the clean RGB
    denoise     clean image from a noisy one PSNR (dB)          the clean RGB, input + N(0, 0.1) noise

Unsupervised segmentation: superpixel ids are arbitrary (any permutation of them is the same segmentation),
so a per-pixel classifier over ids is meaningless. The task is posed as affinities: for each of a few pixel
offsets (1, 3 and 8 px, horizontal and vertical) the head predicts whether a pixel and its neighbour at that
offset lie in the same segment. Loss: binary cross-entropy per pair. Metric: the adjusted Rand index of those
pairs (the pair-counting ARI restricted to the offset pairs): invariant to relabelling by construction, 0 for
any constant answer (chance), 1 for a perfect one. Short offsets measure boundaries, long ones regions; a
model must know where segments are to be right at 8 px, which boundary F1 alone would not test.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...data.base import ImageDataset
from . import metrics as task_metrics
from .derived import derive
from .task import Task, register_task, unavailable

AFFINITY_OFFSETS = ((0, 1), (1, 0), (0, 3), (3, 0), (0, 8), (8, 0))  # (dy, dx)
DENOISE_SIGMA = 0.1
_EVAL_NOISE_SEED = 0x5EED  # the denoising task's evaluation noise: one fixed draw, the same for model and trivial


# ---- targets ---------------------------------------------------------------------------------------------------
def _own_or_derived(key: str, ds: ImageDataset, policy: str, derived_note: str) -> tuple[torch.Tensor, str]:
    if policy == "missing" and key in ds.targets:
        return ds.targets[key], f"{ds.name} '{key}' target"
    if key in ("edges", "keypoints", "unsup"):
        return derive(key, ds.images), derived_note
    raise unavailable(
        key,
        ds,
        f"it has no '{key}' target (it has: {', '.join(sorted(ds.targets)) or 'none'}) "
        f"and {key} cannot be derived from RGB",
    )


def _own(key: str, ds: ImageDataset) -> tuple[torch.Tensor, str]:
    if key not in ds.targets:
        raise unavailable(
            key,
            ds,
            f"it has no '{key}' target (it has: {', '.join(sorted(ds.targets)) or 'none'}); "
            "use scenes, Taskonomy, or a derived task (unsup, edges, keypoints, autoencode, denoise)",
        )
    return ds.targets[key], f"{ds.name} '{key}' target"


def _binary_map(t: torch.Tensor) -> torch.Tensor:
    return (t > 0).float()


def _dilate(t: torch.Tensor) -> torch.Tensor:
    """A 3x3 neighbourhood around every keypoint: a prediction one pixel off still counts."""
    return F.max_pool2d(t.float()[:, None], 3, 1, 1)[:, 0] if len(t) else t.float()


def _image(ds: ImageDataset) -> tuple[torch.Tensor, str]:
    return ds.images.float() / 255.0, f"{ds.name} RGB"


def noisy(x: torch.Tensor, sigma: float, noise: torch.Tensor) -> torch.Tensor:
    return (x + sigma * noise).clamp(0, 1)


def eval_noise(shape: tuple[int, ...]) -> torch.Tensor:
    """The fixed noise of the denoising task's evaluation inputs (same draw every time)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(_EVAL_NOISE_SEED))


# ---- losses ---------------------------------------------------------------------------------------------------
def _bce(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    out = out.float()[:, 0] if out.ndim == 4 else out.float()
    valid = t >= 0
    if not valid.any():
        return out.sum() * 0
    return F.binary_cross_entropy_with_logits(out[valid], t[valid].float())


def _affinity(ids: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(same-segment, valid) maps of the pairs (p, p + (dy, dx)), cropped to where both pixels exist."""
    h, w = ids.shape[-2:]
    a, b = ids[..., : h - dy, : w - dx], ids[..., dy:, dx:]
    return a == b, (a >= 0) & (b >= 0)


def _affinity_loss(out: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    losses = []
    h, w = ids.shape[-2:]
    for k, (dy, dx) in enumerate(AFFINITY_OFFSETS):
        same, valid = _affinity(ids, dy, dx)
        logits = out[:, k, : h - dy, : w - dx].float()
        if valid.any():
            losses.append(F.binary_cross_entropy_with_logits(logits[valid], same[valid].float()))
    return torch.stack(losses).mean() if losses else out.sum() * 0


def _depth_loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Squared error (matches the RMSE headline). L1 was tried first: its median-seeking gradient keeps an
    unsure model at the background depth everywhere (the trivial answer) for many epochs."""
    valid = torch.isfinite(t)
    return F.mse_loss(out.float()[:, 0][valid], t[valid]) if valid.any() else out.sum() * 0


def _segment_loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with each class weighted by 1/sqrt of its pixel share in the batch. Unweighted, a small model
    predicts the dominant class (background, 85% of `scenes` pixels) everywhere for many epochs: mIoU stays at
    the trivial predictor's even while the loss falls."""
    valid = t[t >= 0]
    if valid.numel() == 0:
        return out.sum() * 0
    counts = torch.bincount(valid.flatten(), minlength=out.shape[1]).float()
    share = counts / counts.sum()
    w = torch.where(counts > 0, share.clamp_min(1e-6).rsqrt(), torch.zeros_like(share))
    w = w / (w * share).sum()  # the weighted loss keeps the scale of the plain one
    return F.cross_entropy(out.float(), t, weight=w.to(out.device), ignore_index=-1)


def _image_loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(torch.sigmoid(out.float()), t)


# ---- scores ------------------------------------------------------------------------------------------------
def _affinity_score(prob: torch.Tensor, ids: torch.Tensor) -> dict[str, float]:
    """The ARI of each offset's pairs, averaged over offsets. Pooling the pairs of all offsets first would
    reward knowing only that near pixels share a segment more often than far ones (a constant per offset
    scored 0.38 pooled on CIFAR); per offset, every constant answer scores 0."""
    aris, correct, total = [], 0.0, 0.0
    h, w = ids.shape[-2:]
    for k, (dy, dx) in enumerate(AFFINITY_OFFSETS):
        same, valid = _affinity(ids, dy, dx)
        pred = prob[:, k, : h - dy, : w - dx] >= 0.5
        tp, fp, fn, tn = task_metrics.pair_confusion(pred[valid], same[valid])
        if tp + fn > 0 and fp + tn > 0:  # an offset whose pairs are all alike has no chance-corrected score
            aris.append(task_metrics.adjusted_rand_from_pairs(tp, fp, fn, tn))
        correct, total = correct + tp + tn, total + tp + fp + fn + tn
    return {"ARI": sum(aris) / len(aris) if aris else 0.0, "pair_acc": 100.0 * correct / max(total, 1.0)}


def _segment_score(pred: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
    n = int(max(int(pred.max()) if pred.numel() else 0, int(t.max()) if t.numel() else 0)) + 1
    valid = t >= 0
    return {"mIoU": task_metrics.mean_iou(pred, t, n), "pixel_acc": task_metrics.accuracy(pred[valid], t[valid])}


def _binary_score(prob: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
    return {"AP": task_metrics.average_precision(prob, t), "F1": task_metrics.best_f1(prob, t)}


def _depth_score(pred: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
    return {"L1": task_metrics.l1_error(pred, t), "RMSE": task_metrics.rmse(pred, t)}


def _image_score(pred: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
    return {"PSNR": task_metrics.psnr(pred, t), "L1": float((pred - t).abs().mean())}


def _denoise_score(pred: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
    return {
        **_image_score(pred, t),
        "identity_PSNR": task_metrics.psnr(noisy(t, DENOISE_SIGMA, eval_noise(tuple(t.shape))), t),
    }


# ---- trivial predictors ----------------------------------------------------------------------------------------
def _majority(train: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    v = train[train >= 0]
    return torch.full_like(test, int(torch.bincount(v.flatten()).argmax()) if v.numel() else 0)


def _pixel_rate(train: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    t = train.float()
    rate = torch.where(t >= 0, t, torch.nan).nanmean(0)
    return torch.nan_to_num(rate, 0.0).expand_as(test).clone()


def _pixel_mean(train: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """The per-pixel mean: the constant prediction of least squared error (depth's RMSE)."""
    return torch.nan_to_num(train.float().nanmean(0), 0.0).expand_as(test).clone()


def _affinity_rate(train: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """Each offset's training rate of same-segment pairs, as a constant probability (ARI 0 by construction)."""
    rates = []
    for dy, dx in AFFINITY_OFFSETS:
        same, valid = _affinity(train, dy, dx)
        rates.append(float(same[valid].float().mean()) if valid.any() else 0.5)
    return torch.tensor(rates).view(1, -1, 1, 1).expand(len(test), -1, *test.shape[-2:]).clone()


def _mean_image(train: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    return train.mean(0).expand_as(test).clone()


# Denoising's trivial predictor is the mean image, like autoencoding's: trivial predictors are constants fitted on
# the training targets. Returning the noisy input (about 20 dB at sigma 0.1) is a stronger baseline that the
# CPU-sized models here do not beat; the score reports it as "identity_PSNR" for comparison.
# ---- the tasks -------------------------------------------------------------------------------------------------
register_task(
    Task(
        name="class",
        description="scene class (the dataset's labels)",
        kind="image",
        metric="accuracy",
        higher_is_better=True,
        channels=lambda ds: ds.num_classes,
        target=lambda ds, policy: (ds.labels, f"{ds.name} labels"),
        loss=lambda out, t: F.cross_entropy(out.float(), t),
        predict=lambda out: out.argmax(1),
        score=lambda p, t: {"accuracy": task_metrics.accuracy(p, t)},
        trivial=_majority,
    )
)

register_task(
    Task(
        name="segment",
        description="semantic segmentation",
        kind="dense",
        metric="mIoU",
        higher_is_better=True,
        channels=lambda ds: int(ds.targets["segment"].max()) + 1 if "segment" in ds.targets else 1,
        target=lambda ds, policy: _own("segment", ds),
        loss=_segment_loss,
        predict=lambda out: out.argmax(1),
        score=_segment_score,
        trivial=_majority,
    )
)

register_task(
    Task(
        name="unsup",
        description="unsupervised segmentation (Felzenszwalb superpixels), as pair affinities",
        kind="dense",
        metric="ARI",
        higher_is_better=True,
        channels=lambda ds: len(AFFINITY_OFFSETS),
        target=lambda ds, policy: _own_or_derived("unsup", ds, policy, "Felzenszwalb superpixels of the clean RGB"),
        loss=_affinity_loss,
        predict=lambda out: torch.sigmoid(out.float()),
        score=_affinity_score,
        trivial=_affinity_rate,
    )
)

register_task(
    Task(
        name="depth",
        description="depth (per-pixel regression)",
        kind="dense",
        metric="RMSE",
        higher_is_better=False,
        channels=lambda ds: 1,
        target=lambda ds, policy: (lambda t: (t[0].float(), t[1]))(_own("depth", ds)),
        loss=_depth_loss,
        predict=lambda out: out.float()[:, 0],
        score=_depth_score,
        trivial=_pixel_mean,
        pad=float("nan"),
    )
)

register_task(
    Task(
        name="edges",
        description="edges (binary map)",
        kind="dense",
        metric="AP",
        higher_is_better=True,
        channels=lambda ds: 1,
        target=lambda ds, policy: (lambda t: (_binary_map(t[0]), t[1]))(
            _own_or_derived("edges", ds, policy, "Canny edges of the clean RGB")
        ),
        loss=_bce,
        predict=lambda out: torch.sigmoid(out.float()[:, 0]),
        score=_binary_score,
        trivial=_pixel_rate,
    )
)

register_task(
    Task(
        name="keypoints",
        description="keypoints (heatmap, 3x3 tolerance)",
        kind="dense",
        metric="AP",
        higher_is_better=True,
        channels=lambda ds: 1,
        target=lambda ds, policy: (lambda t: (_dilate(_binary_map(t[0])), t[1]))(
            _own_or_derived("keypoints", ds, policy, "Harris corners of the clean RGB")
        ),
        loss=_bce,
        predict=lambda out: torch.sigmoid(out.float()[:, 0]),
        score=_binary_score,
        trivial=_pixel_rate,
    )
)

register_task(
    Task(
        name="autoencode",
        description="autoencoding (reconstruct the clean image)",
        kind="dense",
        metric="PSNR",
        higher_is_better=True,
        channels=lambda ds: ds.shape[0],
        target=lambda ds, policy: _image(ds),
        loss=_image_loss,
        predict=lambda out: torch.sigmoid(out.float()),
        score=_image_score,
        trivial=_mean_image,
        pad=0.0,
    )
)

register_task(
    Task(
        name="denoise",
        description=f"denoising (clean image from input + N(0, {DENOISE_SIGMA}) noise)",
        kind="dense",
        metric="PSNR",
        higher_is_better=True,
        channels=lambda ds: ds.shape[0],
        target=lambda ds, policy: _image(ds),
        loss=_image_loss,
        predict=lambda out: torch.sigmoid(out.float()),
        score=_denoise_score,
        trivial=_mean_image,
        pad=0.0,
        input_noise=DENOISE_SIGMA,
    )
)

__all__ = ["AFFINITY_OFFSETS", "DENOISE_SIGMA", "noisy", "eval_noise"]
