"""Dataset registry: a loader is `fn(root: Path, split: str, **options) -> ImageDataset`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..core.registry import Registry
from .base import ImageDataset


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    loader: Callable[..., ImageDataset]
    description: str
    files: tuple[str, ...] = ()  # what the loader expects under the data folder (for error messages)
    needs_files: bool = True  # False for generated data such as `scenes`
    downloads: tuple = field(default=())  # (url, filename, md5) triples for `uebench data download`


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def register_dataset(name: str, description: str, files=(), needs_files=True, downloads=()):
    def add(fn):
        DATASETS.register(name)(DatasetInfo(name, fn, description, tuple(files), needs_files, tuple(downloads)))
        return fn

    return add
