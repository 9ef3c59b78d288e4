"""Model-based attacks (EM, REM, TAP, HYPO, SEP): budgets on the baked bytes, index mapping, determinism, efficacy
signals and refusals. Everything runs on 128 tiny `scenes` images with an eighth-width ResNet-18, so the
whole file stays well under two minutes on two CPU cores."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from uebench.attacks import ATTACKS, craft, make_config
from uebench.attacks import _crafting as C
from uebench.attacks.em import EM
from uebench.attacks.rem import REM
from uebench.attacks.tap import TAP
from uebench.core.errors import UserError
from uebench.data import load

EPS = 8 / 255
# the images the thresholds below were measured on (scenes' default before 0.2.0)
DIFFICULTY = "standard"
# fp32: the bounds below were measured on fp32 crafts (bf16 crafting has its own tests, test_craft_precision.py)
TINY = {"model": "resnet18", "width": 0.125, "pgd_batch": 128, "precision": "fp32"}
# long enough for the min-min game to converge on 128 images (stops by the 99% rule in round 2)
EM_RUN = {**TINY, "train_steps": 15, "batch_size": 64, "lr": 0.02, "steps": 5, "step": 2 / 255, "max_rounds": 4}
EM_TINY = {**EM_RUN, "train_steps": 3, "steps": 2, "max_rounds": 1}  # one cheap round: mapping, determinism
REM_TINY = {
    **TINY,
    "train_steps": 2,
    "batch_size": 64,
    "steps": 2,
    "step": 4 / 255,
    "adv_steps": 1,
    "adv_step": 4 / 255,
    "eot_samples": 2,
}
TAP_TINY = {**TINY, "clean_epochs": 2, "clean_batch_size": 32, "iterations": 2, "restarts": 2, "step": 2 / 255}
SEP_TINY = {**TINY, "clean_epochs": 2, "clean_batch_size": 32, "models": 2, "iterations": 2, "step": 2 / 255}
HYPO_TINY = {**TINY, "clean_epochs": 2, "clean_batch_size": 32, "steps": 3, "step": 2 / 255}


@pytest.fixture(scope="module")
def scenes():
    return load("scenes", None, "train", n_train=128, n_test=32, difficulty=DIFFICULTY)


def perturb(name: str, ds, seed: int = 0, **params):
    """The float perturbation, straight from the attack (before baking)."""
    attack = ATTACKS.get(name)(make_config(ATTACKS.get(name), "paper", **params))
    attack.validate(ds)
    return attack.perturb(ds, seed=seed, progress=False)


def baked_delta(poison, ds) -> torch.Tensor:
    return poison.images.float() - ds.images[poison.indices].float()


# ---- EM -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def em_poison(scenes):
    return craft("em", scenes, seed=0, progress=False, **EM_RUN)


def test_em_budget_held_and_used(em_poison, scenes):
    d = baked_delta(em_poison, scenes)
    assert d.abs().max() <= 8  # Linf 8/255 on the baked uint8 images
    # signed steps push most elements towards the edge of the ball (pixels clipped at 0/255 left out)
    clean = scenes.images[em_poison.indices].float()
    free = (clean >= 8) & (clean <= 247)
    assert (d[free].abs() >= 6).float().mean() > 0.5
    meta = em_poison.meta
    assert meta.epoch_equivalents > 0 and meta.extra["rounds"] >= 1
    assert meta.extra["stopped_by"] == "accuracy" and meta.extra["final_crafting_acc"] >= 99


def test_em_minimises_error(em_poison):
    extra = em_poison.meta.extra
    # the crafting model fits the noise, not the images: its loss on x + delta is far below its loss on x
    assert extra["final_crafting_loss"] < 0.5 * extra["clean_loss"]


def test_em_samplewise_delta_belongs_to_image(scenes):
    perm = torch.randperm(len(scenes), generator=torch.Generator().manual_seed(1))
    base = perturb("em", scenes, **EM_TINY).delta
    permuted = perturb("em", scenes.subset(perm), **EM_TINY).delta
    assert torch.equal(permuted, base[perm])  # crafting a permuted set gives the permuted perturbation


@pytest.mark.parametrize("update", ["mean", "sign"])
def test_em_classwise_identical_within_class(scenes, update):
    pert = perturb("em", scenes, mode="classwise", classwise_update=update, **EM_TINY)
    for c in scenes.labels.unique():
        rows = pert.delta[scenes.labels == c]
        assert torch.equal(rows, rows[:1].expand_as(rows))
    assert pert.delta.abs().max() <= EPS + 1e-6
    assert not torch.equal(pert.delta[scenes.labels == 0][0], pert.delta[scenes.labels == 1][0])


def test_em_deterministic(scenes):
    first = craft("em", scenes, seed=0, progress=False, **EM_TINY)
    again = craft("em", scenes, seed=0, progress=False, **EM_TINY)
    assert torch.equal(again.images, first.images)
    other = craft("em", scenes, seed=1, progress=False, **EM_TINY)
    assert not torch.equal(other.images, first.images)


def test_em_classwise_default_is_the_public_rule():
    cls = ATTACKS.get("em")
    c = make_config(cls, "paper", mode="classwise")
    assert (c.classwise_update, c.classwise_portion, c.steps) == ("mean", 0.2, 1)  # their --num_steps 1, 20% subset
    assert make_config(cls, "paper", mode="classwise", classwise_update="sign").steps == 20
    assert make_config(cls, "paper").steps == 20  # sample-wise: the paper's 20 steps


class _Quadratic(nn.Module):
    """Logits (0, sum (x - 1/2)^2): for label 0 the input gradient is sigmoid(z) * 2 (x - 1/2), so its sign says
    on which side of 1/2 a pixel is, and its size grows with the distance."""

    def forward(self, x):
        z = ((x - 0.5) ** 2).flatten(1).sum(1)
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_em_classwise_mean_rule_averages_per_sample_signs():
    """The public rule moves a class's delta by the mean of its samples' own signed steps (the majority wins);
    the sign of the summed gradient follows the one image with the largest gradient instead."""
    step = 0.8 / 255
    # class 0: two pixels just above 1/2 (small gradients, +), one far below (a large gradient, -); class 1 agrees
    x = torch.tensor([0.6, 0.6, 0.1, 0.9, 0.8]).view(5, 1, 1, 1)
    y = torch.tensor([0, 0, 0, 1, 1])
    zero = C.channels_last(torch.zeros(2, 1, 1, 1))
    params = {"mode": "classwise", "step": step, "steps": 1, "batch_size": 8, "pgd_batch": 8}
    mean_em = EM(make_config(EM, "paper", classwise_update="mean", **params))
    sign_em = EM(make_config(EM, "paper", classwise_update="sign", **params))
    gen = torch.Generator().manual_seed(0)
    mean = mean_em._classwise_mean_round(_Quadratic(), x, y, zero.clone(), C.Compute(5), None, torch.arange(5), gen)
    summed = sign_em._classwise_round(_Quadratic(), x, y, zero.clone(), C.Compute(5))
    # descent: -step * sign(grad) per sample is (-, -, +) for class 0, whose mean is -step/3; the summed
    # gradient is dominated by the third image, so one signed step on it gives +step
    assert mean[0].item() == pytest.approx(-step / 3, rel=1e-5)
    assert summed[0].item() == pytest.approx(step, rel=1e-5)
    assert mean[1].item() == pytest.approx(step, rel=1e-5) and summed[1].item() == pytest.approx(step, rel=1e-5)


def test_em_classwise_mean_rule_uses_a_seeded_subset(scenes):
    pert = perturb("em", scenes, mode="classwise", **EM_TINY)
    counts = torch.bincount(scenes.labels, minlength=scenes.num_classes)
    assert pert.extra["classwise_update"] == "mean"
    assert pert.extra["classwise_subset"] == sum(max(1, round(0.2 * int(n))) for n in counts if n > 0)


def test_em_stops_at_accuracy(scenes):
    pert = perturb("em", scenes, **{**EM_TINY, "stop_acc": 1.0, "max_rounds": 50})
    assert pert.extra["stopped_by"] == "accuracy" and pert.extra["rounds"] == 1


# ---- REM ------------------------------------------------------------------------------------------------------
def test_rem_budget_and_determinism(scenes):
    a = craft("rem", scenes, seed=0, progress=False, **REM_TINY)
    b = craft("rem", scenes, seed=0, progress=False, **REM_TINY)
    assert torch.equal(a.images, b.images)
    assert baked_delta(a, scenes).abs().max() <= 8
    # cost: per training step, steps * eot * (adv_steps + 1) noise passes + (adv_steps + 1) for adversarial
    # training, on 64 of 160 images; then the same noise cost once over every image
    per_noise = 2 * 2 * (1 + 1)
    expected = 2 * 64 * (per_noise + 2) / 128 + per_noise
    assert a.meta.epoch_equivalents == pytest.approx(expected)


def test_rem_refuses_adversarial_radius_above_budget(scenes):
    with pytest.raises(UserError, match="adv_eps"):
        craft("rem", scenes, progress=False, **{**REM_TINY, "adv_eps": 12 / 255})
    with pytest.raises(UserError, match="adv_eps"):
        craft("rem", scenes, progress=False, **{**REM_TINY, "adv_eps": -1 / 255})


def test_rem_zero_adversary_allowed(scenes):
    pert = perturb("rem", scenes, **{**REM_TINY, "adv_eps": 0.0})
    assert pert.delta.abs().max() <= EPS + 1e-6


def test_a_rem_poison_at_another_adversarial_radius_names_it():
    assert REM(make_config(REM, "fast")).describe_variant() == "paper"  # rho_a 4/255, the paper's main setting
    assert REM(make_config(REM, "fast", adv_eps=2 / 255)).describe_variant() == "rho_a 2/255"
    assert REM(make_config(REM, "fast", adv_eps=0.0)).describe_variant() == "rho_a 0/255"


# ---- TAP ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tap_pert(scenes):
    return perturb("tap", scenes, **TAP_TINY)


def test_tap_moves_predictions_to_next_class():
    # 512 images, so that the 8-epoch crafting model is a real classifier (44-58% train accuracy on seeds 0-2);
    # 6 passes without augmentation then move 32-36% of the images to the target class (9-13% before)
    scenes512 = load("scenes", None, "train", n_train=512, n_test=32, difficulty=DIFFICULTY)
    params = {**TAP_TINY, "clean_epochs": 8, "clean_lr": 0.05, "iterations": 6, "restarts": 1, "augment": False}
    poison = craft("tap", scenes512, seed=1, progress=False, **params)
    assert baked_delta(poison, scenes512).abs().max() <= 8
    extra = poison.meta.extra
    assert extra["crafting_model_clean_train_acc"] > 30
    # the clean crafting model puts far more poisoned than clean images in class (y+1) mod C
    assert extra["crafting_model_target_acc"] > extra["crafting_model_clean_target_acc"] + 15


def test_tap_restart_selection(scenes, tap_pert):
    losses = tap_pert.extra["restart_mean_target_loss"]
    assert len(losses) == 2
    # the default keeps the whole restart with the lowest mean target loss
    assert tap_pert.extra["selected_mean_target_loss"] == pytest.approx(min(losses), abs=1e-5)
    assert tap_pert.extra["selected_restart"] == losses.index(min(losses))
    assert tap_pert.delta.abs().max() <= EPS + 1e-6
    per_sample = perturb("tap", scenes, **{**TAP_TINY, "restart_select": "sample"})
    # each sample keeps its best restart: the mean can only be at or below every single restart's
    assert per_sample.extra["selected_mean_target_loss"] <= min(per_sample.extra["restart_mean_target_loss"]) + 1e-4
    assert per_sample.extra["selected_restart"] is None


def test_tap_defaults_are_the_public_codes(scenes):
    c = make_config(ATTACKS.get("tap"), "paper")
    assert (c.restart_select, c.pad) == ("set", "mean")
    with pytest.raises(UserError, match="unknown restart_select 'global'; valid: set, sample"):  # the old name of "set"
        TAP(make_config(TAP, "paper", restart_select="global")).validate(scenes)  # validate only: no crafting


def _fake_restarts(x_eps):
    """A stand-in for TAP._restart: restart 0 pushes every pixel up and is the better one for the first half of
    the samples only; restart 1 pushes down and has the lower mean target loss over the set."""
    calls = []

    def fake(self, model, x, target, gen, augment, compute, bar, world=None):
        r = len(calls)
        calls.append(r)
        half = len(x) // 2
        delta = C.project(torch.full_like(x, x_eps if r == 0 else -x_eps), x, x_eps)
        losses = torch.full((len(x),), 1.0)
        if r == 0:
            losses[:half], losses[half:] = 0.1, 3.0  # mean 1.55 against restart 1's 1.0
        return delta, losses

    return fake


@pytest.mark.parametrize("rule", ["set", "sample"])
def test_tap_set_selection_keeps_one_whole_restart(scenes, monkeypatch, rule):
    ds = scenes.subset(torch.arange(16))
    monkeypatch.setattr(TAP, "_restart", _fake_restarts(EPS / 2))
    params = {**TAP_TINY, "clean_epochs": 0, "restarts": 2, "restart_select": rule}
    poison = craft("tap", ds, seed=0, progress=False, **params)
    d = baked_delta(poison, ds)
    x = ds.images[poison.indices].float()
    up, down = d > 0, d < 0
    free = (x >= 8) & (x <= 247)  # pixels the projection leaves alone
    half = len(ds) // 2
    if rule == "set":  # restart 1, the lower mean, for every sample; though restart 0 is better for half of them
        assert down[free].all() and poison.meta.extra["selected_restart"] == 1
    else:  # per sample: restart 0 for the first half, restart 1 for the rest
        assert up[:half][free[:half]].all() and down[half:][free[half:]].all()
    assert poison.meta.params["restart_select"] == rule and poison.meta.params["pad"] == "mean"


@pytest.mark.parametrize("pad", ["mean", "black"])
def test_tap_augmentation_pads_with_the_mean_colour(pad):
    """Pixels shifted in take the crafting set's mean colour ("mean", the public code's zero of normalised
    inputs), or 0 ("black"). An image of the mean colour is then unchanged by any shift under "mean"."""
    colour = torch.tensor([0.2, 0.5, 0.8])
    x = C.channels_last(colour.view(1, 3, 1, 1).expand(8, 3, 16, 16).clone())
    attack = TAP(make_config(TAP, "paper", pad=pad))
    out = attack.augmentation(x, torch.Generator().manual_seed(0))(x)
    assert out.shape == x.shape
    if pad == "mean":
        assert torch.allclose(out, x, atol=1e-5)
    else:  # the shifted-in border is darker than the image
        assert (out < x - 0.05).any() and (out <= x + 1e-5).all()


def test_tap_deterministic_and_permutation(scenes, tap_pert):
    assert torch.equal(perturb("tap", scenes, **TAP_TINY).delta, tap_pert.delta)
    perm = torch.randperm(len(scenes), generator=torch.Generator().manual_seed(2))
    assert torch.equal(perturb("tap", scenes.subset(perm), **TAP_TINY).delta, tap_pert.delta[perm])


# ---- refusals --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, params, match",
    [
        ("em", {"eps": -0.1}, "eps"),
        ("em", {"eps": 2.0}, "budget"),
        ("em", {"eps": "abc"}, "eps"),
        ("em", {"steps": 2.5}, "steps"),
        ("em", {"width": 0}, "width"),
        ("em", {"mode": "pixelwise"}, "mode"),
        ("em", {"steps": 0}, "steps"),
        ("em", {"stop_acc": 150}, "stop_acc"),
        ("em", {"model": "nonet"}, "nonet"),
        ("em", {"no_such_param": 1}, "no_such_param"),
        ("rem", {"eot_samples": 0}, "eot_samples"),
        ("rem", {"augment": "mixup"}, "augment"),
        ("tap", {"restart_select": "best"}, "restart_select"),
        ("tap", {"pad": "white"}, "unknown pad 'white'; valid: mean, black"),
        ("em", {"classwise_update": "median"}, "unknown classwise_update 'median'; valid: mean, sign"),
        ("em", {"classwise_portion": 0.0}, "classwise_portion is a share"),
        ("em", {"classwise_portion": 1.5}, "classwise_portion is a share"),
        ("tap", {"init": "ones"}, "init"),
        ("tap", {"step": 0.0}, "step"),
        ("tap", {"device": "tpu"}, "device"),
    ],
)
def test_bad_params_refused(scenes, name, params, match):
    with pytest.raises(UserError, match=match):
        craft(name, scenes, progress=False, **params)


# ---- HYPO -----------------------------------------------------------------------------------------------------
def test_hypo_makes_the_fixed_model_more_confident_within_budget():
    # as TAP's test: 512 images, so that the 8-epoch crafting model is a real classifier (measured: 40.6% train
    # accuracy, loss 1.28); 6 steps of 2/255 then raise it to 65.8% (loss 1.02) on the poisoned images
    scenes512 = load("scenes", None, "train", n_train=512, n_test=32, difficulty=DIFFICULTY)
    params = {**HYPO_TINY, "clean_epochs": 8, "clean_lr": 0.05, "steps": 6}
    poison = craft("hypo", scenes512, seed=0, progress=False, **params)
    d = baked_delta(poison, scenes512)
    assert d.abs().max() <= 8 and (d != 0).float().mean() > 0.5  # Linf 8/255 on the bytes, and used
    extra = poison.meta.extra
    assert extra["crafting_model_clean_train_acc"] > 30
    # the objective it descends: the fixed model's loss on the images' own labels
    assert extra["crafting_model_poisoned_train_loss"] < extra["crafting_model_clean_train_loss"] - 0.1
    assert extra["crafting_model_poisoned_train_acc"] > extra["crafting_model_clean_train_acc"] + 10
    assert poison.meta.epoch_equivalents == pytest.approx(8 + 6 + 2 / 3, abs=0.01)  # clean epochs, steps, 2 evals


def test_hypo_deterministic_and_the_delta_belongs_to_its_image(scenes):
    a = perturb("hypo", scenes, **HYPO_TINY).delta
    assert torch.equal(a, perturb("hypo", scenes, **HYPO_TINY).delta)
    perm = torch.randperm(len(scenes), generator=torch.Generator().manual_seed(5))
    assert torch.equal(perturb("hypo", scenes.subset(perm), **HYPO_TINY).delta, a[perm])


def test_hypo_defaults_are_apbenchs_and_the_clean_recipe_the_authors():
    c = make_config(ATTACKS.get("hypo"), "paper")
    assert (c.eps, c.step, c.steps, c.model) == (pytest.approx(EPS), pytest.approx(0.8 / 255), 100, "resnet18")
    r = ATTACKS.get("hypo")(c).clean_recipe()
    assert (r.epochs, r.milestones, r.lr, r.batch_size, r.weight_decay) == (150, (100, 125), 0.1, 128, 5e-4)
    with pytest.raises(UserError, match="augment"):
        craft("hypo", load("scenes", None, "train", n_train=8, n_test=8), progress=False, clean_augment="mixup9")


# ---- SEP ------------------------------------------------------------------------------------------------------
def test_sep_spreads_its_checkpoints_as_the_public_code():
    from uebench.attacks.sep import spread

    assert spread(120, 30) == list(range(3, 120, 4))  # ckpts[interval - 1 :: interval], interval 4
    assert spread(10, 5) == [1, 3, 5, 7, 9] and spread(10, 10) == list(range(10)) and spread(3, 5) == [0, 1, 2]
    assert spread(7, 3) == [1, 3, 5]  # as theirs: ckpts[1::2] of 7, the last model left out


def test_sep_moves_a_checkpoint_towards_the_opposite_class():
    # 512 images so that the run's last model is a classifier (27-47% train accuracy, by machine and thread count).
    # 5 steps of 2/255 at 8/255 must lower the loss they descend, the cross-entropy towards (y + 5) mod 10, and put
    # more images in that class. Measured: loss 2.98 -> 2.58 and 5.3% -> 10.7% of the images (AMD avx512-bf16, one
    # thread); 4.36 -> 2.87 and 2.9% -> 21.9% (two threads); 2.7% -> 15.0% on an AMX machine (one thread)
    scenes512 = load("scenes", None, "train", n_train=512, n_test=32, difficulty=DIFFICULTY)
    params = {**SEP_TINY, "clean_epochs": 6, "clean_lr": 0.05, "models": 1, "iterations": 5, "eps": EPS}
    poison = craft("sep", scenes512, seed=0, progress=False, **params)
    assert baked_delta(poison, scenes512).abs().max() <= 8
    extra = poison.meta.extra
    assert extra["ensemble_epochs"] == [6] and extra["checkpoint_clean_train_acc"][0] > 20
    assert extra["checkpoint_target_loss"][0] < extra["checkpoint_clean_target_loss"][0] - 0.2
    assert extra["checkpoint_target_acc"][0] > extra["checkpoint_clean_target_acc"][0] + 3


def test_sep_deterministic_budget_and_ensemble(scenes):
    p = craft("sep", scenes, seed=0, progress=False, **SEP_TINY)
    assert baked_delta(p, scenes).abs().max() <= 2  # the paper's 2/255 by default
    assert p.meta.extra["ensemble_epochs"] == [1, 2] and len(p.meta.extra["checkpoint_target_acc"]) == 2
    assert p.meta.epoch_equivalents == pytest.approx(2 + 2 * 2 + 6 / 3, abs=0.01)  # run, 2 steps x 2 models, evals
    assert torch.equal(craft("sep", scenes, seed=0, progress=False, **SEP_TINY).images, p.images)
    c = make_config(ATTACKS.get("sep"), "paper")
    assert (c.eps, c.step, c.iterations, c.models, c.clean_epochs) == (
        pytest.approx(2 / 255),
        pytest.approx(1 / 255),
        30,
        30,
        120,
    )
    assert ATTACKS.get("sep")(c).clean_recipe().milestones == (75, 90)


def test_unknown_preset_refused(scenes):
    with pytest.raises(UserError, match="preset"):
        craft("em", scenes, preset="turbo", progress=False)


def test_presets_are_paper_defaults_plus_fast():
    for name in ("em", "rem", "tap", "hypo"):
        cls = ATTACKS.get(name)
        paper = make_config(cls, "paper")
        fast = make_config(cls, "fast")
        assert paper.eps == pytest.approx(EPS) and fast.eps == pytest.approx(EPS)
        assert paper.width == 1.0 and paper.model == "resnet18"
    assert make_config(ATTACKS.get("em"), "paper").steps == 20
    assert make_config(ATTACKS.get("tap"), "paper").restarts == 8
    assert make_config(ATTACKS.get("rem"), "paper").adv_eps == pytest.approx(4 / 255)


@pytest.mark.parametrize(
    "name, params", [("em", {**EM_TINY}), ("em", {**EM_TINY, "mode": "classwise"}), ("rem", {**REM_TINY})]
)
def test_crafting_kept_on_the_host_gives_the_same_bytes(scenes, name, params, monkeypatch):
    """A crafting set too large for the device (ImageNet-100 at 224 px) keeps its images and perturbation on the
    host and moves one batch at a time: the same perturbation as the device-resident path."""
    resident = perturb(name, scenes, **params)
    monkeypatch.setattr(C, "keep_on_host", lambda ds, device: True)
    hosted = perturb(name, scenes, **params)
    assert torch.equal(hosted.delta, resident.delta) and hosted.delta.abs().max() > 0
    assert hosted.extra["host_resident"] and "host_resident" not in resident.extra


def test_keep_on_host_only_for_a_set_larger_than_the_device_share(scenes):
    assert not C.keep_on_host(scenes, torch.device("cpu"))  # on the CPU the host is the device
    rows = C.rows_like(C.HostImages(scenes.images[:4], torch.device("cpu")), torch.device("cpu"))
    rows[torch.tensor([1, 3])] = torch.ones(2, *scenes.shape)
    assert rows.data.sum() == 2 * scenes.images[0].numel() and rows[torch.tensor([0])].abs().sum() == 0


def test_em_under_torchrun_refuses_a_batch_its_processes_do_not_divide(scenes, monkeypatch):
    from uebench.core import distributed

    monkeypatch.setattr(distributed, "current", lambda device=None: distributed.World(0, 2))
    with pytest.raises(UserError, match="batch size .* that 2 processes divide"):
        perturb("em", scenes, **{**EM_TINY, "batch_size": 33})
