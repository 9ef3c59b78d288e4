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
    from ..core.errors import unknown_name

    info = DATASETS.get(name)
    if split not in SPLITS:
        raise unknown_name("split", split, SPLITS)
    typed = typed_options(info, options)
    ds = info.loader(data_root(root), split, **typed)
    ds.meta.setdefault("options", split_options(info, split, typed))
    return ds


def split_options(info: DatasetInfo, split: str, given: dict[str, Any]) -> dict[str, Any]:
    """Every loader option that makes `split`, the defaults filled in (what a poison records of the data it was made
    for): an option sized for another split (scenes' n_test, for the train split) is left out."""
    other = {f"n_{s}" for s in SPLITS if s != split}
    return {k: v for k, v in {**loader_defaults(info), **given}.items() if k not in other}


def loader_defaults(info: DatasetInfo) -> dict[str, Any]:
    """The loader's options (its keyword parameters with a default, besides root and split) and their defaults."""
    params = inspect.signature(info.loader).parameters.items()
    return {n: q.default for n, q in params if q.default is not inspect.Parameter.empty and n not in ("root", "split")}


def typed_options(info: DatasetInfo, options: dict[str, Any]) -> dict[str, Any]:
    """The loader's keyword options, each checked against its declared type (uebench.core.options): an unknown name or a
    bad value is one UserError line, never a loader's traceback."""
    from ..core.errors import UserError, did_you_mean
    from ..core.options import coerce, type_hints

    params = list(loader_defaults(info))
    hints = type_hints(info.loader)
    for key in options:
        if key not in params:
            hint = did_you_mean(key, params) or ";"
            raise UserError(f"dataset {info.name} has no option '{key}'{hint} valid: {', '.join(params) or 'none'}")
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
