"""What the attack tests share: a toy image set, and the cheapest victims on which a poison's collapse shows."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from uebench.data.base import ImageDataset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # as in conftest.py


def toy(n: int = 120, classes: int = 10, shape=(3, 32, 32), seed: int = 0, lo: int = 40, hi: int = 216) -> ImageDataset:
    """Random images away from 0 and 255 (no clipping), every class present, labels in a shuffled order."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(lo, hi, (n, *shape), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    labels = labels[torch.randperm(n, generator=g)]
    return ImageDataset("toy", "train", images, labels, [f"c{i}" for i in range(classes)])


def patch_net(channels: int = 32) -> torch.nn.Module:
    """One 3x3 conv layer, then 8x8 average pooling kept in place (a 4x4 map) and a linear read-out."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, channels, 3, padding=1),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.AvgPool2d(8),
        nn.Flatten(),
        nn.Linear(channels * 16, 10),
    )


def fit_and_test(
    model, x: torch.Tensor, y: torch.Tensor, test: ImageDataset, epochs: int, batch: int, lr: float
) -> float:
    """Plain SGD (momentum 0.9, cosine lr, no augmentation), then clean-test accuracy in %."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = x.float().div(255).contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps, k = epochs * -(-len(x) // batch), 0
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch):
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * k / steps))
            k += 1
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        xt = test.images.float().div(255).contiguous(memory_format=torch.channels_last)
        return float((model(xt).argmax(1) == test.labels).float().mean()) * 100
