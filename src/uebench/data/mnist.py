"""MNIST from the official idx files (gzipped or not); the train split may also come from an .npz."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ..core.errors import UserError
from .base import ImageDataset
from .files import open_regular, read_npz
from .registry import register_dataset

_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FOLDERS = ("mnist", "MNIST/raw", "mnist-subset")
_MAX_BYTES = 70_000 * 28 * 28 + 1024  # the largest idx file (train images) and a header: a gzip may inflate no further


def _candidates(root: Path) -> list[Path]:
    return [root, *(root / f for f in FOLDERS)]


def _find(folder: Path, stem: str) -> Path | None:
    """The idx file `stem` in folder, plain or gzipped."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx(path: Path) -> np.ndarray:
    """An idx file (uint8 payload) as an array of the shape its header declares."""
    try:
        with open_regular(path) as plain, gzip.open(plain, "rb") if path.suffix == ".gz" else plain as f:
            raw = f.read(_MAX_BYTES + 1)
    except (OSError, EOFError) as e:  # bad gzip stream or truncated archive
        raise UserError(f"corrupt MNIST file {path}: {type(e).__name__}: {e}") from None
    if len(raw) > _MAX_BYTES:
        raise UserError(f"corrupt MNIST file {path}: more than the {_MAX_BYTES:,} bytes an MNIST file holds")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"corrupt MNIST file {path}: bad idx magic number (expected 0x0000080n, uint8 data)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise UserError(f"corrupt MNIST file {path}: truncated idx header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise UserError(
            f"corrupt MNIST file {path}: header declares {dims} ({size} bytes), file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _from_idx(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    img_stem, lbl_stem = _FILES[split]
    lbl_path = _find(folder, lbl_stem)
    if lbl_path is None:
        raise UserError(f"mnist: found {img_stem} but not {lbl_stem}[.gz] in {folder}")
    return read_idx(_find(folder, img_stem)), read_idx(lbl_path)


def _npz_train(folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """x_train/y_train from the first .npz in folder that holds them (how a partial copy is often shipped)."""
    for path in sorted(folder.glob("*.npz")):  # only the two members are read, each after its header fits MNIST
        d = read_npz(path, lambda names: [k for k in ("x_train", "y_train") if k in names], lambda _: 8 * _MAX_BYTES)
        if len(d) == 2:
            return d["x_train"], d["y_train"]
    return None


def _locate(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    for folder in _candidates(root):
        if _find(folder, _FILES[split][0]):
            return (*_from_idx(folder, split), folder)
    if split == "train":
        for folder in _candidates(root):
            found = _npz_train(folder) if folder.is_dir() else None
            if found:
                return (*found, folder)
    also = " (or an .npz with x_train, y_train)" if split == "train" else ""
    raise UserError(
        f"mnist: expected {_FILES[split][0]}[.gz] and {_FILES[split][1]}[.gz]{also} in {root} "
        f"or {root}/{{{','.join(FOLDERS)}}}; run 'uebench data download mnist' or pass --data-dir"
    )


def _check(images: np.ndarray, labels: np.ndarray, folder: Path) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise UserError(f"mnist in {folder}: images of shape {images.shape} {images.dtype}, expected (N, 28, 28) uint8")
    if labels.ndim != 1 or len(labels) != len(images):
        raise UserError(f"mnist in {folder}: {len(images)} images but labels of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"mnist in {folder}: labels outside 0..9")


@register_dataset(
    "mnist",
    "MNIST, official idx files (gzipped or not); train may be an .npz with x_train, y_train",
    files=tuple(f"{s}[.gz]" for pair in _FILES.values() for s in pair),
    downloads=tuple((_URL + name, name, md5) for name, md5 in _MD5.items()),
)
def load_mnist(root: Path, split: str) -> ImageDataset:
    images, labels, folder = _locate(Path(root), split)
    _check(images, labels, folder)
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return ImageDataset("mnist", split, x, y, [str(i) for i in range(10)], meta={"folder": str(folder)})
