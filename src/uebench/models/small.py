"""LeNet-5 and a linear classifier: the small models of the paper's landscape figure (MNIST)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model, scaled


class LeNet5(nn.Module):
    def __init__(self, num_classes=10, in_channels=1, image_size=28, width=1.0):
        super().__init__()
        c1, c2 = scaled(6, width), scaled(16, width)
        self.conv1 = nn.Conv2d(in_channels, c1, 5, padding=2)  # padding keeps 28x28 MNIST on LeCun's 32x32 path
        self.conv2 = nn.Conv2d(c1, c2, 5)
        side = ((image_size // 2) - 4) // 2
        self.fc1 = nn.Linear(c2 * side * side, scaled(120, width))
        self.fc2 = nn.Linear(scaled(120, width), scaled(84, width))
        self.fc3 = nn.Linear(scaled(84, width), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


class Linear(nn.Module):
    def __init__(self, num_classes=10, in_channels=1, image_size=28, width=1.0):
        super().__init__()
        self.fc = nn.Linear(in_channels * image_size * image_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


register_model("lenet5")(LeNet5)
register_model("linear")(Linear)
