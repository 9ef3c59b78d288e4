"""Any class-per-folder image tree, e.g. an ImageNet-100 subset.

Expected layout (split folders are required, so train and test never mix by accident):

    root/train/<class>/*.png|jpg|jpeg
    root/test/<class>/...      (or root/val/<class>/... when there is no root/test)

Classes are the sorted folder names under root/train (so labels agree across splits). Every image is
converted to RGB and resized to image_size x image_size. `fraction` keeps a seeded share of each class
(APBench uses 0.2 of ImageNet-100's train split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from ..core.errors import UserError
from ..core.options import MAX_IMAGE_SIZE, Count, check_memory
from .base import ImageDataset
from .registry import register_dataset

EXTENSIONS = (".png", ".jpg", ".jpeg")
_SPLIT_DIRS = {"train": ("train",), "test": ("test", "val")}


def _split_dir(root: Path, split: str) -> Path:
    for name in _SPLIT_DIRS[split]:
        if (root / name).is_dir():
            return root / name
    want = " or ".join(f"{root}/{n}/<class>/*.png|jpg|jpeg" for n in _SPLIT_DIRS[split])
    raise UserError(f"imagefolder: expected {want}; pass --data-dir pointing at the folder that holds train/ and test/")


def _class_names(root: Path, split_dir: Path) -> list[str]:
    base = root / "train" if (root / "train").is_dir() else split_dir
    classes = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"imagefolder: no class folders in {base}")
    return classes


def _images_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def _keep(paths: list[Path], fraction: float, seed: int, label: int) -> list[Path]:
    """A seeded share of one class, at least one image, in file order.

    Seeded per (seed, label) so a class's subset does not change when other classes gain or lose files.
    """
    if fraction >= 1.0 or not paths:
        return paths
    k = max(1, round(fraction * len(paths)))
    rng = np.random.default_rng([seed, label])
    return [paths[i] for i in sorted(rng.permutation(len(paths))[:k])]


def _read(path: Path, size: int) -> np.ndarray:
    from PIL import Image  # imported here: only this loader needs Pillow

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except Exception as e:  # unreadable, truncated, or a decompression bomb (PIL's own error type)
        raise UserError(f"corrupt image {path}: {type(e).__name__}: {str(e)[:120]}") from None


@register_dataset(
    "imagefolder",
    "class-per-folder images: root/train/<class>/*.png|jpg and root/test (or val)/<class>/...",
    files=("train/<class>/*.png|jpg|jpeg", "test|val/<class>/*.png|jpg|jpeg"),
)
def load_imagefolder(
    root: Path, split: str, image_size: Annotated[int, Count(MAX_IMAGE_SIZE)] = 32, fraction: float = 1.0, seed: int = 0
) -> ImageDataset:
    root = Path(root)
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"imagefolder: fraction must be in (0, 1], got {fraction}")
    if image_size < 1:
        raise UserError(f"imagefolder: image_size must be positive, got {image_size}")
    split_dir = _split_dir(root, split)
    classes = _class_names(root, split_dir)
    extra = sorted(
        p.name for p in split_dir.iterdir() if p.is_dir() and p.name not in classes and not p.name.startswith(".")
    )
    if extra:
        raise UserError(f"imagefolder: {split_dir} has classes missing from {root}/train: {', '.join(extra[:5])}")
    paths, labels = [], []
    for label, name in enumerate(classes):
        folder = split_dir / name
        kept = _keep(_images_of(folder), fraction, seed, label) if folder.is_dir() else []
        paths += kept
        labels += [label] * len(kept)
    if not paths:
        raise UserError(f"imagefolder: no {'/'.join(EXTENSIONS)} images under {split_dir}/<class>/")
    # every image as uint8 at image_size, held twice while they are stacked: refused before the first is decoded
    check_memory(2 * len(paths) * 3 * image_size**2, f"imagefolder: {len(paths):,} images at {image_size} px")
    images = torch.from_numpy(np.stack([_read(p, image_size) for p in paths]))
    meta = {"folder": str(split_dir), "image_size": image_size, "fraction": fraction, "seed": seed}
    return ImageDataset("imagefolder", split, images, torch.tensor(labels), classes, meta=meta)
