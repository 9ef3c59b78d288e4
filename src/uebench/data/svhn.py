"""SVHN (cropped digits) from the official train_32x32.mat / test_32x32.mat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .base import ImageDataset
from .paths import find_folder
from .registry import register_dataset

_URL = "http://ufldl.stanford.edu/housenumbers/"
_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
_MD5 = {"train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373", "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3"}


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io  # imported here: only SVHN needs it

    try:
        d = scipy.io.loadmat(str(path))
    except Exception as e:  # truncated file or not a .mat at all
        raise UserError(f"corrupt SVHN file {path}: {type(e).__name__}: {e}") from None
    if "X" not in d or "y" not in d:
        raise UserError(f"corrupt SVHN file {path}: lacks 'X' or 'y'")
    return np.asarray(d["X"]), np.asarray(d["y"]).reshape(-1)


@register_dataset(
    "svhn",
    "SVHN cropped digits, official .mat files (train_32x32.mat, test_32x32.mat)",
    files=tuple(_FILES.values()),
    downloads=tuple((_URL + name, name, md5) for name, md5 in _MD5.items()),
)
def load_svhn(root: Path, split: str) -> ImageDataset:
    fname = _FILES[split]
    folder = find_folder(Path(root), ["svhn"], fname)
    if folder is None:
        raise UserError(
            f"svhn: expected {fname} in {root} or {root}/svhn; run 'uebench data download svhn' or pass --data-dir"
        )
    x, y = _read_mat(folder / fname)
    # the .mat stores H x W x C x N
    if x.ndim != 4 or x.shape[2] != 3 or x.dtype != np.uint8 or x.shape[3] != len(y):
        raise UserError(
            f"corrupt SVHN file {folder / fname}: X {x.shape} {x.dtype}, y {y.shape}; expected HxWx3xN uint8"
        )
    if y.dtype.kind not in "iuf" or not np.isin(y, np.arange(11)).all():  # a label of 300 would wrap to a digit
        raise UserError(f"corrupt SVHN file {folder / fname}: labels outside 0..10 (the digits, 0 written as 10)")
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))
    labels = torch.from_numpy(y.astype(np.int64) % 10)  # SVHN writes digit 0 as label 10
    return ImageDataset("svhn", split, images, labels, [str(i) for i in range(10)], meta={"folder": str(folder)})
