"""uebench's batch versions of the augmentations UEraser and APBench take from kornia, against kornia itself.

kornia is the published definition (UEraser's and the paper's code build their augmentations from it); uebench keeps
its own seeded, batched versions and checks them here. Skipped where kornia is not installed (it is in the test
extra)."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from uebench.data import augment
from uebench.defenses import _ops

kornia = pytest.importorskip("kornia")


@pytest.mark.parametrize("h, w", [(32, 32), (28, 28), (224, 224), (20, 40), (40, 20), (3, 3)])
def test_plasma_is_kornias_diamond_square(h, w):
    from kornia.contrib import diamond_square

    rough = torch.rand(5, generator=torch.Generator().manual_seed(1)) * 0.4 + 0.3
    ours = _ops.plasma(5, h, w, rough, torch.Generator().manual_seed(3), "cpu")
    draws = functools.partial(torch.rand, generator=torch.Generator().manual_seed(3))
    theirs = diamond_square((5, 1, h, w), rough, random_fn=draws, dtype=torch.float32)[:, 0]
    assert ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=1e-6, rtol=0)
    # the construction used before this check drew every seed node: visibly other maps
    full = _ops.plasma(5, h, w, rough, torch.Generator().manual_seed(3), "cpu", seed="full")
    assert h == 3 or not torch.allclose(full, theirs, atol=1e-3)


@pytest.mark.parametrize("name", ["RandomPlasmaBrightness", "RandomPlasmaContrast"])
def test_plasma_ops_are_kornias_given_the_same_map(name, monkeypatch):
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    kw = {"intensity": (0.5, 1.0)} if name == "RandomPlasmaBrightness" else {}
    aug = getattr(kornia.augmentation, name)(roughness=(0.3, 0.7), p=1.0, **kw)
    params = aug.forward_parameters(x.shape)
    theirs = aug(x, params=params)
    maps = params["plasma"][..., :32, :32].reshape(6 * 3, 32, 32)
    monkeypatch.setattr(_ops, "plasma", lambda *a, **k: maps)
    if name == "RandomPlasmaBrightness":
        ours = _ops.plasma_brightness(x, params["roughness"], params["intensity"], None)
    else:
        ours = _ops.plasma_contrast(x, params["roughness"], None)
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)


def test_hsv_and_hue_shift_are_kornias():
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    hsv = augment.rgb_to_hsv(x)
    theirs = kornia.color.rgb_to_hsv(x)  # hue in radians
    assert torch.allclose(hsv[:, 0] * 2 * math.pi, theirs[:, 0], atol=1e-5)
    assert torch.allclose(hsv[:, 1:], theirs[:, 1:], atol=1e-6)
    shift = torch.tensor([0.1, -0.2, 0.05, 0.0]).view(4, 1, 1, 1)
    ours = augment._hue(x, shift)
    theirs = kornia.enhance.adjust_hue(x, shift.flatten() * 2 * math.pi)
    assert torch.allclose(ours, theirs, atol=1e-5)
