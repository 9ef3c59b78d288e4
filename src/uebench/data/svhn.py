"""SVHN (cropped digits) from the official train_32x32.mat / test_32x32.mat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.errors import UserError
from .base import ImageDataset
from .files import mat_v5_uncompressed, read_bounded
from .paths import find_folder
from .registry import register_dataset

_URL = "http://ufldl.stanford.edu/housenumbers/"
_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
_MD5 = {"train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373", "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3"}


MAX_FILE = 2**31  # bytes of a .mat file, compressed or inflated (the official train file: 182 MB, 225 MB inflated)


def _read_mat(path: Path, max_bytes: int = MAX_FILE) -> tuple[np.ndarray, np.ndarray]:
    import io

    import scipy.io  # imported here: only SVHN needs it

    raw = io.BytesIO(
        mat_v5_uncompressed(read_bounded(path, max_bytes, "an SVHN file"), f"corrupt SVHN file {path}", max_bytes)
    )
    try:
        declared = {name: (shape, kind) for name, shape, kind in scipy.io.whosmat(raw)}
        if any(declared.get(k, (None, None))[1] not in _NUMERIC for k in ("X", "y")):
            raise UserError(f"corrupt SVHN file {path}: 'X' and 'y' must be numeric arrays, found {declared}")
        d = scipy.io.loadmat(raw, variable_names=["X", "y"])
    except UserError:
        raise
    except Exception as e:  # not a .mat at all, or damaged inside an element
        raise UserError(f"corrupt SVHN file {path}: {type(e).__name__}: {e}") from None
    return np.asarray(d["X"]), np.asarray(d["y"]).reshape(-1)


_NUMERIC = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "single", "double"}


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
