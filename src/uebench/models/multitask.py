"""A multi-task network: one shared CIFAR ResNet encoder, one light head per task (uebench.experiments.crosstask).

    net = MultiTaskNet(
        {"class": HeadSpec("image", 10), "segment": HeadSpec("dense", 9)}, encoder="resnet18", width=0.25
    )
    out = net(x)            # {"class": (N, 10), "segment": (N, 9, H, W)}

The encoder is the registry's ResNet without its classifier, so its Conv2d layers keep the names SAL tables use
(conv1, layer1.0.conv1, ..., layer4.1.shortcut.0) under the prefix "encoder.". A single-task model is this
network with one head: every task's model then has the same encoder layers, and per-task SAL vectors compare
layer by layer.

Heads are deliberately light, so that what a task learns lives in the shared encoder:
- "image" heads (scene class): global average pool of the last stage + one Linear, i.e. the ResNet's own head;
- "dense" heads (segmentation, depth, edges, ...): a feature-pyramid decoder: a 1x1 projection of each of the
  four stages to D channels, bilinear upsampling to the input resolution, a sum, then 3x3 conv + BN + ReLU and
  a 1x1 conv to the task's channels. Dense tasks need the spatial maps; the pooled feature alone has none.

`active` restricts the forward pass to some heads (the per-task SAL probe computes one task's loss only).
It is not in the model registry on purpose: registry models map images to logits (the trainer, the attacks
and the model tests rely on it), this one maps them to a dict of task outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import MODELS, scaled

HEAD_KINDS = ("image", "dense")
ENCODERS = ("resnet18", "resnet34", "resnet50")
STRIDES = (1, 2, 4, 8)  # CIFAR-stem ResNet: stage s's maps are 2**s times smaller than the input (no max-pool)


@dataclass(frozen=True)
class HeadSpec:
    kind: str  # image | dense
    channels: int  # output channels (classes, segment classes, 1 for depth, ...)

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"unknown head kind '{self.kind}'; valid: {', '.join(HEAD_KINDS)}")
        if self.channels < 1:
            raise ValueError(f"a head needs >= 1 output channel, got {self.channels}")


class ImageHead(nn.Module):
    def __init__(self, in_features: int, channels: int):
        super().__init__()
        self.linear = nn.Linear(in_features, channels)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return self.linear(F.adaptive_avg_pool2d(maps[-1], 1).flatten(1))


class DenseHead(nn.Module):
    def __init__(self, stage_channels: list[int], channels: int, dim: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1, bias=False) for c in stage_channels)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(dim)
        self.out = nn.Conv2d(dim, channels, 1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        y = self.lateral[0](maps[0])
        for proj, m, s in zip(self.lateral[1:], maps[1:], STRIDES[1:]):
            y = y + F.interpolate(proj(m), scale_factor=s, mode="bilinear", align_corners=False)
        return self.out(F.relu(self.bn(self.conv(y))))


class MultiTaskNet(nn.Module):
    def __init__(
        self,
        heads: dict[str, HeadSpec],
        encoder: str = "resnet18",
        in_channels: int = 3,
        width: float = 1.0,
        decoder_dim: int | None = None,
    ):
        super().__init__()
        if not heads:
            raise ValueError("a multi-task network needs at least one head")
        if encoder not in ENCODERS:
            raise ValueError(f"unknown encoder '{encoder}'; valid: {', '.join(ENCODERS)}")
        self.encoder = MODELS.get(encoder)(num_classes=1, in_channels=in_channels, width=width)
        del self.encoder.linear  # the classifier is a head here; its absence keeps it out of the probed layers
        expansion = self.encoder.layer1[0].expansion
        stage_channels = [scaled(c, width) * expansion for c in (64, 128, 256, 512)]
        dim = decoder_dim or max(16, scaled(64, width))
        self.heads = nn.ModuleDict()
        for name, spec in heads.items():
            head = (
                ImageHead(stage_channels[-1], spec.channels)
                if spec.kind == "image"
                else DenseHead(stage_channels, spec.channels, dim)
            )
            self.heads[name] = head
        self.specs = dict(heads)
        self.active: tuple[str, ...] = tuple(heads)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's four stage outputs (strides 1, 2, 4, 8)."""
        e = self.encoder
        out = F.relu(e.bn1(e.conv1(x)))
        maps = []
        for layer in (e.layer1, e.layer2, e.layer3, e.layer4):
            out = layer(out)
            maps.append(out)
        return maps

    @property
    def trace_key(self) -> tuple[str, ...]:
        """What the forward graph depends on besides the weights (fast SAL traces once per value)."""
        return self.active

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.stages(x)
        return {name: self.heads[name](maps) for name in self.active}

    def encoder_layers(self) -> list[str]:
        """Names (in this model) of the shared encoder's Conv2d layers: what per-task SAL probes."""
        return [f"encoder.{n}" for n, m in self.encoder.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
