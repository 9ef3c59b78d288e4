"""CP (contrastive poisoning): NT-Xent by hand, the noise step lowers the frozen encoder's contrastive loss, and the
attack holds its budget and bytes without reading the labels."""

from __future__ import annotations

import math

import pytest
import torch

from uebench.attacks import ATTACKS, craft, make_config
from uebench.attacks import _crafting as crafting
from uebench.attacks.cp import nt_xent
from uebench.cli import main
from uebench.core.errors import UserError
from uebench.data import load

TINY = {"width": 0.125, "rounds": 1, "train_steps": 2, "steps": 2, "step": 2 / 255, "batch_size": 32, "pgd_batch": 32}


def test_nt_xent_by_hand():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # views identical to their pairs: each row's positive has similarity 1/t, its two negatives 0 and 1/t-away
    loss = nt_xent(z, z.clone(), temperature=0.5)
    # row 0 of [z; z]: sims to rows 1, 2, 3 = 0, 2, 0 (row 2 is its pair) -> -log(e^2 / (1 + e^2 + 1))
    assert float(loss) == pytest.approx(-math.log(math.e**2 / (2 + math.e**2)), rel=1e-6)
    far = nt_xent(z, -z, temperature=0.5)
    assert float(far) > float(loss)


@pytest.fixture(scope="module")
def scenes():
    return load("scenes", None, "train", n_train=64, n_test=16, difficulty="standard")  # the measured images


def test_the_noise_step_lowers_the_frozen_encoders_contrastive_loss(scenes):
    attack = ATTACKS.get("cp")(make_config(ATTACKS.get("cp"), "paper", **{**TINY, "steps": 10, "step": 1.6 / 255}))
    x, _ = crafting.tensors(scenes, torch.device("cpu"))
    model = attack.encoder(scenes, 0, torch.device("cpu"))
    opt, gen = crafting.sgd(model, 0.1, 0.9, 1e-4), crafting.generator(0, 2)
    for _ in range(30):  # a briefly trained encoder (an untrained one's eval-mode features are all alike)
        loss = attack.contrastive(model.train(), x, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    noise = attack.noise_pass(model, x, torch.zeros_like(x), crafting.generator(0, 3), crafting.Compute(len(x)))
    before = attack.mean_loss(model, x, torch.zeros_like(x), crafting.generator(0, 9))
    after = attack.mean_loss(model, x, noise, crafting.generator(0, 9))
    assert after < before - 0.02, (before, after)  # measured 3.696 -> 3.635 at two threads
    assert noise.abs().max() <= 8 / 255 + 1e-6


def test_budget_bytes_and_no_labels(scenes):
    p = craft("cp", scenes, seed=0, progress=False, **TINY)
    d = p.images.float() - scenes.images[p.indices].float()
    assert d.abs().max() <= 8 and (d != 0).float().mean() > 0.3
    assert torch.equal(craft("cp", scenes, seed=0, progress=False, **TINY).images, p.images)
    relabelled = type(scenes)(scenes.name, scenes.split, scenes.images, scenes.labels.roll(7), scenes.classes)
    assert torch.equal(craft("cp", relabelled, seed=0, progress=False, **TINY).images, p.images)  # labels unused
    assert {"final_contrastive_loss", "clean_contrastive_loss"} <= set(p.meta.extra)


def test_one_image_has_no_negatives_and_is_refused(scenes, tmp_path, capsys):
    with pytest.raises(UserError, match="at least 2 images"):
        craft("cp", scenes.subset(torch.arange(1)), seed=0, progress=False, **TINY)
    code = main(
        ["craft", "--attack", "cp", "--dataset", "scenes", "--subset", "1", "--out", str(tmp_path / "p.safetensors")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "at least 2 images" in err and len(err.strip().splitlines()) == 1
