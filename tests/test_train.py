"""The trainer: it learns, it resumes bit-exactly, it records, and it refuses bad input with one line."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import pytest
import torch

from uebench.cli import main as cli_main
from uebench.core.errors import UserError
from uebench.core.runtime import resolve_precision
from uebench.data import ImageDataset, load
from uebench.data.augment import crop_flip, random_crop
from uebench.models import create_model
from uebench.poisons.poison import Poison, PoisonMeta
from uebench.training.fit import epoch_generator
from uebench.training.recipes import RECIPES
from uebench.training.trainer import TrainConfig, train

TINY = dict(
    model="resnet18", width=0.125, recipe="quick", batch_size=64, dataset_options={"n_train": 256, "n_test": 128}
)


def tiny_config(**kw) -> TrainConfig:
    return TrainConfig(**{**TINY, "epochs": 2, **kw})


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _channel_toy(n: int, seed: int, split: str) -> ImageDataset:
    # an easy, real signal: class = which colour channel is bright, on scenes-sized images
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    images = (torch.rand(n, 3, 32, 32, generator=g) * 80).to(torch.uint8)
    images[torch.arange(n), labels] += 120
    return ImageDataset("toy", split, images, labels, ["r", "g", "b"])


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def num_threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("precision", ["fp32", "auto"])  # auto is bf16 on AMX CPUs and GPUs, fp32 elsewhere
def test_short_run_learns_above_chance(precision, num_threads):
    # Four epochs at lr 0.05, scored on held-out images: after two epochs at lr 0.1 the eval-mode accuracy is
    # mostly the BatchNorm running statistics, which lag the moving weights (bf16 with 1 thread scored 37% there
    # on images it had fitted), so the test would measure the statistics, not the learning.
    config = TrainConfig(
        model="resnet18", width=0.125, recipe="quick", epochs=4, batch_size=64, lr=0.05, precision=precision
    )
    result = train(
        config, train_set=_channel_toy(600, 0, "train"), test_set=_channel_toy(300, 1, "test"), progress=False
    )
    assert result.summary["final_test_acc"] > 33.3 + 30  # chance is 33.3%
    assert result.summary["peak_test_acc"] >= result.summary["final_test_acc"]


def test_resume_equals_uninterrupted(tmp_path):
    whole = train(tiny_config(epochs=3), tmp_path / "whole", progress=False)
    train(tiny_config(epochs=3), tmp_path / "cut", progress=False, stop_after=1)
    assert not (tmp_path / "cut" / "summary.json").exists()
    resumed = train(tiny_config(epochs=3), tmp_path / "cut", resume=True, progress=False)
    assert same_weights(whole.model, resumed.model)
    strip = lambda h: [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in h]  # noqa: E731
    assert strip(whole.history) == strip(resumed.history)


def test_run_folder_records(tmp_path, monkeypatch):
    result = train(tiny_config(), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in ("config.json", "manifest.json", "metrics.jsonl", "checkpoint.pt", "summary.json"):
        assert (run / name).exists(), name
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [rec["epoch"] for rec in lines] == [1, 2]
    assert {"train_loss", "train_acc", "test_acc", "test_loss", "lr"} <= set(lines[0])
    manifest = json.loads((run / "manifest.json").read_text())
    assert {"torch", "uebench", "seed", "git_revision", "device", "precision", "train_set"} <= set(manifest)
    config = json.loads((run / "config.json").read_text())
    assert config["resolved_recipe"]["epochs"] == 2 and config["model"] == "resnet18"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_test_acc"] == lines[-1]["test_acc"]
    assert summary["peak_test_acc"] == max(rec["test_acc"] for rec in lines)
    # rerunning a finished run with resume trains nothing, loads no data, and returns the same result
    import uebench.training.trainer as trainer

    def no_data(config):
        raise AssertionError("a finished run loaded its data")

    monkeypatch.setattr(trainer, "load_data", no_data)
    again = train(tiny_config(), run, resume=True, progress=False)
    assert same_weights(result.model, again.model) and again.history == result.history


def test_same_seed_same_weights_different_seed_differs():
    a = train(tiny_config(epochs=1), progress=False)
    b = train(tiny_config(epochs=1), progress=False)
    c = train(tiny_config(epochs=1, seed=1), progress=False)
    assert same_weights(a.model, b.model)
    assert not same_weights(a.model, c.model)


def test_poisoned_run_trains_on_poison(tmp_path):
    clean = load("scenes", split="train", n_train=256, n_test=128)
    images = clean.images.clone()
    images[:, :, 0, 0] = 255 - images[:, :, 0, 0]  # a big, visible change: must be on the training images
    poison = Poison(
        images, clean.labels, torch.arange(len(clean)), PoisonMeta("test", "scenes", len(clean), "none", 0.0)
    )
    poison.save(tmp_path / "p.safetensors")
    config = tiny_config(epochs=1, poison=str(tmp_path / "p.safetensors"))
    from uebench.training.trainer import load_data

    train_set, _ = load_data(config)
    assert torch.equal(train_set.images, images)


# ---- defaults: a first run on a laptop CPU; records keep their meaning --------------------------------------------
def test_the_defaults_are_a_cpu_first_run_and_the_command_line_takes_the_same():
    """TrainConfig() and a bare `uebench train --out X` train the same victim: scenes `natural`, an eighth-width
    ResNet-18, the cpu recipe (10 epochs, no augmentation); `--sal` alone probes with SALConfig()."""
    import argparse

    from uebench.cli import build_parser
    from uebench.cli.train import sal_probes
    from uebench.metrics import SALConfig

    config = TrainConfig()
    assert (config.dataset, config.model, config.width, config.recipe) == ("scenes", "resnet18", 0.125, "cpu")
    recipe = config.resolved_recipe()
    assert (recipe.epochs, recipe.augment) == (10, "none")
    assert config.dataset_options == config.fields()["dataset_options"] == {"difficulty": "natural"}  # what it loads
    assert TrainConfig.from_record(config.fields()) == config
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    args = sub.choices["train"].parse_args(["--out", "x", "--sal"])
    same = ("dataset", "data_dir", "poison", "poison_fraction", "unpaired", "model", "width", "recipe", "epochs")
    same += ("batch_size", "lr", "seed", "subset", "subset_seed", "eval_batch_size", "compile", "device", "precision")
    assert {k: getattr(args, k) for k in same} == {k: getattr(config, k) for k in same}
    assert (args.no_channels_last, args.defense, args.data_option) == (not config.channels_last, config.defense, None)
    assert [p.config for p in sal_probes(args)] == [SALConfig()]


def test_every_default_of_train_craft_and_import_shows_in_help():
    import argparse

    from uebench.cli import build_parser
    from uebench.cli.reference import _help_text

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("train", "craft", "import"):
        p = sub.choices[name]
        for a in p._actions:
            if a.default in (None, False, argparse.SUPPRESS) or isinstance(a, argparse._HelpAction):
                continue
            text = _help_text(a, p.prog)
            shown = f"{a.default:g}" if isinstance(a.default, float) else str(a.default)
            assert "default" in text and shown in text, (name, a.option_strings, text)


def test_a_run_folder_of_the_old_defaults_reads_back_and_resumes_as_it_was_written(tmp_path):
    """Before 0.2.0 train defaulted to width 1.0, recipe paper and scenes `standard`. config.json has always held the
    model, width and recipe, so new defaults change no record; scenes options without a difficulty mean `standard`
    (a config.json that spells it out, as a run given it did, resumes too)."""
    sized = {"n_train": 64, "n_test": 32}
    config = tiny_config(epochs=2, batch_size=32, dataset_options={**sized, "difficulty": "standard"})
    assert {"model", "width", "recipe"} <= set(TrainConfig().fields())
    whole = train(config, tmp_path / "whole", progress=False)
    saved = json.loads((tmp_path / "whole" / "config.json").read_text())
    assert saved["dataset_options"] == sized  # as a run of scenes' default wrote it before 0.2.0
    back = TrainConfig.from_record({k: v for k, v in saved.items() if k != "resolved_recipe"})
    assert back == config and json.loads(json.dumps(back.to_dict())) == saved
    old_default = {**back.fields(), "width": 1.0, "recipe": "paper", "epochs": None, "batch_size": None}
    paper = TrainConfig.from_record(old_default)  # a run of the old defaults reads back as one
    assert (paper.width, paper.recipe, paper.resolved_recipe().epochs) == (1.0, "paper", 50)
    natural = dataclasses.replace(config, dataset_options=sized)  # today's default: other images, another run
    with pytest.raises(UserError, match=r"another configuration \(differs in: dataset_options\)"):
        train(natural, tmp_path / "whole", resume=True, progress=False)

    train(config, tmp_path / "cut", progress=False, stop_after=1)
    old = {**saved, "dataset_options": {**sized, "difficulty": "standard"}}  # the spelling of a run given it
    (tmp_path / "cut" / "config.json").write_text(json.dumps(old))
    resumed = train(config, tmp_path / "cut", resume=True, progress=False)
    assert same_weights(whole.model, resumed.model) and len(resumed.history) == 2
    assert json.loads((tmp_path / "cut" / "config.json").read_text()) == old  # kept as it was written


# ---- batch augmentation ----------------------------------------------------------------------------------
def test_crop_is_a_shifted_window_with_zero_padding():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) + 1
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_augmentation_is_seeded():
    x = torch.rand(16, 3, 32, 32)
    assert torch.equal(crop_flip(x, epoch_generator(0, 3)), crop_flip(x, epoch_generator(0, 3)))
    assert not torch.equal(crop_flip(x, epoch_generator(0, 3)), crop_flip(x, epoch_generator(0, 4)))


def test_recipes():
    paper = RECIPES.get("paper")
    assert (paper.epochs, paper.batch_size, paper.lr, paper.momentum, paper.weight_decay) == (50, 256, 0.1, 0.9, 5e-4)
    assert paper.lr_at(0) == paper.lr_at(49) == 0.1 and paper.augment == "crop_flip"
    cos = RECIPES.get("em")
    assert cos.lr_at(0) == pytest.approx(0.1) and cos.lr_at(30) == pytest.approx(0.05)
    quick, bare = RECIPES.get("quick"), RECIPES.get("cpu")
    assert bare.augment == "none" and bare.to_dict() | {
        "name": "quick",
        "augment": "crop_flip",
        "description": "",
    } == quick.to_dict() | {"description": ""}
    ap = RECIPES.get("apbench")  # APBench's MultiStepLR([100, 200, 300], gamma=0.5), batch 256
    assert ap.batch_size == 256 and ap.epochs == 200
    assert ap.lr_at(99) == pytest.approx(0.1) and ap.lr_at(100) == pytest.approx(0.05) == ap.lr_at(199)
    vit = RECIPES.get("apbench-vit")  # APBench trains vit and cait with Adam, no weight decay, the same schedule
    assert vit.optimizer == "adam" and vit.weight_decay == 0 and vit.lr_at(100) == pytest.approx(vit.lr / 2)
    assert "optimizer" not in paper.to_dict() and vit.to_dict()["optimizer"] == "adam"  # sgd stays out of old keys


def test_adam_recipe_trains_a_vit_with_adam():
    from uebench.training.trainer import make_optimizer

    model = create_model("vit_small", num_classes=10, in_channels=3, image_size=32, width=0.125)
    opt = make_optimizer(model, RECIPES.get("apbench-vit"))
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["lr"] == 1e-3 and opt.defaults["weight_decay"] == 0
    result = train(tiny_config(model="vit_small", width=0.125, recipe="apbench-vit", epochs=1), progress=False)
    assert result.history[0]["train_loss"] > 0 and math.isfinite(result.history[0]["train_loss"])
    with pytest.raises(UserError, match="unknown optimizer 'lion'"):
        dataclasses.replace(RECIPES.get("paper"), optimizer="lion")


def test_crop_recipe_never_mirrors_and_unknown_augment_is_refused():
    from uebench.core.errors import UserError
    from uebench.data.augment import AUGMENTATIONS
    from uebench.training.recipes import Recipe

    # a left-right ramp: a crop keeps it increasing along the width, a flip would reverse it
    x = torch.arange(32.0).expand(64, 3, 32, 32).clone() + 1
    out = AUGMENTATIONS[RECIPES.get("quick-crop").augment](x, torch.Generator().manual_seed(0))
    inner = out[:, :, 4:-4, 4:-4]
    assert (inner.diff(dim=3) > 0).all()  # never mirrored
    assert not torch.equal(out, x)  # but shifted
    assert AUGMENTATIONS[RECIPES.get("cpu").augment] is None
    with pytest.raises(UserError, match="unknown augment 'rotate'"):
        Recipe("bad", 1, 8, 0.1, augment="rotate")


def test_precision_auto_never_picks_slow_bf16():
    from uebench.core.runtime import fast_bf16

    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if fast_bf16(torch.device("cpu")) else "fp32")
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(UserError, match="fp16 .* is for CUDA devices"):
        resolve_precision("fp16", torch.device("cpu"))


def test_eval_batch_changes_memory_not_results_and_old_configs_keep_their_keys():
    from uebench.training.trainer import ADDED_LATER

    a = train(tiny_config(epochs=1, precision="fp32"), progress=False)
    b = train(tiny_config(epochs=1, precision="fp32", eval_batch_size=7), progress=False)
    assert a.history[0]["test_acc"] == b.history[0]["test_acc"]
    assert abs(a.history[0]["test_loss"] - b.history[0]["test_loss"]) < 1e-5
    plain = tiny_config().fields()
    assert not set(ADDED_LATER) & set(plain)  # unset, they are not in config.json: older run folders still match
    assert tiny_config(eval_batch_size=7).fields()["eval_batch_size"] == 7
    with pytest.raises(UserError, match="--eval-batch-size"):
        train(tiny_config(eval_batch_size=0), progress=False)


@pytest.mark.slow
def test_compiled_forward_trains_like_the_eager_one():
    eager = train(tiny_config(epochs=1, precision="fp32"), progress=False)
    compiled = train(tiny_config(epochs=1, precision="fp32", compile=True), progress=False)
    a, b = eager.history[0], compiled.history[0]
    assert abs(a["train_loss"] - b["train_loss"]) < 0.03 * abs(a["train_loss"])  # fused kernels round otherwise
    assert abs(a["test_acc"] - b["test_acc"]) <= 5.0
    assert set(compiled.model.state_dict()) == set(eager.model.state_dict())  # no _orig_mod. prefix in checkpoints


# ---- bad input: one line, exit status 2, nothing overwritten ---------------------------------------------
def run_cli(args, capsys):
    code = cli_main(args)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--dataset", "nope"], "unknown dataset 'nope'; valid:"),
        (["--model", "nope"], "unknown model 'nope'; valid:"),
        (["--recipe", "nope"], "unknown recipe 'nope'; valid:"),
        (["--precision", "fp8"], "unknown precision"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent"], "data_batch_1"),
        (["--epochs", "0"], "epochs"),
    ],
)
def test_bad_names_one_line_exit_2(args, needle, capsys, tmp_path):
    code, err = run_cli(["train", *args, "--out", str(tmp_path / "r"), "--quiet"], capsys)
    assert code == 2
    assert needle in err and len(err.splitlines()) == 1


def test_finished_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--model",
        "resnet18",
        "--width",
        "0.125",
        "--recipe",
        "quick",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--data-option",
        "n_train=128",
        "--data-option",
        "n_test=64",
        "--out",
        str(out),
        "--quiet",
    ]
    assert cli_main(args) == 0
    before = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    code, err = run_cli(args, capsys)
    assert code == 2 and "already holds a finished run" in err
    assert (out / "checkpoint.pt").read_bytes() == before
    code, err = run_cli([*args[:-3], "--epochs", "2", "--out", str(out), "--resume", "--quiet"], capsys)
    assert code == 2 and "another configuration" in err and "epochs" in err
    assert cli_main([*args, "--overwrite"]) == 0


def test_resume_alone_continues_the_run_as_recorded_and_a_differing_flag_is_refused(tmp_path, capsys):
    """`train --resume --out DIR` alone continues a killed run with its config.json's settings and ends where the
    uninterrupted run ends; a flag beside --resume that differs from the record (--epochs: a run is not extended) is
    refused in one line naming it, the same flags as the record resume, and a folder with no run has nothing to
    resume."""
    import os

    from uebench.training.records import load_checkpoint

    flags = ["--width", "0.125", "--recipe", "quick", "--epochs", "2", "--batch-size", "64", "--seed", "3"]
    flags += ["--data-option", "n_train=128", "--data-option", "n_test=64", "--quiet"]
    cut, whole = tmp_path / "cut", tmp_path / "whole"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UEBENCH_KILL_AFTER_EPOCH": "1"}
    killed = subprocess.run(
        [sys.executable, "-m", "uebench.cli", "train", *flags, "--out", str(cut)],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode != 0 and len(load_checkpoint(cut / "checkpoint.pt")["history"]) == 1
    code, err = run_cli(["train", "--resume", "--out", str(cut), "--epochs", "3", "--quiet"], capsys)
    assert code == 2 and "--epochs" in err and "another configuration" in err and len(err.splitlines()) == 1
    code, err = run_cli(["train", "--resume", "--out", str(cut), "--width", "0.25", "--seed", "3"], capsys)
    assert code == 2 and "--width" in err and "--seed" not in err  # only the flags that differ are named
    assert cli_main(["train", "--resume", "--out", str(cut), "--quiet"]) == 0
    assert cli_main(["train", *flags, "--out", str(whole)]) == 0
    a, b = load_checkpoint(cut / "checkpoint.pt"), load_checkpoint(whole / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys() and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert json.loads((cut / "config.json").read_text()) == json.loads((whole / "config.json").read_text())
    assert cli_main(["train", *flags, "--out", str(whole), "--resume"]) == 0  # the whole command line, as before
    capsys.readouterr()
    code, err = run_cli(["train", "--resume", "--out", str(tmp_path / "none"), "--quiet"], capsys)
    assert code == 2 and "nothing to resume" in err


def test_resume_alone_of_a_sal_run_asks_for_its_sal_options(tmp_path, capsys):
    """config.json does not hold the SAL probe: a bare --resume of a probed run is refused rather than continued
    without probes; with --sal and its options it continues."""
    flags = ["--width", "0.125", "--recipe", "quick", "--epochs", "1", "--batch-size", "64", "--quiet"]
    flags += ["--data-option", "n_train=64", "--data-option", "n_test=32"]
    sal = ["--sal", "--sal-every", "1", "--sal-subset", "8", "--sal-rounds", "1", "--sal-layers", "conv1"]
    run = tmp_path / "run"
    assert cli_main(["train", *flags, *sal, "--out", str(run)]) == 0
    capsys.readouterr()
    code, err = run_cli(["train", "--resume", "--out", str(run), "--quiet"], capsys)
    assert code == 2 and "probed SAL (fast mode) in 1 epoch(s)" in err and len(err.splitlines()) == 1
    assert cli_main(["train", "--resume", "--out", str(run), *sal, "--quiet"]) == 0  # finished: nothing to train


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, err = run_cli(
        [
            "train",
            "--epochs",
            "1",
            "--data-option",
            "n_train=64",
            "--data-option",
            "n_test=32",
            "--out",
            str(blocker / "run"),
            "--quiet",
        ],
        capsys,
    )
    assert code == 2 and "cannot write to output folder" in err


def test_poison_for_another_dataset_is_refused(tmp_path, capsys):
    other = load("scenes", split="train", n_train=64, n_test=32)
    Poison(other.images, other.labels, torch.arange(64), PoisonMeta("x", "cifar10", 64, "none", 0.0)).save(
        tmp_path / "p.safetensors"
    )
    code, err = run_cli(
        [
            "train",
            "--data-option",
            "n_train=64",
            "--data-option",
            "n_test=32",
            "--poison",
            str(tmp_path / "p.safetensors"),
            "--out",
            str(tmp_path / "r"),
            "--quiet",
        ],
        capsys,
    )
    assert code == 2 and "does not match dataset scenes/train" in err
    (tmp_path / "bad.safetensors").write_bytes(b"not a poison")
    code, err = run_cli(
        [
            "train",
            "--data-option",
            "n_train=64",
            "--poison",
            str(tmp_path / "bad.safetensors"),
            "--out",
            str(tmp_path / "r2"),
            "--quiet",
        ],
        capsys,
    )
    assert code == 2 and "not a uebench poison file" in err


def test_version_and_no_traceback_from_subprocess():
    out = subprocess.run([sys.executable, "-m", "uebench.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("uebench ")
    out = subprocess.run(
        [sys.executable, "-m", "uebench.cli", "train", "--model", "nope", "--out", "/tmp/never"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_every_option_of_every_command_has_help_and_old_spellings_still_parse():
    import argparse

    from uebench.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {a.option_strings or a.dest}"
        for name, p in sub.choices.items()
        for a in p._actions
        if not isinstance(a, argparse._HelpAction) and not a.help
    ]
    assert not missing, missing
    old = parser.parse_args(
        ["train", "--set", "n_train=8", "--train-subset", "4", "--defense-set", "q=1", "--out", "x"]
    )
    new = parser.parse_args(
        ["train", "--data-option", "n_train=8", "--subset", "4", "--defense-option", "q=1", "--out", "x"]
    )
    assert (old.data_option, old.subset, old.defense_option) == (new.data_option, new.subset, new.defense_option)
    assert {"models", "recipes", "sal-sweep"} <= set(sub.choices)


def test_colour_jitter_ops_on_cases_worked_by_hand():
    from uebench.data.augment import _brightness, _contrast, _hue, _saturation, color_jitter, hsv_to_rgb, rgb_to_hsv

    one = torch.ones(1, 1, 1, 1)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert torch.allclose(_hue(red, one / 3), torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1), atol=1e-6)  # 120 deg
    assert torch.allclose(_hue(red, -one / 3), torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1), atol=1e-6)
    x = torch.tensor([0.2, 0.4, 0.8]).view(1, 3, 1, 1).expand(1, 3, 2, 2).clone()
    assert torch.allclose(_brightness(x, one * 0.5), x * 0.5)
    luma = 0.2989 * 0.2 + 0.587 * 0.4 + 0.114 * 0.8
    assert torch.allclose(_saturation(x, one * 0), torch.full_like(x, luma), atol=1e-6)  # factor 0: grey
    assert torch.allclose(_contrast(x, one * 0), torch.full_like(x, luma), atol=1e-6)  # factor 0: the mean grey
    assert torch.allclose(_saturation(x, one * 2), (2 * x - luma).clamp(0, 1), atol=1e-6)
    rgb = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(rgb)), rgb, atol=1e-6)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, b = color_jitter(rgb, g1), color_jitter(rgb, g2)
    assert torch.equal(a, b) and not torch.equal(a, rgb) and a.min() >= 0 and a.max() <= 1
