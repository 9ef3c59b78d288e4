"""CIFAR-10 and CIFAR-100 from the official python layout (pickled batches of channel-planar uint8)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .base import ImageDataset
from .paths import find_folder
from .registry import register_dataset

_C10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_C100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"


# What the official batch files hold: a dict of bytes, ints, lists and numpy arrays. Nothing else is ever built, so
# a crafted batch file cannot run code (a plain pickle.load calls whatever the file names).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: not a type the official CIFAR files use")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = _BatchUnpickler(f, encoding="bytes").load()
    except Exception as e:  # truncated, foreign, or asking for code
        raise UserError(f"corrupt CIFAR file {path}: {type(e).__name__}: {str(e)[:160]}") from None
    if not isinstance(d, dict):
        raise UserError(f"corrupt CIFAR file {path}: holds a {type(d).__name__}, not a dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _to_images(flat) -> torch.Tensor:
    arr = np.asarray(flat, dtype=np.uint8)
    if arr.ndim != 2 or arr.shape[1] != 3072:
        raise UserError(f"CIFAR batch has data of shape {arr.shape}, expected (N, 3072)")
    return torch.from_numpy(arr.reshape(-1, 3, 32, 32).copy())


def _load(
    root: Path, split: str, *, name: str, folders: list[str], train_files, test_files, label_key, meta_file, names_key
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
        images.append(_to_images(d["data"]))
        labels.append(torch.as_tensor(list(d[label_key]), dtype=torch.int64))
    meta_path = folder / meta_file
    if meta_path.exists():
        classes = [c.decode() if isinstance(c, bytes) else c for c in _unpickle(meta_path)[names_key]]
    else:
        classes = [str(i) for i in range(int(torch.cat(labels).max()) + 1)]
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
    )
