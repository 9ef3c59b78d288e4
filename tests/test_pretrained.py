"""Pretrained victims (--init-from, --freeze, the finetune recipe): the weights loaded are the file's, a file that does
not fit is one line, frozen layers do not move, the run and the bench record the file's sha256, a bench from scratch
keeps its identity, and a victim that starts from weights that fit the data is ahead after one epoch."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from benchkit import SMALL
from test_train import _channel_toy
from uebench.cli import main as cli_main
from uebench.core.errors import UserError
from uebench.training.pretrained import check_init_file, freeze, head_names, load_init
from uebench.training.trainer import TrainConfig, make_optimizer, model_for, train

SHAPE = (3, 32, 32)
TINY = dict(model="resnet18", width=0.125, precision="fp32", batch_size=32)


def weights_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def write_weights(path: Path, seed: int = 99, classes: int = 10, width: float = 0.125, **changes) -> Path:
    """A weights file of another seed's model (so it differs from any run's own init), with BatchNorm statistics
    that differ from a fresh model's (means 0.5, variances 2)."""
    model = model_for(TrainConfig(model="resnet18", width=width, seed=seed), SHAPE, classes)
    state = weights_of(model)
    for k in state:
        if k.endswith("running_mean"):
            state[k] += 0.5
        elif k.endswith("running_var"):
            state[k] *= 2
    state.update(changes)
    save_file(state, str(path))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- loading ------------------------------------------------------------------------------------------------------
def test_loaded_weights_equal_the_file_and_a_head_of_other_classes_is_the_seeds_own(tmp_path):
    f = write_weights(tmp_path / "w.safetensors")
    file = load_file(str(f))
    config = TrainConfig(**TINY, seed=3)

    same = model_for(config, SHAPE, 10)
    record = load_init(same, f, 10)
    assert record.head == "loaded" and record.tensors == len(file) and record.sha256 == sha256(f)
    assert all(torch.equal(same.state_dict()[k], file[k]) for k in file)  # every tensor, BatchNorm statistics too

    other = model_for(config, SHAPE, 6)  # six classes: the head cannot be the file's
    fresh = weights_of(model_for(config, SHAPE, 6))  # what a run from scratch of this seed starts from
    record = load_init(other, f, 6)
    heads = head_names(other, 6)
    assert heads == ("linear.weight", "linear.bias") and record.head == "reinitialised"
    assert "10 classes, this run 6" in record.head_reason
    state = other.state_dict()
    assert all(torch.equal(state[k], fresh[k]) for k in heads)  # the run's own seeded init
    assert all(torch.equal(state[k], file[k]) for k in file if k not in heads)

    reset = model_for(config, SHAPE, 10)
    record = load_init(reset, f, 10, head="reset")  # classes of another dataset that are as many
    fresh = weights_of(model_for(config, SHAPE, 10))
    assert record.head == "reinitialised" and torch.equal(reset.state_dict()["linear.weight"], fresh["linear.weight"])


def test_a_file_without_a_head_loads_the_backbone(tmp_path):
    full = weights_of(model_for(TrainConfig(seed=99), SHAPE, 10))
    path = tmp_path / "backbone.safetensors"
    save_file({k: v for k, v in full.items() if not k.startswith("linear.")}, str(path))
    model = model_for(TrainConfig(seed=0), SHAPE, 10)
    record = load_init(model, path, 10)
    assert record.head == "reinitialised" and record.head_reason == "the file holds no head"
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], full["layer4.1.conv2.weight"])


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    w = write_weights(tmp / "ok.safetensors")
    nan = write_weights(tmp / "nan.safetensors", **{"conv1.weight": torch.full((8, 3, 3, 3), math.nan)})
    big = tmp / "big.safetensors"
    with open(big, "wb") as f:
        f.truncate(64 * 2**20)  # sparse: a file far larger than an eighth-width ResNet-18 could fill
    junk = tmp / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    extra = write_weights(tmp / "extra.safetensors", **{"projector.weight": torch.zeros(4, 4)})
    ints = write_weights(tmp / "ints.safetensors", **{"conv1.weight": torch.zeros(8, 3, 3, 3, dtype=torch.int32)})
    wide = write_weights(tmp / "wide.safetensors", width=0.25)
    return {
        "another width": (wide, "conv1.weight (16x3x3x3 in the file, 8x3x3x3 here) and 100 more"),
        "not safetensors": (junk, "not a readable safetensors weights file"),
        "missing": (tmp / "nope.safetensors", "no such file"),
        "too large": (big, "more than this model's weights could fill"),
        "a tensor the model lacks": (extra, "not in the model: projector.weight"),
        "NaN": (nan, "NaN or inf values (in conv1.weight)"),
        "integers for weights": (ints, "of another kind: conv1.weight (I32 in the file, float32 here)"),
        "freeze without init": (None, "--freeze keeps layers at their pretrained values; give --init-from too"),
        "unknown module": (w, "unknown module 'layer9' for --freeze; valid: conv1, bn1, layer1"),
        "everything frozen": (w, "freezes every parameter: nothing would train"),
    }


FREEZE = {"freeze without init": "conv1", "unknown module": "layer9", "everything frozen": "conv1,bn1,layer1,"
          "layer2,layer3,layer4,linear"}  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [
        "another width",
        "not safetensors",
        "missing",
        "too large",
        "a tensor the model lacks",
        "NaN",
        "integers for weights",
        "freeze without init",
        "unknown module",
        "everything frozen",
    ],
)
def test_a_file_that_does_not_fit_is_refused_in_one_line_and_leaves_no_run(case, tmp_path, capsys):
    path, message = _bad_files(tmp_path)[case]
    out = tmp_path / "run"
    args = ["train", "--dataset", "scenes", "--data-option", "n_train=32", "--data-option", "n_test=16"]
    args += ["--epochs", "1", "--quiet", "--precision", "fp32", "--out", str(out)]
    args += ["--init-from", str(path)] if path is not None else []
    args += ["--freeze", FREEZE[case]] if case in FREEZE else []
    code = cli_main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert message in err, err
    assert not (out / "summary.json").exists() and not (out / "checkpoint.pt").exists()


def test_the_header_is_checked_before_any_tensor_is_read(tmp_path, monkeypatch):
    import safetensors.torch

    f = write_weights(tmp_path / "wide.safetensors", width=0.25)
    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: pytest.fail("tensors read"))
    with pytest.raises(UserError, match="does not fit this model"):
        load_init(model_for(TrainConfig(), SHAPE, 10), f, 10)


# ---- frozen layers ------------------------------------------------------------------------------------------------
def test_frozen_layers_do_not_move_and_the_rest_trains(tmp_path):
    f = write_weights(tmp_path / "w.safetensors")
    file = load_file(str(f))
    tr, te = _channel_toy(96, 0, "train"), _channel_toy(32, 1, "test")
    config = TrainConfig(**TINY, recipe="finetune", epochs=2, init_from=str(f), freeze=("conv1", "bn1", "layer1"))
    result = train(config, tmp_path / "run", train_set=tr, test_set=te, progress=False)
    state = result.model.state_dict()
    frozen = [k for k in state if k.split(".")[0] in ("conv1", "bn1", "layer1")]
    assert any(k.endswith("running_mean") for k in frozen) and any(k.endswith("num_batches_tracked") for k in frozen)
    assert all(torch.equal(state[k], file[k]) for k in frozen)  # weights and BatchNorm statistics, bit for bit
    assert not torch.equal(state["layer4.1.conv2.weight"], file["layer4.1.conv2.weight"])  # the rest trained
    assert not torch.equal(state["layer2.0.bn1.running_mean"], file["layer2.0.bn1.running_mean"])
    frozen_record = json.loads((tmp_path / "run" / "manifest.json").read_text())["frozen"]
    assert frozen_record["modules"] == ["conv1", "bn1", "layer1"] and "layer1.0.bn2" in frozen_record["batchnorm_eval"]
    # a frozen BatchNorm stays in eval mode when its model trains; the optimizer holds no frozen parameter
    model = model_for(config, SHAPE, 10)
    freeze(model, ("bn1",))
    model.train()
    assert not model.bn1.training and model.layer1[0].bn1.training
    opt = make_optimizer(model, config.resolved_recipe())
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(model.bn1.weight) not in held and id(model.conv1.weight) in held


# ---- records ------------------------------------------------------------------------------------------------------
def test_the_run_records_the_files_name_and_sha256_and_resumes(tmp_path):
    f = write_weights(tmp_path / "backbone.safetensors", classes=3)  # the toy data's three classes
    tr, te = _channel_toy(64, 0, "train"), _channel_toy(32, 1, "test")
    config = TrainConfig(**TINY, epochs=2, init_from=str(f))
    first = train(config, tmp_path / "run", train_set=tr, test_set=te, progress=False, stop_after=1)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["init_sha256"] == sha256(f) == first.config.init_sha256 and saved["init_from"] == str(f)
    assert "init_head" not in saved and "freeze" not in saved  # at their defaults, left out
    init = json.loads((tmp_path / "run" / "manifest.json").read_text())["init"]
    assert init["name"] == "backbone.safetensors" and init["sha256"] == sha256(f) and init["head"] == "loaded"
    done = train(config, tmp_path / "run", train_set=tr, test_set=te, progress=False, resume=True)
    assert done.summary["init"] == {"name": "backbone.safetensors", "sha256": sha256(f)}
    # a run from scratch records none of it: its config.json (and a bench's key) is as before
    assert not {"init_from", "init_sha256", "init_head", "freeze"} & set(TrainConfig(**TINY).fields())


def test_a_run_refuses_weights_that_changed_since_it_started(tmp_path):
    f = write_weights(tmp_path / "w.safetensors")
    config = TrainConfig(**TINY, epochs=1, init_from=str(f), init_sha256="0" * 64)
    with pytest.raises(UserError, match="is not the file this run started from"):
        train(config, train_set=_channel_toy(32, 0, "train"), test_set=_channel_toy(16, 1, "test"), progress=False)


def test_save_weights_writes_what_init_from_takes(tmp_path, capsys):
    out = tmp_path / "pre"
    args = ["train", "--dataset", "scenes", "--data-option", "n_train=32", "--data-option", "n_test=16", "--epochs"]
    assert cli_main([*args, "1", "--quiet", "--precision", "fp32", "--out", str(out), "--save-weights"]) == 0
    w = out / "weights" / "epoch-0001.safetensors"
    assert f"final weights: {w}" in capsys.readouterr().out
    model = model_for(TrainConfig(), SHAPE, 10)
    assert check_init_file(w, model, 10) == ()
    # the finetune recipe: the cpu recipe at a tenth of its learning rate
    ft = [*args, "1", "--quiet", "--precision", "fp32", "--out", str(tmp_path / "ft"), "--init-from", str(w)]
    assert cli_main([*ft, "--recipe", "finetune", "--freeze", "conv1,bn1"]) == 0
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["resolved_recipe"]["lr"] == 0.01 and saved["freeze"] == ["conv1", "bn1"]
    assert saved["init_sha256"] == sha256(w)


# ---- the effect it measures ---------------------------------------------------------------------------------------
def test_one_epoch_from_weights_that_fit_the_data_is_ahead_of_one_from_scratch(tmp_path):
    # pretrained on other images of the same easy task (the colour channel that is bright), then one epoch of the
    # finetune recipe on the training images, from scratch and from those weights
    tr, te, other = _channel_toy(256, 0, "train"), _channel_toy(128, 1, "test"), _channel_toy(256, 2, "train")
    pre = TrainConfig(**TINY, recipe="cpu", epochs=3, seed=5)
    train(pre, tmp_path / "pre", train_set=other, test_set=te, progress=False, save_final_weights=True)
    w = tmp_path / "pre" / "weights" / "epoch-0003.safetensors"
    one = TrainConfig(**TINY, recipe="finetune", epochs=1)
    scratch = train(one, train_set=tr, test_set=te, progress=False).history[0]["test_acc"]
    tuned = train(dataclasses.replace(one, init_from=str(w)), train_set=tr, test_set=te, progress=False)
    assert tuned.history[0]["test_acc"] >= 90 and tuned.history[0]["test_acc"] > scratch + 20, (scratch, tuned)


# ---- the bench ----------------------------------------------------------------------------------------------------
# SMALL's identity and run keys as uebench wrote them before --init-from existed (bfb9230): a bench from scratch
# keeps them, so its folders resume
OLD_IDENTITY = "8996cbeec2"
OLD_RUNS = ["runs/clean-none-s0-09c9f606ec", "runs/lsp-none-s0-933fb96345", "runs/ops-none-s0-e37af78dc9"]


def test_a_bench_from_scratch_keeps_its_identity_and_one_with_init_from_has_another(tmp_path):
    from uebench.experiments.bench.run import digest, make_plan

    assert digest(SMALL.identity()) == OLD_IDENTITY
    assert sorted(r.dir for r in make_plan(SMALL).runs) == OLD_RUNS
    f = write_weights(tmp_path / "w.safetensors")
    pre = dataclasses.replace(SMALL, init_from=str(f))
    identity = pre.identity()
    assert identity["init"] == {"name": "w.safetensors", "sha256": sha256(f)} and digest(identity) != OLD_IDENTITY
    runs = make_plan(pre).runs
    assert not set(r.dir for r in runs) & set(OLD_RUNS)
    assert all(r.train["init_sha256"] == sha256(f) for r in runs)  # clean included
    frozen = dataclasses.replace(pre, freeze=("conv1",))
    assert digest(frozen.identity()) != digest(identity)
    g = write_weights(tmp_path / "g.safetensors", seed=7)  # the same name elsewhere, other weights: another bench
    assert digest(dataclasses.replace(SMALL, init_from=str(g)).identity()) != digest(identity)


def test_a_bench_with_init_from_starts_every_run_from_its_copy_and_resumes(tmp_path, capsys):
    from uebench.experiments.bench.run import run_bench

    f = write_weights(tmp_path / "w.safetensors")
    config = dataclasses.replace(SMALL, attacks=("ops",), epochs=1, init_from=str(f), freeze=("conv1",))
    out = tmp_path / "bench"
    result = run_bench(config, out, progress=False, log=None)
    assert result.complete and len(result.trained) == 2
    copies = list((out / "init").iterdir())
    assert len(copies) == 1 and sha256(copies[0]) == sha256(f)
    for run in (out / "runs").iterdir():
        saved = json.loads((run / "config.json").read_text())
        assert saved["init_sha256"] == sha256(f) and saved["freeze"] == ["conv1"]
        assert json.loads((run / "manifest.json").read_text())["init"]["sha256"] == sha256(f)
    assert json.loads((out / "bench.json").read_text())["identity"]["init"]["sha256"] == sha256(f)
    again = run_bench(config, out, progress=False, log=None)
    assert again.complete and again.trained == []  # its runs are found again
    # the command line's spelling is the same bench
    args = ["bench", "--config", str(out / "bench.toml"), "--out", str(out), "--quiet"]
    assert cli_main(args) == 0
    capsys.readouterr()
    wide = write_weights(tmp_path / "wide.safetensors", width=0.25)
    code = cli_main(["bench", "--config", str(out / "bench.toml"), "--out", str(tmp_path / "b2"), "--init-from",
                     str(wide), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "does not fit this model" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b2").exists()
