"""salmin and its SAL surrogate: the surrogate is SAL's ascent to first order (checked against the loss itself), the
noise step lowers the surrogate it targets, and the attack holds its budget, its bytes and its refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from uebench.attacks import ATTACKS, craft, make_config
from uebench.attacks import _crafting as crafting
from uebench.cli import main
from uebench.core.errors import UserError
from uebench.data import load
from uebench.metrics.sal_surrogate import first_order_sal, surrogate_total

TINY = {"model": "resnet18", "width": 0.125, "pgd_batch": 64, "train_steps": 2, "batch_size": 32, "steps": 2}


def test_surrogate_is_the_loss_rise_along_the_gradient_to_first_order():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y = torch.randn(16, 1, 3, 4, generator=g), torch.randint(0, 3, (16,), generator=g)
    eps = 1e-4
    s = first_order_sal(model, x, y, eps)
    assert list(s) == ["1", "3"]  # every Linear weight, by module name
    w = model[1].weight
    grad = torch.autograd.grad(F.cross_entropy(model(x), y), w)[0]
    with torch.no_grad():
        loss0 = float(
            F.cross_entropy(model(x), y)
        )  # the ascent branch's first-order optimum: radius eps*||W|| along the gradient
        step = eps * w.norm() * grad / grad.norm()
        w.add_(step)
        rise = float(F.cross_entropy(model(x), y)) - loss0
        w.sub_(2 * step)
        fall = loss0 - float(F.cross_entropy(model(x), y))
        w.add_(step)
    assert rise == pytest.approx(float(s["1"]), rel=1e-2) and fall == pytest.approx(float(s["1"]), rel=1e-2)
    assert float(surrogate_total(s)) == pytest.approx(float(s["1"] + s["3"]))
    # differentiable in the inputs when asked
    xi = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(surrogate_total(first_order_sal(model, xi, y, eps, create_graph=True)), xi)
    assert gx.abs().sum() > 0


@pytest.fixture(scope="module")
def scenes():
    return load("scenes", None, "train", n_train=64, n_test=16, difficulty="standard")  # the measured images


def test_the_noise_step_lowers_the_surrogate_it_targets(scenes):
    """One noise pass against the same fixed model: salmin's lowers the summed first-order SAL below the clean
    images' and below what EM's pass (sal_weight 0) leaves."""
    x, y = crafting.tensors(scenes, torch.device("cpu"))

    def after_pass(weight: float) -> float:
        attack = ATTACKS.get("salmin")(make_config(ATTACKS.get("salmin"), "paper", **TINY, sal_weight=weight))
        model = attack.frozen(crafting.build_model(attack.config, scenes, 0, torch.device("cpu")))
        noise = crafting.channels_last(torch.zeros_like(x))
        noise = attack._samplewise_round(model, x, y, noise, crafting.Compute(len(x)))
        return float(surrogate_total(first_order_sal(model, (x + noise).clamp(0, 1), y, 0.05))), model

    em, _ = after_pass(0.0)
    salmin, model = after_pass(10.0)
    clean = float(surrogate_total(first_order_sal(model, x, y, 0.05)))
    assert salmin < 0.9 * clean and salmin < em, (clean, em, salmin)


def test_budget_bytes_and_record(scenes):
    p = craft("salmin", scenes, seed=0, progress=False, max_rounds=1, **TINY)
    d = p.images.float() - scenes.images[p.indices].float()
    assert d.abs().max() <= 8 and (d != 0).any()
    assert torch.equal(p.images, craft("salmin", scenes, seed=0, progress=False, max_rounds=1, **TINY).images)
    extra = p.meta.extra
    assert {"sal_surrogate_clean", "sal_surrogate_poisoned", "rounds"} <= set(extra)
    assert p.meta.variant == "first-order" and p.meta.params["sal_weight"] == 0.1
    fast = make_config(ATTACKS.get("salmin"), "fast")
    em_fast = make_config(ATTACKS.get("em"), "fast")
    assert (fast.steps, fast.step, fast.max_rounds) == (em_fast.steps, em_fast.step, em_fast.max_rounds)


@pytest.mark.parametrize(
    "params,match",
    [
        ({"sal_weight": -1.0}, "sal_weight must be a finite number >= 0"),
        ({"sal_weight": float("inf")}, "sal_weight must be a finite number"),
        ({"sal_eps": 0.0}, "sal_eps"),
        ({"mode": "classwise"}, "only mode=samplewise"),
    ],
)
def test_refusals(scenes, params, match):
    with pytest.raises(UserError, match=match):
        craft("salmin", scenes, progress=False, **params)


def test_cli_negative_weight_is_one_line_exit_2(tmp_path, capsys):
    code = main(
        ["craft", "--attack", "salmin", "--attack-option", "sal_weight=-2", "--out", str(tmp_path / "p.safetensors")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "sal_weight" in err
