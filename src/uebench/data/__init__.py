"""Datasets held in memory as uint8 tensors, behind one registry.

    ds = uebench.data.load("cifar10", root="~/data", split="train")
    ds = uebench.data.load("scenes")          # procedural, no files needed: the embedded default
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

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
    return info.loader(data_root(root), split, **typed_options(info, options))


def typed_options(info: DatasetInfo, options: dict[str, Any]) -> dict[str, Any]:
    """The loader's keyword options, each checked against the type of its default: an unknown name, a word where a
    number goes, NaN, inf or a fraction where a count goes is one UserError line, never a loader's traceback."""
    from ..errors import UserError

    params = {n: q for n, q in inspect.signature(info.loader).parameters.items() if q.default is not inspect.Parameter.empty}
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in params:
            valid = ", ".join(params) or "none"
            raise UserError(f"dataset {info.name} has no option '{key}'; valid: {valid}")
        default = params[key].default
        kind = type(default)
        ok = True
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())
            value = int(value) if ok else value
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            value = float(value) if ok else value
        elif kind is str:
            ok = isinstance(value, str)
        if not ok:
            raise UserError(f"dataset {info.name}: option {key} must be {'a whole number' if kind is int else 'a finite number' if kind is float else kind.__name__}, got {value!r:.40}")
        out[key] = value
    return out


def list_datasets() -> list[DatasetInfo]:
    return [DATASETS.get(n) for n in DATASETS.names()]


__all__ = ["ImageDataset", "load", "list_datasets", "data_root", "stratified_subset", "register_dataset", "DATASETS", "DEFAULT_DATASET"]
