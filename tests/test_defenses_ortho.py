"""Orthogonal projection (Sandoval-Segura et al. NeurIPS 2023): the basis spans the linear model's class directions,
the projection removes exactly that span (hand-worked), and on a class-wise-pattern poison it removes the pattern."""

from __future__ import annotations

import pytest
import torch

from uebench.core.errors import UserError
from uebench.data import ImageDataset
from uebench.defenses import create_defense
from uebench.defenses.ortho import class_basis, fit_linear, project_out

C = 4


def poisoned(n: int = 400, seed: int = 0, strength: int = 60) -> tuple[ImageDataset, torch.Tensor]:
    """Noise images plus one fixed pattern per class (an LSP/OPS-like class-wise shortcut); and the patterns."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % C
    base = (torch.rand(n, 3, 8, 8, generator=g) * 150 + 40).round()
    patterns = (torch.rand(C, 3, 8, 8, generator=g) > 0.5).float() * strength
    images = (base + patterns[labels]).clamp(0, 255).to(torch.uint8)
    return ImageDataset("toy", "train", images, labels, [str(i) for i in range(C)]), patterns


def class_spread(images: torch.Tensor, labels: torch.Tensor) -> float:
    means = torch.stack([images[labels == c].float().mean(0) for c in range(C)])
    return float((means - means.mean(0)).norm())


def test_basis_is_orthonormal_and_spans_the_weights():
    w = torch.randn(5, 48, generator=torch.Generator().manual_seed(1))
    q = class_basis(w)
    assert q.shape == (48, 5)
    assert torch.allclose(q.t() @ q, torch.eye(5, dtype=q.dtype), atol=1e-10)
    residual = w.double() - (w.double() @ q) @ q.t()
    assert residual.abs().max() < 1e-10


def test_projection_hand_worked():
    # d = 6; basis e_1: value 1 of every image becomes 0, the rest stays, nothing clipped
    images = torch.tensor([10, 20, 30, 40, 50, 60], dtype=torch.uint8).view(1, 3, 1, 2)
    e1 = torch.zeros(6, 1, dtype=torch.float64)
    e1[1] = 1
    out, clipped = project_out(images, e1)
    assert out.flatten().tolist() == [10, 0, 30, 40, 50, 60] and clipped == 0
    # basis = the constant direction: the mean (125) is removed, negatives clipped to 0 and counted
    images = torch.tensor([100, 110, 120, 130, 140, 150], dtype=torch.uint8).view(1, 3, 1, 2)
    ones = torch.full((6, 1), 6**-0.5, dtype=torch.float64)
    out, clipped = project_out(images, ones)
    assert out.flatten().tolist() == [0, 0, 0, 5, 15, 25] and clipped == 3


def test_linear_fit_learns_the_class_patterns():
    ds, _ = poisoned()
    w = fit_linear(ds.images, ds.labels, C, epochs=20, lr=0.1, batch_size=32, seed=0)
    x = ds.images.reshape(len(ds), -1).float() / 255
    assert (x @ w.t()).argmax(1).eq(ds.labels).float().mean() > 0.95


def test_ortho_proj_removes_the_class_wise_shortcut_deterministically():
    ds, patterns = poisoned()
    # batches of 32: 260 SGD steps on 400 images, of the order of the paper's 980 on CIFAR-10 in batches of 1024
    out = create_defense("ortho-proj", batch_size=32).prepare(ds)
    assert out.images.dtype == torch.uint8 and out.images.shape == ds.images.shape
    assert torch.equal(out.labels, ds.labels) and out.meta["defense"] == "ortho-proj"
    assert 0 <= out.meta["ortho_clipped"] < 0.05
    before, after = class_spread(ds.images, ds.labels), class_spread(out.images, ds.labels)
    assert after < 0.35 * before  # most of what tells the classes apart linearly is gone
    # the images otherwise stay: what was removed is small next to the images themselves
    assert (out.images.float() - ds.images.float()).norm() < 0.5 * ds.images.float().norm()
    again = create_defense("ortho-proj", batch_size=32).prepare(ds)
    assert torch.equal(again.images, out.images)
    other = create_defense("ortho-proj", batch_size=32, seed=1).prepare(ds)
    assert not torch.equal(other.images, out.images)


def test_ortho_proj_test_images_only_when_asked():
    ds, _ = poisoned()
    test, _ = poisoned(40, seed=5)
    d = create_defense("ortho-proj")
    d.prepare(ds)
    assert d.prepare_test(test) is test
    both = create_defense("ortho-proj", test=True)
    with pytest.raises(RuntimeError, match="prepare"):
        both.prepare_test(test)
    both.prepare(ds)
    assert torch.equal(both.prepare_test(test).images, project_out(test.images, both.basis_)[0])


@pytest.mark.parametrize(
    "params", [{"epochs": 0}, {"lr": 0}, {"lr": "fast"}, {"batch_size": 0}, {"seed": -1}, {"test": "yes"}]
)
def test_ortho_proj_bad_options(params):
    with pytest.raises(UserError, match="defense 'ortho-proj'"):
        create_defense("ortho-proj", **params)


def test_ortho_proj_published_defaults():
    cfg = create_defense("ortho-proj").config
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.seed, cfg.test) == (20, 0.1, 1024, 0, False)
