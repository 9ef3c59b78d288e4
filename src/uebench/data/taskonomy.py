"""A reader for Taskonomy's per-task folder layout (Zamir et al., CVPR 2018), for users who have the data.

    <root>/rgb/[<building>/]point_<p>_view_<v>_domain_rgb.png
    <root>/class_scene/...      _domain_class_scene.npy     scene-class scores (argmax = the label) or one integer
    <root>/segment_semantic/... _domain_segment_semantic.png  class id per pixel            -> target "segment"
    <root>/segment_unsup2d/...  _domain_segment_unsup2d.png   superpixel id per pixel       -> target "unsup"
    <root>/depth_zbuffer/...    _domain_depth_zbuffer.png     16-bit, 1/512 m, 65535 = none -> target "depth"
                                                                                               (metres, NaN = none)
    <root>/edge_texture/...     _domain_edge_texture.png      edge strength                 -> target "edges"
                                                                                               (strength > threshold)
    <root>/keypoints2d/...      _domain_keypoints2d.png       keypoint response             -> target "keypoints"
                                                                                               (> threshold)

A sample is identified by its path below the domain folder with the `_domain_<task>` suffix removed, so the
same point/view is matched across folders. Only images present in rgb/ and class_scene/ count; every other
domain is optional but, once present, must cover every sample (a partial folder is refused, naming one missing
file). Images are resized to `size` x `size` (RGB bilinear, label and depth maps nearest, edge and keypoint maps
thresholded first, then a block is positive if any of its pixels is, so one-pixel lines survive). Train and test are a
deterministic split by a hash of the sample id (`test_fraction`, stable when files are added or removed).
Registered as the dataset "taskonomy" with the other loaders (uebench.data).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

from ..core.errors import UserError
from .base import ImageDataset
from .files import read_npy
from .registry import register_dataset

TARGET_DOMAINS = {  # Taskonomy folder -> ImageDataset target key
    "segment_semantic": "segment",
    "segment_unsup2d": "unsup",
    "depth_zbuffer": "depth",
    "edge_texture": "edges",
    "keypoints2d": "keypoints",
}
DEPTH_INVALID = 65535
DEPTH_UNIT = 512.0  # Taskonomy depth is stored in 1/512 metre


def sample_files(folder: Path, domain: str) -> dict[str, Path]:
    """Sample id -> file, for every file of one domain folder (any depth of sub-folders)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        rel = p.relative_to(folder).with_suffix("")
        name = rel.name
        tag = f"_domain_{domain}"
        if name.endswith(tag):
            name = name[: -len(tag)]
        out[str(rel.parent / name)] = p
    return out


def in_test(sample: str, fraction: float) -> bool:
    return (zlib.crc32(sample.encode()) % 10_000) < fraction * 10_000


def _open(path: Path):
    from PIL import Image

    try:
        img = Image.open(path)
        img.load()
        return img
    except Exception as e:
        raise UserError(f"taskonomy: cannot read {path} ({type(e).__name__})") from None


def read_rgb(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    img = _open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def read_map(path: Path) -> tuple[np.ndarray, int]:
    """A single-channel map at full resolution, as integers, and its full-scale value (255 or 65535)."""
    img = _open(path)
    arr = np.asarray(img)
    full = 65535 if arr.dtype == np.uint16 or img.mode.startswith("I") else 255
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr.astype(np.int64), full


def resize_nearest(m: np.ndarray, size: int) -> np.ndarray:
    rows = ((np.arange(size) + 0.5) * m.shape[0] / size).astype(int)
    cols = ((np.arange(size) + 0.5) * m.shape[1] / size).astype(int)
    return m[rows][:, cols]


def resize_any(b: np.ndarray, size: int) -> np.ndarray:
    """A binary map downsampled so that a block holding any positive pixel stays positive (thin edges survive)."""
    from PIL import Image

    return (np.asarray(Image.fromarray((b > 0).astype(np.uint8) * 255).resize((size, size), Image.BOX)) > 0).astype(
        np.uint8
    )


MAX_CLASSES = 100_000  # scene classes (Taskonomy's class_scene has 365, Places365's)


def read_label(path: Path) -> int:
    """A class_scene file: scores over the classes (the largest wins) or one class number, in [0, MAX_CLASSES)."""
    a = read_npy(path, MAX_CLASSES * 8)  # the header is checked before anything is read
    if a.size == 0 or a.dtype.kind not in "iuf" or (a.size == 1 and not np.isfinite(a).all()):
        raise UserError(f"taskonomy: scene class {path} holds {a.dtype} {a.shape}, not a class or class scores")
    label = int(a.argmax()) if a.size > 1 else int(a.reshape(()))
    if not 0 <= label < MAX_CLASSES:
        raise UserError(f"taskonomy: scene class {path} is {label}, outside 0..{MAX_CLASSES - 1}")
    return label


def convert(
    key: str, m: np.ndarray, full: int, size: int, edge_threshold: float, keypoint_threshold: float
) -> np.ndarray:
    """A full-resolution Taskonomy map as a `size` x `size` target (binary maps thresholded before resizing)."""
    if key == "edges":
        return resize_any(m > edge_threshold * full, size)
    if key == "keypoints":
        return resize_any(m > keypoint_threshold * full, size)
    m = resize_nearest(m, size)
    if key == "depth":
        d = m.astype(np.float32) / DEPTH_UNIT
        d[m >= DEPTH_INVALID] = np.nan
        return d
    return m.astype(np.int64)


@register_dataset(
    "taskonomy",
    "Taskonomy per-task folders (rgb, class_scene, segment_semantic, "
    "segment_unsup2d, depth_zbuffer, edge_texture, keypoints2d)",
    files=("rgb/", "class_scene/"),
)
def load_taskonomy(
    root: Path | None,
    split: str = "train",
    *,
    size: int = 32,
    test_fraction: float = 0.2,
    edge_threshold: float = 0.1,
    keypoint_threshold: float = 0.1,
) -> ImageDataset:
    root = Path(root) if root is not None else Path(".")
    if split not in ("train", "test"):
        raise UserError(f"taskonomy: unknown split '{split}'; valid: train, test")
    size, test_fraction = int(size), float(test_fraction)
    if size < 8 or not 0 < test_fraction < 1:
        raise UserError(f"taskonomy: size must be >= 8 and test_fraction in (0, 1) (got {size}, {test_fraction})")
    for needed in ("rgb", "class_scene"):
        if not (root / needed).is_dir():
            raise UserError(
                f"taskonomy: no '{needed}' folder in {root} (expected "
                "Taskonomy's per-task layout: rgb/, class_scene/, ...)"
            )
    rgb, cls = sample_files(root / "rgb", "rgb"), sample_files(root / "class_scene", "class_scene")
    ids = sorted(set(rgb) & set(cls))
    if not ids:
        raise UserError(f"taskonomy: no sample in {root} has both an rgb image and a class_scene file")
    labels_all = {i: read_label(cls[i]) for i in ids}
    num_classes = max(labels_all.values()) + 1
    chosen = [i for i in ids if in_test(i, test_fraction) == (split == "test")]
    images = np.stack([read_rgb(rgb[i], size) for i in chosen]) if chosen else np.zeros((0, 3, size, size), np.uint8)
    targets: dict[str, torch.Tensor] = {}
    for domain, key in TARGET_DOMAINS.items():
        folder = root / domain
        if not folder.is_dir():
            continue
        files = sample_files(folder, domain)
        missing = [i for i in ids if i not in files]
        if missing:
            raise UserError(
                f"taskonomy: {domain}/ lacks sample '{missing[0]}' ({len(missing)} "
                f"of {len(ids)} missing); complete it or remove the folder"
            )
        maps = []
        for i in chosen:
            m, full = read_map(files[i])
            maps.append(convert(key, m, full, size, edge_threshold, keypoint_threshold))
        targets[key] = torch.from_numpy(np.stack(maps)) if maps else torch.zeros((0, size, size))
    labels = torch.tensor([labels_all[i] for i in chosen], dtype=torch.int64)
    return ImageDataset(
        "taskonomy",
        split,
        torch.from_numpy(images),
        labels,
        [f"scene_{k}" for k in range(num_classes)],
        targets=targets,
        meta={"size": size, "folder": str(root), "samples": len(chosen)},
    )
