"""Has the model learned the poison's shortcut, the images' content, or both?

Test accuracy alone cannot tell a poison the model ignored from one it learned alongside the real features. This
probe measures both sides on the poisoned training images, after every epoch:

- `shortcut_acc`: the perturbation of image i moved onto the clean image of another class, j
  (clip(x_j + poisoned_i - clean_i)), scored against i's label. High means the model follows the poison over the
  content it sees: a working unlearnable example. Near 0 means it reads j's content and ignores the perturbation
  (it predicts j's class, which is never i's): the poison was not picked up. (On a plain
  grey canvas instead of a real image the perturbation is out of distribution, and a model that does use it can
  still score near chance there: moving it onto real images keeps the test in distribution.)
- `clean_train_acc`: accuracy on the clean originals of the same images. High means the model learned their
  content despite the poison.

A poison that works shows a high shortcut accuracy and a clean-train accuracy near chance. A probe of `size`
poisoned images (a seeded subset) costs two evaluation passes over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..data.base import ImageDataset

SHORTCUT_KEYS = ("shortcut_acc", "clean_train_acc")  # what the probe adds to each epoch's record


def transplant(poisoned: torch.Tensor, clean: torch.Tensor, onto: torch.Tensor) -> torch.Tensor:
    """The perturbations (poisoned - clean) added to the images `onto`, uint8."""
    delta = poisoned.to(torch.int16) - clean.to(torch.int16)
    return (onto.to(torch.int16) + delta).clamp(0, 255).to(torch.uint8)


def other_class_partners(labels: torch.Tensor) -> torch.Tensor:
    """For each position, another position holding a different label (-1 where none can be found): positions
    sorted by label are paired with the one half-way round, which differs unless one label holds over half."""
    order = torch.argsort(labels, stable=True)
    partner = torch.empty_like(order)
    partner[order] = torch.roll(order, len(order) // 2)
    return torch.where(labels[partner] != labels, partner, -1)


@dataclass
class ShortcutProbe:
    """Accuracy on the perturbations moved onto other-class images (labels: the perturbations') and on the clean
    originals of (a subset of) the poisoned images."""

    transplanted: ImageDataset
    originals: ImageDataset
    batch_size: int = 1024
    name: str = "shortcut"

    def __call__(self, ctx) -> dict[str, Any]:
        _, shortcut = ctx.evaluate(self.transplanted, self.batch_size)
        _, content = ctx.evaluate(self.originals, self.batch_size)
        # the probe's size sets how far from chance its accuracies must be to mean anything (metrics.verdict)
        return {**dict(zip(SHORTCUT_KEYS, (shortcut, content))), "shortcut_n": len(self.originals)}


def shortcut_probes(poisoned: ImageDataset, clean: ImageDataset, size: int = 512, seed: int = 0) -> list[ShortcutProbe]:
    """[a probe on up to `size` of the images the poison changed (seeded choice)], or [] if it changed none (or
    they are all of one class). `poisoned` and `clean` hold the same images in the same order, with and without
    the poison. An unpaired poison (its file holds no index mapping, uebench.poisons.poison.Poison.paired; Poison.apply
    marks the set it returns `unpaired`) has no probe, so its verdict is unknown (metrics.verdict)."""
    if poisoned.meta.get("unpaired"):
        return []
    if poisoned.images.shape != clean.images.shape:
        raise ValueError(
            f"poisoned and clean sets differ in shape: {tuple(poisoned.images.shape)} vs {tuple(clean.images.shape)}"
        )
    changed = torch.nonzero((poisoned.images != clean.images).flatten(1).any(1)).flatten()
    g = torch.Generator().manual_seed(seed)
    pick = changed[torch.randperm(len(changed), generator=g)[:size]].sort().values
    partner = other_class_partners(clean.labels[pick])
    pick, partner = pick[partner >= 0], pick[partner[partner >= 0]]
    if len(pick) == 0:
        return []
    originals = clean.subset(pick)
    moved = transplant(poisoned.images[pick], originals.images, clean.images[partner])
    return [ShortcutProbe(originals.with_images(moved), originals)]
