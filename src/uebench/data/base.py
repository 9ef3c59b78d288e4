"""The in-memory dataset type every part of uebench passes around."""

from __future__ import annotations

import numbers
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch.utils.data import Dataset


@dataclass
class ImageDataset(Dataset):
    """uint8 images (N, C, H, W), int64 labels (N,), and optional dense per-image task targets.

    `targets` maps a task name to a tensor whose first dimension is N (for `scenes`: "segment",
    "depth", "edges", "keypoints"). `indices` are the positions of these images in the full split,
    so a subset or a poison can always be traced back to the source images. `meta["options"]`, when the dataset came
    from uebench.data.load, holds the loader options that made this split (a poison records them).

    It is a torch Dataset too: `ds[i]` is (image uint8 (C, H, W), int label), so `DataLoader(ds, batch_size=64)`
    yields (uint8 images (B, C, H, W), int64 labels (B,)). uebench itself never goes through it: it augments whole
    batches of the tensors in memory.
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    indices: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        self.labels = self.labels.to(torch.int64)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.indices is None:
            self.indices = torch.arange(len(self.images))
        for task, t in self.targets.items():
            if len(t) != len(self.images):
                raise ValueError(f"target '{task}' has {len(t)} rows for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """(image uint8 (C, H, W), int label) of image i: what torch.utils.data.DataLoader asks for."""
        try:
            if isinstance(i, bool):
                raise TypeError
            i = operator.index(i)
        except TypeError:
            raise TypeError(
                f"an ImageDataset is indexed by one int, got {type(i).__name__}; subset() takes several"
            ) from None
        return self.images[i], int(self.labels[i])  # past the end: IndexError, which ends a plain `for x in ds`

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, idx: int | torch.Tensor | Sequence[int], *, seed: int | None = None) -> "ImageDataset":
        """`subset(n)`: a seeded random subset of n images (`seed`, default 0), the draw of seeded_subset and so the
        images `uebench train --subset n --seed S` trains on. `subset([i, j, ...])` (a list or 1-D tensor): those
        positions, in that order."""
        from ..core.errors import UserError

        if isinstance(idx, bool) or (isinstance(idx, torch.Tensor) and idx.ndim == 0):
            raise UserError(f"subset takes a number of images (an int) or a list of positions, got {idx!r:.40}")
        if isinstance(idx, numbers.Integral):
            return seeded_subset(self, int(idx), seed=0 if seed is None else seed)
        if seed is not None:
            raise UserError("subset(positions) takes no seed: the seed draws subset(n), a number of images")
        t = torch.as_tensor(idx)
        if t.ndim != 1 or (t.numel() and (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool)):
            raise UserError(f"subset takes a number of images (an int) or a list of positions, got {idx!r:.40}")
        idx = t.to(torch.int64)
        return replace(
            self,
            images=self.images[idx],
            labels=self.labels[idx],
            targets={k: v[idx] for k, v in self.targets.items()},
            indices=self.indices[idx],
        )

    def with_images(self, images: torch.Tensor, **meta: Any) -> "ImageDataset":
        """The same dataset with other pixels (a poisoned copy); labels and task targets stay clean."""
        if images.shape != self.images.shape:
            raise ValueError(f"image shape {tuple(images.shape)} != {tuple(self.images.shape)}")
        return replace(self, images=images, meta={**self.meta, **meta})

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "split": self.split,
            "size": len(self),
            "shape": list(self.shape),
            "num_classes": self.num_classes,
            "tasks": sorted(self.targets),
            **{k: v for k, v in self.meta.items() if isinstance(v, (str, int, float, bool))},
        }


def seeded_subset(ds: ImageDataset, n: int, seed: int = 0) -> ImageDataset:
    """n images drawn uniformly at random without replacement (seeded; sorted indices). Not stratified: classes come
    in their proportions only in expectation (it was called stratified_subset, a name that said otherwise)."""
    from ..core.errors import UserError
    from ..core.options import check_seed

    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise UserError(f"a subset is a whole number of images >= 1, got {n!r:.40}")
    check_seed(seed, "a subset's seed")
    if n > len(ds):
        raise UserError(f"subset of {n} asked from {ds.name}/{ds.split}, which has only {len(ds)} images")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(ds), generator=g)[:n]
    return ds.subset(perm.sort().values)
