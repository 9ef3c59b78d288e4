"""The Poison artifact: file round trip, every safety check, and baking/quantisation on the uint8 grid."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from uebench.core.errors import UserError
from uebench.data.base import ImageDataset
from uebench.poisons.poison import Poison, PoisonMeta, bake, quantize_l2


def clean(n: int = 20, shape=(3, 8, 8), seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(30, 226, (n, *shape), generator=g, dtype=torch.uint8)
    return ImageDataset("toy", "train", images, torch.arange(n) % 4, ["a", "b", "c", "d"])


def poison_of(ds: ImageDataset, delta_levels: int = 2, norm: str = "linf", budget: float = 2 / 255, idx=None) -> Poison:
    idx = torch.arange(len(ds)) if idx is None else torch.as_tensor(idx)
    images = (ds.images[idx].int() + delta_levels).clamp(0, 255).to(torch.uint8)
    meta = PoisonMeta(attack="test", dataset=ds.name, dataset_size=len(ds), norm=norm, budget=budget)
    return Poison(images, ds.labels[idx].clone(), idx.clone(), meta)


def test_save_load_round_trip(tmp_path):
    ds = clean()
    p = poison_of(ds, idx=[3, 1, 7])
    p.meta.extra = {"note": "x"}
    p.save(tmp_path / "p.safetensors")
    q = Poison.load(tmp_path / "p.safetensors")
    assert torch.equal(q.images, p.images) and torch.equal(q.indices, p.indices) and torch.equal(q.labels, p.labels)
    assert q.meta == p.meta
    q.check(ds)


def test_load_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        Poison.load(tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="not a uebench poison"):
        Poison.load(tmp_path / "junk.safetensors")


def test_measure():
    ds = clean()
    p = poison_of(ds, delta_levels=3)
    m = p.measure(ds)
    assert m["linf"] == pytest.approx(3 / 255)
    assert m["l2"] == pytest.approx(3 / 255 * math.sqrt(3 * 64), rel=1e-5)
    assert m["l0"] == 64


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda p, ds: setattr(p.meta, "dataset", "other"), "does not match"),
        (lambda p, ds: setattr(p.meta, "dataset_size", 99), "made for 99"),
        (lambda p, ds: p.indices.__setitem__(0, 20), "outside"),
        (lambda p, ds: p.indices.__setitem__(1, int(p.indices[0])), "repeated"),
        (lambda p, ds: p.labels.__setitem__(0, (int(p.labels[0]) + 1) % 4), "labels differ"),
        (lambda p, ds: p.images.__setitem__(0, 7), "constant"),
        (lambda p, ds: setattr(p.meta, "budget", 1 / 255), "breaks its linf budget"),
    ],
)
def test_check_refuses(mutate, match):
    ds = clean()
    p = poison_of(ds)
    p.check(ds)
    mutate(p, ds)
    with pytest.raises(UserError, match=match):
        p.check(ds)


def test_check_refuses_wrong_image_shape():
    ds = clean()
    other = clean(shape=(3, 9, 9))
    p = poison_of(other)
    with pytest.raises(UserError, match="shape"):
        p.check(ds)


@pytest.mark.parametrize("norm, budget", [("l2", 2 / 255 * math.sqrt(192) - 1e-3), ("l0", 63)])
def test_check_each_norm(norm, budget):
    ds = clean()
    p = poison_of(ds, norm=norm, budget=budget)
    with pytest.raises(UserError, match=f"breaks its {norm} budget"):
        p.check(ds)
    p.meta.budget = 2 / 255 * math.sqrt(192) if norm == "l2" else 64
    p.check(ds)


def test_samplewise_mapping_is_checked():
    """The known public bug: noise indexed by class instead of by sample. Swapped images fail the budget."""
    ds = clean()
    p = poison_of(ds)
    p.indices[[0, 4]] = p.indices[[4, 0]]  # both class 0: labels agree, pixels do not
    with pytest.raises(UserError, match="index mapping"):
        p.check(ds)


def test_apply_swaps_in_the_poisoned_images():
    ds = clean()
    p = poison_of(ds, idx=[2, 5])
    out = p.apply(ds)
    assert torch.equal(out.images[[2, 5]], p.images)
    assert torch.equal(out.images[0], ds.images[0])
    assert out.meta["poison_fraction"] == pytest.approx(0.1)


def test_bake_without_a_budget_truncates_toward_zero_and_clips():
    u8 = torch.tensor([[[[0, 128, 255, 100]]]], dtype=torch.uint8)
    d = torch.tensor([[[[-0.5, 8 / 255, 3 / 255, -2.7 / 255]]]])
    assert bake(u8, d).flatten().tolist() == [0, 136, 255, 98]


def test_bake_rounds_to_nearest_and_clips():
    u8 = torch.tensor([[[[0, 128, 255, 100, 100]]]], dtype=torch.uint8)
    d = torch.tensor([[[[-0.5, 8 / 255, 3 / 255, -2.7 / 255, 0.4 / 255]]]])
    assert bake(u8, d, norm="linf", budget=1.0).flatten().tolist() == [0, 136, 255, 97, 100]


def uniform_delta(n: int = 64, eps: float = 8 / 255, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 8, 8, generator=g) * 2 - 1) * eps


def test_bake_linf_keeps_the_mean_perturbation():
    """A delta uniform in [-8, 8]/255: truncation loses half a grey level per element (-12.5% of mean |delta|),
    rounding to nearest loses nothing on average."""
    delta = uniform_delta()
    grey = torch.full(delta.shape, 128, dtype=torch.uint8)
    want = float(delta.abs().mean() * 255)
    trunc = float((bake(grey, delta).float() - 128).abs().mean())
    rounded = (bake(grey, delta, norm="linf", budget=8 / 255).float() - 128).abs()
    assert trunc < 0.9 * want  # the old behaviour, still what bake does without a budget
    assert abs(float(rounded.mean()) - want) < 0.01 * want
    assert rounded.max() == 8


def test_bake_keeps_em_steps():
    """EM's signed steps of 0.8/255 survive baking (truncation bakes a single step to 0)."""
    k = torch.arange(-10, 11, dtype=torch.float32)
    delta = (k * 0.8 / 255).clamp(-8 / 255, 8 / 255).view(1, 1, 1, -1)
    grey = torch.full(delta.shape, 128, dtype=torch.uint8)
    baked = bake(grey, delta, norm="linf", budget=8 / 255).int().flatten() - 128
    assert baked.tolist() == (k * 0.8).round().clamp(-8, 8).int().tolist()
    assert baked[11] == 1 and baked[9] == -1  # one step: one grey level


def test_bake_linf_never_exceeds_the_budget():
    """Rounding cannot go past a budget on the grid (8/255, even a float hair above it); off the grid (0.03 =
    7.65 grey levels, where 7.6 would round to 8) the rounded delta is clamped to the whole grey levels inside."""
    edge = torch.tensor([8 / 255, -8 / 255, 8 / 255 + 1e-7, 7.6 / 255, 7.5 / 255]).view(1, 1, 1, -1)
    grey = torch.full(edge.shape, 128, dtype=torch.uint8)
    assert (bake(grey, edge, norm="linf", budget=8 / 255).int() - 128).abs().max() == 8
    for budget in (8 / 255, 0.03, 2.5 / 255):
        delta = torch.cat([uniform_delta(eps=budget).flatten(), edge.flatten().clamp(-budget, budget)])
        delta = delta.view(1, 1, 1, -1)
        grey = torch.full(delta.shape, 128, dtype=torch.uint8)
        baked = (bake(grey, delta, norm="linf", budget=budget).float() - 128) / 255
        assert baked.abs().max() <= budget + 1e-7, budget
        assert baked.abs().max() == math.floor(budget * 255 + 1e-3) / 255


def test_bake_l2_never_exceeds_the_budget():
    """Off the grid, rounding can push an image's L2 norm over the budget: that image is truncated instead."""
    g = torch.Generator().manual_seed(1)
    delta = torch.randn(64, 3, 8, 8, generator=g)
    eps = 0.3
    delta = delta / delta.flatten(1).norm(dim=1)[:, None, None, None] * eps  # exactly at the budget, off the grid
    grey = torch.full(delta.shape, 128, dtype=torch.uint8)
    baked = (bake(grey, delta, norm="l2", budget=eps).float() - 128) / 255
    norms = baked.flatten(1).norm(dim=1)
    assert (norms <= eps + 1e-6).all()
    rounded = (delta * 255).round() / 255
    kept = (baked == rounded).flatten(1).all(dim=1)
    assert 0 < int(kept.sum()) < len(delta)  # some images round within the budget, the others fall back


def test_bake_l0_changes_no_new_pixels():
    """Rounding never turns an unchanged element into a changed one: the changed positions can only be fewer."""
    delta = torch.zeros(4, 3, 8, 8)
    delta[:, :, 2, 3] = torch.tensor([0.3, -0.6, 200.0]) / 255  # 0.3 rounds to 0, the others move
    grey = torch.full(delta.shape, 128, dtype=torch.uint8)
    baked = bake(grey, delta, norm="l0", budget=1).int() - 128
    assert (baked[:, :, 2, 3] == torch.tensor([0, -1, 127])).all()
    baked[:, :, 2, 3] = 0
    assert (baked == 0).all()


def test_craft_bakes_to_the_nearest_grey_level(monkeypatch):
    """Through craft(): a Linf attack's uniform delta keeps its mean on the baked bytes, within budget."""
    from uebench.attacks import ATTACKS, craft
    from uebench.attacks.base import Attack, Perturbation

    @dataclasses.dataclass
    class UniformConfig:
        eps: float = 8 / 255

    class Uniform(Attack):
        name, norm, description, Config = "uniform-test", "linf", "uniform noise (test only)", UniformConfig

        def budget(self) -> float:
            return self.config.eps

        def perturb(self, ds, *, seed, progress):
            return Perturbation(uniform_delta(len(ds), self.config.eps, seed), epoch_equivalents=0.0)

    monkeypatch.setitem(ATTACKS._items, Uniform.name, Uniform)
    ds = clean(n=64)
    p = craft(Uniform.name, ds, progress=False)
    d = (p.images.float() - ds.images[p.indices].float()) / 255  # clean images in [30, 226): no clipping
    want = uniform_delta(64).abs().mean()
    assert abs(float(d.abs().mean() / want) - 1) < 0.01
    assert d.abs().max() <= 8 / 255 + 1e-7


def test_quantize_l2_on_grid_within_and_near_budget():
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(16, 3, 8, 8, generator=g)
    for eps in (0.05, 0.3, 1.0):
        q = quantize_l2(delta / delta.flatten(1).norm(dim=1)[:, None, None, None] * eps, eps)
        levels = q * 255
        assert torch.allclose(levels, levels.round(), atol=1e-4)  # whole grey levels
        n = q.flatten(1).norm(dim=1)
        assert (n <= eps + 1e-6).all()
        assert (n >= eps * 0.97).all()
        grey = torch.full((16, 3, 8, 8), 128, dtype=torch.uint8)  # no clipping
        assert torch.equal(bake(grey, q).int() - 128, levels.round().int())  # bake reproduces the grid exactly
        assert torch.equal(bake(grey, q, norm="l2", budget=eps).int() - 128, levels.round().int())  # rounding too


def test_poison_meta_refuses_unknown_norm():
    with pytest.raises(UserError, match="unknown norm"):
        PoisonMeta(attack="x", dataset="toy", dataset_size=1, norm="l3", budget=1.0)
