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
# Loader options whose default changed after records of them existed (a run's config.json, a bench's identity and run
# keys, a crosstask folder's experiment.json: each holds the options as they were given), with the value that a record
# leaving one out was made with: `scenes` generated `standard` images by default before 0.2.0 and `natural` since
# (where the poisons are learned). recorded_options writes such an option out, options_from_record reads it back.
DEFAULTS_BEFORE: dict[str, dict[str, Any]] = {"scenes": {"difficulty": "standard"}}


def load(name: str = DEFAULT_DATASET, root: str | Path | None = None, split: str = "train", **options) -> ImageDataset:
    from ..core.errors import unknown_name

    info = DATASETS.get(name)
    if split not in SPLITS:
        raise unknown_name("split", split, SPLITS)
    typed = typed_options(info, options)
    ds = info.loader(data_root(root), split, **typed)
    ds.meta.setdefault("options", split_options(info, split, typed))
    return ds


def resolved_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` with each option whose default changed (DEFAULTS_BEFORE) given the value it loads with (the loader's
    default where it is not given): `{}` for scenes is `{'difficulty': 'natural'}`."""
    before = DEFAULTS_BEFORE.get(name) if isinstance(name, str) else None
    if not before or not isinstance(options, dict) or all(k in options for k in before):
        return options
    defaults = loader_defaults(DATASETS.get(name))
    return {**options, **{k: defaults.get(k, old) for k, old in before.items() if k not in options}}


def recorded_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` as a record holds them: an option whose default changed (DEFAULTS_BEFORE) is written out with the
    value it loads with (resolved_options), and left out where that is the value a record without it was made with.
    So a record written before keeps its identity (scenes options without a difficulty are `standard`), and one
    written now says what it loads (`{'difficulty': 'natural'}` for scenes' default)."""
    before = DEFAULTS_BEFORE.get(name) if isinstance(name, str) else None
    if not before or not isinstance(options, dict):
        return options
    resolved = resolved_options(name, options)
    return {k: v for k, v in resolved.items() if not (k in before and v == before[k])}


def options_from_record(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options a record means (the inverse of recorded_options): an option it leaves out whose default changed
    since has the value the record was made with (scenes: difficulty `standard`)."""
    before = DEFAULTS_BEFORE.get(name) if isinstance(name, str) else None
    if not before or not isinstance(options, dict):
        return options
    return {**options, **{k: v for k, v in before.items() if k not in options}}


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
            if key == "n_train":  # scenes' size option, given to a dataset of files: their subset is the subset option
                hint = " (a generated dataset's size); to train on N of its images use --subset N (subset=N);"
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
    "DEFAULTS_BEFORE",
    "options_from_record",
    "recorded_options",
    "resolved_options",
]
