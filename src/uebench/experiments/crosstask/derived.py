"""2-D targets derived from RGB for any image dataset, as Taskonomy derives its 2-D tasks (scikit-image):

    edges      Canny edges of the grey image (sigma 1, hysteresis thresholds 0.1 / 0.2 of the unit gradient)
    keypoints  Harris corners (sigma 1, k 0.05), local maxima at least 2 px apart above 10% of the image's
               strongest response (Taskonomy uses SURF; Harris is the corner detector scikit-image ships)
    unsup      Felzenszwalb-Huttenlocher superpixels (scale 100, sigma 0.5, min_size 20: ~12 segments on a
               32x32 CIFAR image), the graph-based segmentation behind Taskonomy's segment_unsup2d

They are always computed from the images they are given; the experiment gives the CLEAN images, so a poison
changes the inputs a model sees and never its targets. Every function is deterministic (no randomness at all);
results are cached in memory, keyed by a digest of the image bytes and the parameters, so the clean train and
test sets are processed once per process however many runs use them.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

_CACHE: dict[tuple, torch.Tensor] = {}
_CACHE_LIMIT = 32  # entries (each a target tensor of one dataset split); oldest dropped first


@dataclass(frozen=True)
class CannyParams:
    sigma: float = 1.0
    low: float = 0.1
    high: float = 0.2


@dataclass(frozen=True)
class HarrisParams:
    sigma: float = 1.0
    k: float = 0.05
    min_distance: int = 2
    threshold_rel: float = 0.1


@dataclass(frozen=True)
class FelzenszwalbParams:
    scale: float = 100.0
    sigma: float = 0.5
    min_size: int = 20


def _grey(img_hwc: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2gray

    return rgb2gray(img_hwc) if img_hwc.shape[-1] == 3 else img_hwc[..., 0].astype(np.float64) / 255.0


def canny_edges(img_hwc: np.ndarray, p: CannyParams = CannyParams()) -> np.ndarray:
    """(H, W) uint8 {0, 1} edge map of one uint8 RGB (or grey) image."""
    from skimage.feature import canny

    return canny(_grey(img_hwc), sigma=p.sigma, low_threshold=p.low, high_threshold=p.high).astype(np.uint8)


def harris_keypoints(img_hwc: np.ndarray, p: HarrisParams = HarrisParams()) -> np.ndarray:
    """(H, W) uint8 {0, 1} map with a 1 at every detected corner."""
    from skimage.feature import corner_harris, corner_peaks

    response = corner_harris(_grey(img_hwc), sigma=p.sigma, k=p.k)
    out = np.zeros(img_hwc.shape[:2], dtype=np.uint8)
    if response.max() > 0:  # a flat image has no corner (corner_peaks would return every plateau pixel)
        peaks = corner_peaks(response, min_distance=p.min_distance, threshold_rel=p.threshold_rel, exclude_border=False)
        out[peaks[:, 0], peaks[:, 1]] = 1
    return out


def felzenszwalb_segments(img_hwc: np.ndarray, p: FelzenszwalbParams = FelzenszwalbParams()) -> np.ndarray:
    """(H, W) int64 superpixel ids 0..K-1 (ids are arbitrary: only which pixels share one matters)."""
    from skimage.segmentation import felzenszwalb

    img = img_hwc if img_hwc.shape[-1] == 3 else img_hwc[..., 0]
    return felzenszwalb(
        img, scale=p.scale, sigma=p.sigma, min_size=p.min_size, channel_axis=-1 if img.ndim == 3 else None
    ).astype(np.int64)


DERIVERS: dict[str, tuple[Callable[[np.ndarray, object], np.ndarray], object]] = {
    "edges": (canny_edges, CannyParams()),
    "keypoints": (harris_keypoints, HarrisParams()),
    "unsup": (felzenszwalb_segments, FelzenszwalbParams()),
}


def digest(images: torch.Tensor) -> str:
    """A content key for a uint8 image tensor (shape and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()


def derive(kind: str, images: torch.Tensor, params=None) -> torch.Tensor:
    """The derived target `kind` of every image of a uint8 (N, C, H, W) tensor: (N, H, W), cached in memory."""
    fn, default = DERIVERS[kind]
    params = params if params is not None else default
    key = (kind, tuple(sorted(asdict(params).items())), digest(images))
    if key not in _CACHE:
        hwc = images.permute(0, 2, 3, 1).contiguous().numpy()
        maps = np.stack([fn(im, params) for im in hwc]) if len(hwc) else np.zeros((0, *hwc.shape[1:3]), np.int64)
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = torch.from_numpy(maps)
    return _CACHE[key]


def clear_cache() -> None:
    _CACHE.clear()
