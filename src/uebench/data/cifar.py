"""CIFAR-10 and CIFAR-100 from the official python layout (pickled batches of channel-planar uint8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.errors import UserError
from .base import ImageDataset
from .files import load_pickle, read_bounded
from .paths import find_folder
from .registry import register_dataset

_C10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_C100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"


# The largest file the official layout holds: CIFAR-100's train (50,000 images of 3,072 bytes, labels and names, 155 MB)
_MAX_FILE = 60_000 * 3072 + 16 * 2**20


def _unpickle(path: Path) -> dict:
    """A batch file: a dict of bytes, ints, lists and numpy arrays, parsed without unpickling (files.load_pickle), so
    a crafted batch can neither run code nor make a 98-byte file ask for gigabytes."""
    d = load_pickle(read_bounded(path, _MAX_FILE, "a CIFAR file"), f"corrupt CIFAR file {path}", _MAX_FILE)
    if not isinstance(d, dict):
        raise UserError(f"corrupt CIFAR file {path}: holds a {type(d).__name__}, not a dict")
    return {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def _to_images(flat, path: Path) -> torch.Tensor:
    """The batch's uint8 rows as (N, 3, 32, 32); floats, wider integers and values past 255 are refused, not cast."""
    if not isinstance(flat, np.ndarray) or flat.dtype != np.uint8 or flat.ndim != 2 or flat.shape[1] != 3072:
        got = f"{flat.dtype} {flat.shape}" if isinstance(flat, np.ndarray) else type(flat).__name__
        raise UserError(f"corrupt CIFAR file {path}: 'data' is {got}, expected uint8 (N, 3072) as the official files")
    return torch.from_numpy(flat.reshape(-1, 3, 32, 32).copy())


def _to_labels(values, n: int, classes: int, path: Path, key: str) -> torch.Tensor:
    """N labels in [0, classes): a label of 10 (CIFAR-10) or -1 would index past the classes or wrap around."""
    ok = isinstance(values, (list, tuple)) or (isinstance(values, np.ndarray) and values.ndim == 1)
    items = list(values) if ok else []
    if not ok or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
        raise UserError(f"corrupt CIFAR file {path}: '{key}' must be a list of whole numbers")
    if len(items) != n:
        raise UserError(f"corrupt CIFAR file {path}: {len(items)} labels for {n} images")
    bad = [int(v) for v in items if not 0 <= v < classes]
    if bad:
        raise UserError(f"corrupt CIFAR file {path}: label {bad[0]} outside 0..{classes - 1}")
    return torch.tensor([int(v) for v in items], dtype=torch.int64)


def _load(
    root: Path,
    split: str,
    *,
    name: str,
    folders: list[str],
    train_files,
    test_files,
    label_key,
    meta_file,
    names_key,
    num_classes: int,
):
    files = train_files if split == "train" else test_files
    folder = find_folder(root, folders, files[0])
    if folder is None:
        raise UserError(
            f"{name}: expected {', '.join(files)} (official python layout) in {root} or {root}/{folders[0]}; "
            f"run 'uebench data download {name}' or pass --data-dir"
        )
    images, labels = [], []
    for fname in files:
        path = folder / fname
        if not path.exists():
            raise UserError(f"{name}: missing {path}")
        d = _unpickle(path)
        if "data" not in d or label_key not in d:
            raise UserError(f"corrupt CIFAR file {path}: keys {sorted(d)} lack 'data' or '{label_key}'")
        images.append(_to_images(d["data"], path))
        labels.append(_to_labels(d[label_key], len(images[-1]), num_classes, path, label_key))
    meta_path = folder / meta_file
    classes = [str(i) for i in range(num_classes)]
    if meta_path.exists():
        names = _unpickle(meta_path).get(names_key)
        if (
            not isinstance(names, list)
            or len(names) != num_classes
            or not all(isinstance(c, (bytes, str)) for c in names)
        ):
            raise UserError(f"corrupt CIFAR file {meta_path}: '{names_key}' must be {num_classes} class names")
        classes = [c.decode("utf-8", "replace") if isinstance(c, bytes) else c for c in names]
    return ImageDataset(name, split, torch.cat(images), torch.cat(labels), classes, meta={"folder": str(folder)})


@register_dataset(
    "cifar10",
    "CIFAR-10, official python layout (cifar-10-batches-py/)",
    files=("cifar-10-batches-py/data_batch_1..5", "cifar-10-batches-py/test_batch"),
    downloads=((_C10_URL, "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),),
)
def load_cifar10(root: Path, split: str) -> ImageDataset:
    return _load(
        root,
        split,
        name="cifar10",
        folders=["cifar-10-batches-py", "cifar-10-batches-py-subset"],
        train_files=[f"data_batch_{i}" for i in range(1, 6)],
        test_files=["test_batch"],
        label_key="labels",
        meta_file="batches.meta",
        names_key="label_names",
        num_classes=10,
    )


@register_dataset(
    "cifar100",
    "CIFAR-100 (fine labels), official python layout (cifar-100-python/)",
    files=("cifar-100-python/train", "cifar-100-python/test"),
    downloads=((_C100_URL, "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),),
)
def load_cifar100(root: Path, split: str) -> ImageDataset:
    return _load(
        root,
        split,
        name="cifar100",
        folders=["cifar-100-python"],
        train_files=["train"],
        test_files=["test"],
        label_key="fine_labels",
        meta_file="meta",
        names_key="fine_label_names",
        num_classes=100,
    )
