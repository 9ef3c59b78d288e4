"""ResNet-18/34/50 with the CIFAR stem (3x3 conv, no max-pool), as in kuangliu/pytorch-cifar, and ResNet-18/50 with
the ImageNet stem (7x7 stride-2 conv, 3x3 stride-2 max-pool) and initialisation of torchvision's resnet18/resnet50,
which APBench's imagenet_train.py and the paper's ImageNet rows train.

Layer names follow kuangliu's code (conv1, layer1.0.conv1, layer2.0.shortcut.0, linear) for both stems because the
paper's SAL tables are indexed by them: ResNet-18 has 21 probed weights (17 convs, 3 shortcut convs, the linear head).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model, scaled


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10, in_channels=3, width=1.0, stem="cifar"):
        super().__init__()
        planes = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.in_planes = planes[0]
        if stem == "imagenet":  # 224 px in, 56 px into layer1
            self.conv1 = nn.Conv2d(in_channels, planes[0], 7, 2, 3, bias=False)
            self.pool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False)
            self.pool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.layer1 = self._make_layer(block, planes[0], num_blocks[0], 1)
        self.layer2 = self._make_layer(block, planes[1], num_blocks[1], 2)
        self.layer3 = self._make_layer(block, planes[2], num_blocks[2], 2)
        self.layer4 = self._make_layer(block, planes[3], num_blocks[3], 2)
        self.linear = nn.Linear(planes[3] * block.expansion, num_classes)
        self.feature_dim = planes[3] * block.expansion
        if stem == "imagenet":
            torchvision_init(self)

    def _make_layer(self, block, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder: pooled features before the head (multi-task heads attach to the feature maps)."""
        out = self.pool(F.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


@register_model("resnet18")
def resnet18(num_classes=10, in_channels=3, image_size=32, width=1.0):
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, width)


@register_model("resnet34")
def resnet34(num_classes=10, in_channels=3, image_size=32, width=1.0):
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, width)


@register_model("resnet50")
def resnet50(num_classes=10, in_channels=3, image_size=32, width=1.0):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, width)


@register_model("resnet18_imagenet")
def resnet18_imagenet(num_classes=100, in_channels=3, image_size=224, width=1.0):
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, width, stem="imagenet")


@register_model("resnet50_imagenet")
def resnet50_imagenet(num_classes=100, in_channels=3, image_size=224, width=1.0):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, width, stem="imagenet")


def torchvision_init(model: nn.Module) -> None:
    """torchvision's ResNet initialisation: Kaiming-normal convolutions (fan_out), BatchNorm at weight 1 and bias 0;
    the linear head keeps PyTorch's default, as there."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
