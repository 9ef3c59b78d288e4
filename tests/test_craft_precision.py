"""Crafting precision: bf16 autocast in the model-based attacks' loops where `auto` (the default) picks it, fp32 crafts
byte-for-byte and key-for-key as before, the precision that ran recorded, and the refusals."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from uebench.attacks import _crafting as C
from uebench.attacks import craft
from uebench.cli import main
from uebench.core.errors import UserError
from uebench.core.runtime import fast_bf16
from uebench.data import load
from uebench.experiments.bench.config import PRESETS
from uebench.experiments.bench.run import poison_spec

TINY = {"model": "resnet18", "width": 0.125, "pgd_batch": 128}
EM_TINY = {**TINY, "train_steps": 3, "batch_size": 64, "lr": 0.02, "steps": 2, "step": 2 / 255, "max_rounds": 1}


@pytest.fixture(scope="module")
def scenes():
    return load("scenes", None, "train", n_train=64, n_test=16, difficulty="natural")


def test_the_precision_that_ran_is_recorded_and_bf16_is_deterministic(scenes):
    fp32 = craft("em", scenes, seed=0, progress=False, precision="fp32", **EM_TINY)
    bf16 = craft("em", scenes, seed=0, progress=False, precision="bf16", **EM_TINY)
    again = craft("em", scenes, seed=0, progress=False, precision="bf16", **EM_TINY)
    assert "precision" not in fp32.meta.params  # as every craft before crafting had a precision
    assert bf16.meta.params["precision"] == "bf16"
    assert bf16.content_hash() == again.content_hash()  # same seed, same bytes at one thread count
    assert bf16.content_hash() != fp32.content_hash()  # the models' passes did run in bf16


def test_a_model_trained_inside_the_crafts_autocast_learns_from_its_updated_weights(scenes):
    """One autocast context spans the whole craft; with autocast's weight cache the crafting model went on computing
    with its initial bf16 weights and EM's loss ran to 1e23. Without the cache the min-min game converges."""
    em = {**EM_TINY, "train_steps": 10, "steps": 5, "max_rounds": 4}
    poison = craft("em", scenes, seed=0, progress=False, precision="bf16", **em)
    assert poison.meta.extra["final_crafting_loss"] < 0.5
    assert poison.meta.extra["final_crafting_acc"] >= 90


@pytest.mark.parametrize("name", ["em", "tap", "dc"])
def test_fp16_and_unknown_precisions_are_refused(scenes, name):
    for bad in ("fp16", "bf32"):
        with pytest.raises(UserError, match=f"crafting precision '{bad}' is not supported; valid: auto, fp32, bf16"):
            craft(name, scenes, progress=False, precision=bad)


def test_the_cli_refuses_fp16_crafting_in_one_line(tmp_path, capsys):
    argv = ["craft", "--attack", "em", "--attack-option", "precision=fp16", "--data-option", "n_train=32"]
    assert main([*argv, "--out", str(tmp_path / "p.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fp16" in err
    assert not (tmp_path / "p.safetensors").exists()


def test_bf16_on_a_gpu_without_it_is_refused_in_one_line(monkeypatch):
    from uebench.core.runtime import resolve_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    gpu = torch.device("cuda")
    with pytest.raises(UserError, match="crafting precision bf16: cuda has no bf16 support"):
        C.crafting_precision("bf16", gpu)
    with pytest.raises(UserError, match="--precision bf16: cuda has no bf16 support"):
        resolve_precision("bf16", gpu)
    assert C.crafting_precision("auto", gpu) == "fp32"  # auto falls back instead


def test_auto_is_trainings_rule_without_fp16():
    cpu = torch.device("cpu")
    assert C.crafting_precision("auto", cpu) == ("bf16" if fast_bf16(cpu) else "fp32")
    assert C.crafting_precision("fp32", cpu) == "fp32" and C.crafting_precision("bf16", cpu) == "bf16"


def test_a_bench_crafts_at_auto_and_keeps_its_old_keys_where_that_is_fp32():
    """The quick preset's poison keys as uebench 0.2.0 planned them before crafting had a precision: an fp32 craft
    keeps them, asked for (`precision=fp32`) or resolved from `auto` on a machine without fast bf16."""
    quick = PRESETS.get("quick")
    old = {"em": "512248efa1", "rem": "f0c14b4246", "tap": "ce89869cb5", "dc": "6801df4648", "lsp": "7e1aa72910"}
    bf16_here = fast_bf16(torch.device("cpu"))
    fp32 = {a: {**quick.attack_params.get(a, {}), "precision": "fp32"} for a in ("em", "rem", "tap", "dc")}
    for attack, key in old.items():
        for config in (quick, dataclasses.replace(quick, precision="bf16")):  # training's precision is not crafting's
            asked = poison_spec(dataclasses.replace(config, attack_params=fp32), attack, 0)
            assert asked.file == f"poisons/{attack}-s0-{key}.safetensors" and "precision" not in asked.params
            default = poison_spec(config, attack, 0)
            model_free = attack == "lsp"
            assert (default.file == asked.file) == (model_free or not bf16_here)  # auto records what it resolved to
            assert default.params.get("precision") == (None if model_free or not bf16_here else "bf16")
    at_bf16 = poison_spec(dataclasses.replace(quick, attack_params={"em": {"precision": "bf16"}}), "em", 0)
    assert at_bf16.params["precision"] == "bf16" and old["em"] not in at_bf16.file
    assert (poison_spec(quick, "em", 0).file == at_bf16.file) == bf16_here


def _executed_first(model: torch.nn.Module, shape: tuple[int, ...]) -> str:
    """The first convolution or linear layer a forward pass runs, by hooks."""
    order: list[str] = []
    hooks = [
        m.register_forward_pre_hook(lambda _m, _a, n=n: order.append(n))
        for n, m in model.named_modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    with torch.no_grad():
        model.eval()(torch.rand(2, *shape))
    for h in hooks:
        h.remove()
    return order[0]


@pytest.mark.parametrize("name", sorted(C.MODELS.names()))
def test_the_exact_layer_is_the_one_that_reads_the_input(name):
    shape = (1, 28, 28) if name in ("lenet5", "linear") else (3, 32, 32)
    model = C.create_model(name, num_classes=10, in_channels=shape[0], image_size=shape[1], width=0.125)
    assert C.first_layer(model) == _executed_first(model, shape)


def test_a_bf16_crafting_model_sees_a_perturbation_smaller_than_bf16s_spacing(scenes):
    """In bf16 a pixel near 0.9 has the spacing 1/256: a step of 1e-3 from one vanishes unless the first layer runs
    in fp32 (bf16 EM crafted without it was not learned). Also in the frozen, BatchNorm-folded copy PGD uses."""
    cfg = C.ModelConfig(model="resnet18", width=0.125, device="cpu", precision="bf16")
    x = torch.full((2, 3, 32, 32), 230 / 256)  # a bf16 value: x + 1e-3 rounds back to it
    plain = C.build_model(dataclasses.replace(cfg, precision="fp32"), scenes, 0, torch.device("cpu"))
    exact = C.build_model(cfg, scenes, 0, torch.device("cpu"))
    assert type(plain.conv1) is torch.nn.Conv2d and type(exact.conv1) is C.ExactConv2d
    assert exact.state_dict().keys() == plain.state_dict().keys()  # names and parameters as before
    for model in (exact.eval(), C.eval_copy(exact)):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            assert not torch.equal(model(x), model(x + 1e-3))
            assert not torch.equal(model.conv1(x), model.conv1(x + 1e-3))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
        assert torch.equal(plain.conv1(x), plain.conv1(x + 1e-3))  # what bf16 did before: the step rounded away
    assert type(exact.conv1) is C.ExactConv2d  # eval_copy put the layer back as it found it
