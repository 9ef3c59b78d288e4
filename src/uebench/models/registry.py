"""Model registry: `create_model(name, num_classes=10, in_channels=3, image_size=32, width=1.0)`."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from ..core.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
register_model = MODELS.register


def create_model(
    name: str, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> nn.Module:
    from ..core.errors import UserError

    if width <= 0:
        raise UserError(f"width must be positive, got {width}")
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width)


def probed_layers(model: nn.Module) -> list[str]:
    """Names of the layers SAL probes: every Conv2d/Linear weight tensor, in definition order."""
    return [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))
