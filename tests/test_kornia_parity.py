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


def test_cutmix_inside_is_kornias_cutmix_v2_given_its_boxes():
    from uebench.defenses.cutmix import box_mask, paste

    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    y = torch.arange(8) % 4
    # kornia's default label lambda, the partner's area share, is what APBench's loss_mix weighs the partner's label by
    # (kornia warns that its default will become 1 - area; with APBench's loss that would be the wrong weight)
    with pytest.warns(DeprecationWarning, match="lambda"):
        aug = kornia.augmentation.RandomCutMixV2(p=1.0, data_keys=["input", "class"], use_correct_lambda=False)
    params = aug.forward_parameters(x.shape)
    theirs_x, theirs_y = aug(x, y, params=params)
    box = params["crop_src"][0]  # (n, 4, 2) corners; kornia's boxes are inclusive of their last pixel
    x1, y1 = box[:, 0, 0].long(), box[:, 0, 1].long()
    x2, y2 = box[:, 2, 0].long() + 1, box[:, 2, 1].long() + 1
    mask = box_mask(x1, y1, x2, y2, 32, 32)
    ours_x, ours_y = paste(x, torch.eye(4)[y], params["mix_pairs"][0], mask, mask.flatten(1).float().mean(1))
    assert torch.equal(ours_x, theirs_x)
    # kornia's labels: (y, y of the partner, the partner's area share)
    a, b, lam = theirs_y[0, :, 0].long(), theirs_y[0, :, 1].long(), theirs_y[0, :, 2]
    assert torch.allclose(ours_y, (1 - lam[:, None]) * torch.eye(4)[a] + lam[:, None] * torch.eye(4)[b], atol=1e-6)


def test_cutmix_inside_boxes_fit_and_have_kornias_sides():
    from uebench.defenses import create_defense

    cm = create_defense("cutmix")
    _, mask, area = cm.draw(4000, 32, 32, torch.Generator().manual_seed(7), "cpu")
    rows, cols = mask[:, 0].any(2).sum(1), mask[:, 0].any(1).sum(1)
    assert torch.equal(rows, cols) and torch.allclose(area, (rows * cols).float() / 1024)  # square, unclipped boxes
    # side floor(32 sqrt(1 - lam)) with lam ~ U(0, 1): E[area] = E[(1 - lam)] = 1/2 less the flooring
    assert 0.44 < float(area.mean()) < 0.5
    clipped = create_defense("cutmix", box="clip").draw(4000, 32, 32, torch.Generator().manual_seed(7), "cpu")[2]
    assert float(clipped.mean()) < float(area.mean()) - 0.1  # the paper's clipping pastes less


def test_mixup_is_kornias_mixup_v2_with_lam_the_partners_weight():
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    y = torch.arange(6) % 3
    aug = kornia.augmentation.RandomMixUpV2(p=1.0, data_keys=["input", "class"])
    params = aug.forward_parameters(x.shape)
    theirs_x, theirs_y = aug(x, y, params=params)
    perm, lam = params["mixup_pairs"], params["mixup_lambdas"]  # kornia's lam weighs the partner
    from uebench.defenses import create_defense

    mixup = create_defense("mixup")
    mixup.num_classes = 3
    mixup.draw = lambda n, generator, device: (perm, 1 - lam)  # uebench's lam weighs the image itself
    ours_x, ours_y = mixup.batch(x, y, generator=None)
    assert torch.allclose(ours_x, theirs_x, atol=1e-6)
    a, b, w = theirs_y[:, 0].long(), theirs_y[:, 1].long(), theirs_y[:, 2]
    assert torch.allclose(ours_y, (1 - w[:, None]) * torch.eye(3)[a] + w[:, None] * torch.eye(3)[b], atol=1e-6)


def test_ueraser_runs_kornias_trivial_augment_seeded_from_its_generator():
    from uebench.defenses import create_defense

    x = torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = _ops.kornia_trivial_augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's global generator is left alone
    assert torch.equal(a, _ops.kornia_trivial_augment(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, _ops.kornia_trivial_augment(x, torch.Generator().manual_seed(2)))
    # the defaults are kornia's; the earlier batched TrivialAugment stays selectable and out of the run key
    assert create_defense("ueraser").params()["trivial_augment_impl"] == "kornia"
    assert "trivial_augment_impl" not in create_defense("ueraser", trivial_augment_impl="uebench").params()
