"""Datasets held in memory as uint8 tensors, behind one registry.

    ds = uebench.data.load("cifar10", root="~/data", split="train")
    ds = uebench.data.load("scenes")          # procedural, no files needed: the embedded default
"""

from __future__ import annotations

from pathlib import Path

from . import cifar  # noqa: F401  (registers loaders)
from .base import ImageDataset, stratified_subset
from .paths import data_root
from .registry import DATASETS, DatasetInfo, register_dataset

_OPTIONAL = ["scenes", "mnist", "svhn", "imagefolder"]
for _mod in _OPTIONAL:  # loaders written in their own files register themselves on import
    try:
        __import__(f"{__name__}.{_mod}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{_mod}":
            raise

DEFAULT_DATASET = "scenes"
SPLITS = ("train", "test")


def load(name: str = DEFAULT_DATASET, root: str | Path | None = None, split: str = "train", **options) -> ImageDataset:
    from ..errors import UserError

    info = DATASETS.get(name)
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
    return info.loader(data_root(root), split, **options)


def list_datasets() -> list[DatasetInfo]:
    return [DATASETS.get(n) for n in DATASETS.names()]


__all__ = ["ImageDataset", "load", "list_datasets", "data_root", "stratified_subset", "register_dataset", "DATASETS", "DEFAULT_DATASET"]
