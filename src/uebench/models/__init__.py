"""Models behind one registry: `create_model("resnet18", num_classes=10, width=0.25)`."""

from . import resnet, small, vgg, vit  # noqa: F401  (register)
from .multitask import HeadSpec, MultiTaskNet
from .registry import MODELS, create_model, probed_layers, register_model

__all__ = ["MultiTaskNet", "HeadSpec", "create_model", "probed_layers", "register_model", "MODELS"]
