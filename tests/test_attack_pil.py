"""PIL (perturbation-induced linearisation): the public code's defaults and objective, the budget on the baked bytes,
what the noise does to the linear surrogate, determinism and index order, refusals, and a small victim that stops
generalising. All but the victim (5,085 real CIFAR-10 images, ~25 s) run on 256 tiny `scenes` images in seconds."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from attackkit import SHARED_DATA, fit_and_test
from uebench.attacks import ATTACKS, craft, make_config
from uebench.attacks import _crafting as C
from uebench.attacks.pil import LinearSurrogate, kl_to_uniform, pil_loss
from uebench.cli import main
from uebench.core.errors import UserError
from uebench.data import load
from uebench.data.base import ImageDataset

# a surrogate that learns something from 256 images in 5 epochs (the paper's batch of 512 would take one step an
# epoch), and 10 noise steps of 2/255 that reach the edge of the 8/255 ball
TINY = {"clean_batch_size": 32, "clean_epochs": 5, "clean_lr": 0.01, "steps": 10, "step": 2 / 255}


@pytest.fixture(scope="module")
def scenes():
    return load("scenes", None, "train", n_train=256, n_test=32, difficulty="standard")


@pytest.fixture(scope="module")
def poison(scenes):
    return craft("pil", scenes, seed=0, progress=False, **TINY)


def perturb(ds, seed: int = 0, **params):
    cls = ATTACKS.get("pil")
    attack = cls(make_config(cls, "paper", **params))
    attack.validate(ds)
    return attack.perturb(ds, seed=seed, progress=False)


def test_defaults_are_the_public_codes():
    """github.com/jinlinll/pil main.py and README: eps 8/255, alpha 8/2550, 30 steps, lmd 0.9; the linear model
    pretrained 30 epochs at lr 0.003 (SGD momentum 0.9, no weight decay, cosine), batch 512."""
    cls = ATTACKS.get("pil")
    c = make_config(cls, "paper")
    assert (c.eps, c.step, c.steps, c.lmd) == (pytest.approx(8 / 255), pytest.approx(8 / 2550), 30, 0.9)
    assert (c.clean_epochs, c.clean_lr, c.clean_batch_size, c.clean_momentum, c.clean_weight_decay) == (
        30,
        0.003,
        512,
        0.9,
        0.0,
    )
    assert (c.init, c.surrogate, c.precision) == ("uniform", "factored", "fp32")  # bf16 saves PIL nothing
    assert cls.norm == "linf" and cls(c).budget() == pytest.approx(8 / 255)
    assert cls.presets == {"fast": {}}  # the paper's settings take seconds on a CPU already
    # their LinearModel: flatten, then two bias-free layers d -> K -> K
    m = LinearSurrogate(3072, 10, factored=True)
    shapes = [(n, tuple(p.shape)) for n, p in m.named_parameters()]
    assert shapes == [("fc1.weight", (10, 3072)), ("fc2.weight", (10, 10))]
    assert [n for n, _ in LinearSurrogate(3072, 10, factored=False).named_parameters()] == ["fc1.weight"]


def test_the_objective_is_the_public_codes_worked_by_hand():
    """attacks.py: lmd * CE(f(noise), y) + (1 - lmd) * kl_div(softmax(f(x - noise)).log(), 1/K, 'batchmean'), both
    batch means; the poisoned image is x - noise. pil_loss takes delta = -noise and sums over the batch."""
    g = torch.Generator().manual_seed(0)
    model = LinearSurrogate(12, 3, factored=True)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.rand(4, 3, 2, 2, generator=g)
    noise = (torch.rand(4, 3, 2, 2, generator=g) * 2 - 1) * 0.03
    y = torch.tensor([0, 2, 1, 2])
    p_clean = F.softmax(model(x - noise), dim=1).detach()
    with torch.no_grad():
        theirs = 0.9 * F.cross_entropy(model(noise), y) + 0.1 * F.kl_div(
            p_clean.log(), torch.full((3,), 1 / 3), reduction="batchmean"
        )
    with torch.no_grad():
        ours = float(pil_loss(model, x, -noise, y, 0.9))
    assert ours == pytest.approx(4 * float(theirs), rel=1e-5)
    # KL to the uniform prediction, worked out: 0 for a flat prediction, log K for a certain one in the limit
    assert kl_to_uniform(torch.zeros(1, 5)).item() == pytest.approx(0, abs=1e-7)
    assert kl_to_uniform(torch.tensor([[0.0, math.log(3.0)]])).item() == pytest.approx(
        0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    )


def test_budget_held_and_used_on_the_baked_bytes(poison, scenes):
    d = poison.images.float() - scenes.images[poison.indices].float()
    assert d.abs().max() <= 8  # Linf 8/255 on the uint8 images
    clean = scenes.images[poison.indices].float()
    free = (clean >= 8) & (clean <= 247)  # pixels the [0, 255] clip leaves alone
    assert (d[free].abs() >= 7).float().mean() > 0.9  # signed steps drive the noise to the edge of the ball
    # surrogate training epochs + two passes per noise step + the statistics (three forward passes = one)
    assert poison.meta.epoch_equivalents == pytest.approx(5 + 2 * 10 + 1)


def test_the_noise_is_a_linear_shortcut_and_the_image_is_subtracted(poison):
    """The noise alone gives every label away to the surrogate (the CE term). The poison is x - noise, so by
    linearity the surrogate's logit for the label falls on the poisoned image: with x + noise it would rise to
    the noise's 100%."""
    extra = poison.meta.extra
    assert extra["surrogate_noise_acc"] >= 99
    assert extra["surrogate_clean_train_acc"] > 20  # a surrogate that learned something (chance: 10%)
    assert extra["surrogate_poisoned_train_acc"] < extra["surrogate_clean_train_acc"] - 10
    # the KL term: the surrogate reads less from the poisoned images than from the clean ones
    assert extra["surrogate_poisoned_kl"] < extra["surrogate_clean_kl"]


def test_a_linear_model_fits_the_poisoned_images_faster(poison, scenes):
    """The poisoned set is close to linearly separable: a fresh linear classifier (with bias, its own init) fits it
    in 5 epochs better than the clean set (measured: 46.9% against 38.7%)."""
    accs = []
    for images in (scenes.images, poison.images):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
        same = ImageDataset("fit", "train", images, scenes.labels, scenes.classes)
        accs.append(fit_and_test(model, images, scenes.labels, same, epochs=5, batch=64, lr=0.01))
    assert accs[1] > accs[0] + 4, accs


def test_deterministic_in_index_order_and_batch_free(scenes):
    a = perturb(scenes, **TINY).delta
    assert torch.equal(a, perturb(scenes, **TINY).delta)  # the same seed, the same perturbation
    assert not torch.equal(a, perturb(scenes, seed=1, **TINY).delta)
    perm = torch.randperm(len(scenes), generator=torch.Generator().manual_seed(5))
    assert torch.equal(perturb(scenes.subset(perm), **TINY).delta, a[perm])  # row i is image i's
    # every image's noise depends on its own image only: the batch it is crafted in changes float rounding at most
    other = perturb(scenes, pgd_batch=48, **TINY).delta
    assert (other == a).float().mean() > 0.999


def test_surrogate_init_and_precision_options(scenes):
    base = perturb(scenes, **TINY)
    single = perturb(scenes, surrogate="single", **TINY)
    assert not torch.equal(single.delta, base.delta) and single.extra["surrogate_noise_acc"] >= 99
    zero = perturb(scenes, init="zero", **TINY)
    assert not torch.equal(zero.delta, base.delta) and zero.delta.abs().max() <= 8 / 255 + 1e-6
    fp32 = craft("pil", scenes, seed=0, progress=False, precision="fp32", **TINY)
    bf16 = craft("pil", scenes, seed=0, progress=False, precision="bf16", **TINY)
    again = craft("pil", scenes, seed=0, progress=False, precision="bf16", **TINY)
    assert "precision" not in fp32.meta.params and bf16.meta.params["precision"] == "bf16"
    assert bf16.content_hash() == again.content_hash()


def test_the_surrogate_reads_the_input_in_fp32_under_bf16(scenes):
    from uebench.attacks.pil import PIL

    for precision, first in (("fp32", nn.Linear), ("bf16", C.ExactLinear)):
        attack = PIL(make_config(PIL, "paper", precision=precision, clean_epochs=0))
        model = attack.train_surrogate(scenes, 0, torch.device("cpu"), C.Compute(len(scenes)), False)
        assert type(model.fc1) is first and type(model.fc2) is nn.Linear


@pytest.mark.parametrize(
    "params, match",
    [
        ({"lmd": 1.5}, "lmd"),
        ({"lmd": -0.1}, "lmd"),
        ({"eps": 0.5}, "outside"),
        ({"eps": -1.0}, "eps"),
        ({"step": 0.0}, "step"),
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"clean_epochs": -1}, "clean_epochs"),
        ({"clean_lr": 0.0}, "clean_lr"),
        ({"clean_momentum": 1.0}, "clean_momentum"),
        ({"clean_weight_decay": -1e-4}, "clean_weight_decay"),
        ({"pgd_batch": 0}, "pgd_batch"),
        ({"init": "randn"}, "unknown init 'randn'; valid: uniform, zero"),
        ({"surrogate": "mlp"}, "unknown surrogate 'mlp'; valid: factored, single"),
        ({"precision": "fp16"}, "crafting precision 'fp16' is not supported"),
        ({"device": "tpu"}, "device"),
        ({"width": 0.5}, "no parameter width"),
    ],
)
def test_bad_params_refused(scenes, params, match):
    with pytest.raises(UserError, match=match):
        craft("pil", scenes, progress=False, **params)


def test_one_class_refused_and_the_cli_says_so_in_one_line(tmp_path, capsys):
    images, labels = torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.long)
    one = ImageDataset("one", "train", images, labels, ["a"])
    with pytest.raises(UserError, match="at least 2 classes"):
        craft("pil", one, progress=False)
    out = tmp_path / "p.safetensors"
    argv = ["craft", "--attack", "pil", "--attack-option", "lmd=2", "--data-option", "n_train=32", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lmd" in err
    assert not out.exists()


def _small_cnn() -> nn.Module:
    """Two 3x3 conv blocks (BatchNorm, ReLU, 2x2 max-pool) and a linear read-out."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 10),
    )


def test_pil_collapses_a_small_victim():
    """5,085 CIFAR images at the paper's settings, 4 epochs of a small CNN without augmentation: measured clean
    31.5%, PIL 8.9% (one thread)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared real data not found at {SHARED_DATA}")
    train, test = load("cifar10", SHARED_DATA, "train"), load("cifar10", SHARED_DATA, "test")
    p = craft("pil", train, preset="fast", progress=False)
    assert p.meta.extra["surrogate_noise_acc"] > 95
    torch.manual_seed(0)
    clean = fit_and_test(_small_cnn(), train.images, train.labels, test, epochs=4, batch=64, lr=0.05)
    torch.manual_seed(0)
    poisoned = fit_and_test(_small_cnn(), p.apply(train).images, train.labels, test, epochs=4, batch=64, lr=0.05)
    assert clean > 25, clean
    assert poisoned < 15, (clean, poisoned)
