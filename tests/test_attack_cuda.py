"""CUDA (class-wise random convolutions): the authors' filters for a seed, the convolution on a case worked by hand,
the export's truncation, determinism, the check of an unbounded poison, and a collapse on a small model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attackkit import SHARED_DATA, fit_and_test, patch_net, toy
from uebench.attacks import ATTACKS, craft
from uebench.attacks.cuda import CUDAConfig, class_filters, convolve_classwise
from uebench.core.errors import UserError
from uebench.data.base import ImageDataset


def test_filters_are_the_authors_draws_for_the_seed():
    f = class_filters(3, 3, CUDAConfig(), seed=7)
    rng = np.random.RandomState(7)  # the authors' order: 3x1x3x3 uniforms, then the centre's row and column
    for k in range(3):
        w = rng.uniform(0, 0.3, size=(3, 1, 3, 3))
        w[0, 0, rng.randint(3), rng.randint(3)] = 1.0
        for c in range(3):  # every channel takes channel 0's filter
            assert np.array_equal(f[k, c].numpy(), w[0, 0])
    assert (f <= 1.0).all() and (f >= 0).all() and (f == 1.0).flatten(2).any(2).all()
    assert not torch.equal(f[0], f[1])
    same = class_filters(3, 3, CUDAConfig(same=True), seed=7)
    assert torch.equal(same[2], f[0])


def test_convolution_by_hand():
    # one 1x3x3 image, the filter a centred 1 (the identity) plus 0.5 to the right neighbour's weight
    img = torch.tensor([[[[10, 20, 30], [40, 50, 60], [70, 80, 90]]]], dtype=torch.uint8)
    w = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    w[0, 0, 1, 1], w[0, 0, 1, 2] = 1.0, 0.5  # out[i, j] = x[i, j] + 0.5 x[i, j+1] (zero padding)
    y = convolve_classwise(img, torch.tensor([0]), w)
    x = img.double()[0, 0]
    expect = x.clone()
    expect[:, :2] += 0.5 * x[:, 1:]
    assert torch.allclose(y[0, 0], expect / expect.max())  # the brightest value becomes 1
    assert float(y.max()) == 1.0
    black = convolve_classwise(torch.zeros(1, 1, 3, 3, dtype=torch.uint8), torch.tensor([0]), w)
    assert torch.equal(black, torch.zeros_like(black))  # stays black, not NaN


def test_baked_bytes_are_the_authors_truncated_export_and_round_is_within_a_level():
    ds = toy(n=40, classes=4)
    p = craft("cuda", ds, seed=0, progress=False)
    y = convolve_classwise(ds.images, ds.labels, class_filters(4, 3, CUDAConfig(), 0)) * 255
    assert torch.equal(p.images, torch.floor(y + 1e-9).to(torch.uint8)[p.indices])
    r = craft("cuda", ds, seed=0, progress=False, quantize="round")
    diff = r.images.int() - p.images.int()
    assert diff.min() >= 0 and diff.max() == 1 and (diff == 1).any()
    assert p.meta.norm == "none" and p.meta.params["blur_parameter"] == 0.3
    p.check(ds)  # an unbounded poison still passes the index, label and degeneracy checks
    p.images[0] = p.images[0, 0, 0, 0]  # a constant image is degenerate
    with pytest.raises(UserError, match="constant"):
        p.check(ds)


def test_same_seed_same_bytes_and_images_of_one_class_share_a_filter():
    ds = toy(n=40, classes=4)
    a, b = craft("cuda", ds, seed=3, progress=False), craft("cuda", ds, seed=3, progress=False)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, craft("cuda", ds, seed=4, progress=False).images)
    assert a.meta.extra["filters"] == class_filters(4, 3, CUDAConfig(), 3).flatten(1).tolist()


def test_grey_images_and_refusals():
    grey = ImageDataset(
        "g", "train", torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8), torch.arange(20) % 2, ["a", "b"]
    )
    p = craft("cuda", grey, progress=False)
    assert p.images.shape == (20, 1, 8, 8)
    with pytest.raises(UserError, match="kernel_size"):
        craft("cuda", grey, progress=False, kernel_size=4)
    with pytest.raises(UserError, match="larger than"):
        craft("cuda", grey, progress=False, kernel_size=9)
    with pytest.raises(UserError, match="blur_parameter"):
        craft("cuda", grey, progress=False, blur_parameter=-1)
    assert "cuda" in ATTACKS.names() and ATTACKS.get("cuda").presets == {"fast": {}}


def test_cuda_collapses_a_small_victim():
    """5,085 CIFAR images, 3 epochs of a one-layer patch CNN: measured clean 43.6%, CUDA 28.8%."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared real data not found at {SHARED_DATA}")
    from uebench.data import load

    train, test = load("cifar10", SHARED_DATA, "train"), load("cifar10", SHARED_DATA, "test")
    p = craft("cuda", train, progress=False)
    torch.manual_seed(0)
    clean = fit_and_test(patch_net(), train.images, train.labels, test, epochs=3, batch=128, lr=0.05)
    torch.manual_seed(0)
    poisoned = fit_and_test(patch_net(), p.apply(train).images, train.labels, test, epochs=3, batch=128, lr=0.05)
    assert clean > 33, clean
    assert poisoned < clean - 8, (clean, poisoned)
