"""Datasets held in memory as uint8 tensors, behind one registry.

ds = uebench.data.load("cifar10", root="~/data", split="train")
ds = uebench.data.load("scenes")          # procedural, no files needed: the embedded default
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

# every loader registers itself on import
from . import cifar, imagefolder, mnist, scenes, svhn, taskonomy  # noqa: F401
from .base import ImageDataset, seeded_subset
from .paths import data_root
from .registry import DATASETS, DatasetInfo, register_dataset

DEFAULT_DATASET = "scenes"
SPLITS = ("train", "test")


def load(name: str = DEFAULT_DATASET, root: str | Path | None = None, split: str = "train", **options) -> ImageDataset:
    from ..core.errors import UserError

    info = DATASETS.get(name)
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
    return info.loader(data_root(root), split, **typed_options(info, options))


def typed_options(info: DatasetInfo, options: dict[str, Any]) -> dict[str, Any]:
    """The loader's keyword options, each checked against its declared type (uebench.core.options): an unknown name or a
    bad value is one UserError line, never a loader's traceback."""
    from ..core.errors import UserError
    from ..core.options import coerce, type_hints

    params = [
        n for n, q in inspect.signature(info.loader).parameters.items() if q.default is not inspect.Parameter.empty
    ]
    hints = type_hints(info.loader)
    for key in options:
        if key not in params:
            raise UserError(f"dataset {info.name} has no option '{key}'; valid: {', '.join(params) or 'none'}")
    return {k: coerce(v, hints.get(k, Any), f"dataset {info.name}: option {k}") for k, v in options.items()}


def list_datasets() -> list[DatasetInfo]:
    return [DATASETS.get(n) for n in DATASETS.names()]


__all__ = [
    "ImageDataset",
    "load",
    "list_datasets",
    "data_root",
    "seeded_subset",
    "register_dataset",
    "DATASETS",
    "DEFAULT_DATASET",
]
