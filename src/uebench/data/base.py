"""The in-memory dataset type every part of uebench passes around."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch


@dataclass
class ImageDataset:
    """uint8 images (N, C, H, W), int64 labels (N,), and optional dense per-image task targets.

    `targets` maps a task name to a tensor whose first dimension is N (for `scenes`: "segment",
    "depth", "edges", "keypoints"). `indices` are the positions of these images in the full split,
    so a subset or a poison can always be traced back to the source images.
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

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, idx: torch.Tensor | list[int]) -> "ImageDataset":
        idx = torch.as_tensor(idx, dtype=torch.int64)
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
    if n > len(ds):
        from ..core.errors import UserError

        raise UserError(f"subset of {n} asked from {ds.name}/{ds.split}, which has only {len(ds)} images")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(ds), generator=g)[:n]
    return ds.subset(perm.sort().values)
