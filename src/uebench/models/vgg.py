"""VGG-11/16 with batch norm for small images (one linear head), as in kuangliu/pytorch-cifar."""

from __future__ import annotations

import torch.nn as nn

from .registry import register_model, scaled

_CFG = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, cfg, num_classes=10, in_channels=3, image_size=32, width=1.0):
        super().__init__()
        layers, c = [], in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [
                    nn.Conv2d(c, scaled(v, width), 3, padding=1, bias=False),
                    nn.BatchNorm2d(scaled(v, width)),
                    nn.ReLU(inplace=True),
                ]
                c = scaled(v, width)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


for _name, _cfg in _CFG.items():
    register_model(_name)(
        lambda num_classes=10, in_channels=3, image_size=32, width=1.0, _cfg=_cfg: VGG(
            _cfg, num_classes, in_channels, image_size, width
        )
    )
