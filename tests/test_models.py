"""Models: shapes, stable layer names (SAL reports per layer), width scaling, registry errors."""

from __future__ import annotations

import pytest
import torch

from uebench.core.errors import UserError
from uebench.models import MODELS, create_model, probed_layers

RESNET18_LAYERS = (
    ["conv1"]
    + [f"layer1.{b}.conv{c}" for b in (0, 1) for c in (1, 2)]
    + [
        n
        for s in (2, 3, 4)
        for n in (
            f"layer{s}.0.conv1",
            f"layer{s}.0.conv2",
            f"layer{s}.0.shortcut.0",
            f"layer{s}.1.conv1",
            f"layer{s}.1.conv2",
        )
    ]
    + ["linear"]
)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_maps_images_to_logits(name):
    channels, size = (1, 28) if name in ("lenet5", "linear") else (3, 32)
    model = create_model(name, num_classes=7, in_channels=channels, image_size=size, width=0.25)
    assert model(torch.rand(2, channels, size, size)).shape == (2, 7)


def test_resnet18_has_the_papers_21_probed_layers():
    layers = probed_layers(create_model("resnet18"))
    assert layers == RESNET18_LAYERS and len(layers) == 21


def test_width_scales_channels_but_not_names():
    full, quarter = create_model("resnet18"), create_model("resnet18", width=0.25)
    assert probed_layers(full) == probed_layers(quarter)
    assert quarter.conv1.out_channels == 16 and full.conv1.out_channels == 64
    assert sum(p.numel() for p in quarter.parameters()) < sum(p.numel() for p in full.parameters()) / 10


def test_lenet_and_linear_on_mnist_and_cifar_sizes():
    assert create_model("lenet5", in_channels=3, image_size=32)(torch.rand(1, 3, 32, 32)).shape == (1, 10)
    assert probed_layers(create_model("lenet5")) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert probed_layers(create_model("linear")) == ["fc"]


def test_bad_names_and_widths():
    with pytest.raises(UserError, match=r"unknown model 'resnet9'; did you mean 'resnet\w+'\? valid: .*resnet18"):
        create_model("resnet9")
    with pytest.raises(UserError, match="width must be positive"):
        create_model("resnet18", width=0)


@pytest.mark.parametrize("name, params", [("resnet18_imagenet", 11_227_812), ("resnet50_imagenet", 23_712_932)])
def test_imagenet_stem_resnets_are_torchvisions(name, params):
    """torchvision's resnet18/resnet50 with a 100-class head have exactly these many parameters (11,689,512 and
    25,557,032 at 1,000 classes); the stem takes 224 px to 56 px before layer1, and the probed layers keep their
    names."""
    from uebench.models import probed_layers

    model = create_model(name, num_classes=100, image_size=224)
    assert sum(p.numel() for p in model.parameters()) == params
    seen = {}
    model.layer1.register_forward_hook(lambda m, i, o: seen.update(layer1=o.shape))  # returns None: output kept
    with torch.no_grad():
        assert model(torch.rand(2, 3, 224, 224)).shape == (2, 100)
    assert seen["layer1"][-2:] == (56, 56)
    assert probed_layers(model)[0] == "conv1" and probed_layers(model)[-1] == "linear"
    conv = model.conv1.weight.detach()
    # torchvision's Kaiming fan_out init: std sqrt(2 / (out_channels * 7 * 7))
    assert abs(float(conv.std()) - (2 / (64 * 49)) ** 0.5) < 0.1 * (2 / (64 * 49)) ** 0.5
