"""What a newcomer trips over first (issue 31, item 8): ImageDataset as a torch Dataset, norms in any case, "did you
mean", --resume and --out refusals, poisons tied to their dataset's options, and the report's figures and numbers."""

from __future__ import annotations

import os
from dataclasses import fields, replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from uebench.cli import main
from uebench.core.errors import UserError, unknown_name
from uebench.data import load, seeded_subset
from uebench.poisons.poison import Poison

SCENES = ["--dataset", "scenes", "--data-option", "n_train=40", "--data-option", "n_test=10", "--quiet"]
SCENES += ["--data-option", "difficulty=standard"]  # the images the checks below were written on


@pytest.fixture(scope="module")
def scenes():
    return load("scenes", n_train=40, n_test=10, difficulty="standard")


@pytest.fixture(scope="module")
def ops(scenes) -> Poison:
    from uebench.attacks import craft

    return craft("ops", scenes, progress=False)


def refused(capsys, argv: list, needle: str) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
    return err


# ---- 1. ImageDataset is a torch Dataset; subset(n) is the CLI's seeded draw ------------------------------------------
def test_image_dataset_feeds_a_dataloader(scenes):
    image, label = scenes[3]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and label == int(scenes.labels[3])
    assert type(label) is int
    x, y = next(iter(DataLoader(scenes, batch_size=4)))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8 and torch.equal(y, scenes.labels[:4])
    assert sum(len(b[1]) for b in DataLoader(scenes, batch_size=16)) == len(scenes)
    with pytest.raises(IndexError):
        scenes[len(scenes)]


def test_subset_of_n_is_the_seeded_draw_and_positions_still_work(scenes):
    assert torch.equal(scenes.subset(16).indices, seeded_subset(scenes, 16, seed=0).indices)
    assert torch.equal(scenes.subset(16, seed=3).indices, seeded_subset(scenes, 16, seed=3).indices)
    assert not torch.equal(scenes.subset(16, seed=3).indices, scenes.subset(16).indices)
    assert scenes.subset([5, 2]).indices.tolist() == [5, 2]
    assert scenes.subset(torch.tensor([1, 7])).indices.tolist() == [1, 7]
    for bad in (0, -3, 41, True, 2.5, [0.5]):
        with pytest.raises(UserError):
            scenes.subset(bad)


# ---- 2. norms in any case --------------------------------------------------------------------------------------------
def test_import_takes_a_norm_in_any_case(ops, tmp_path, capsys):
    np.savez(tmp_path / "p.npz", images=ops.images.numpy(), indices=ops.indices.numpy())
    for norm in ("L0", "l0"):
        out = tmp_path / f"{norm}.safetensors"
        argv = ["import", *SCENES, "--from", tmp_path / "p.npz", "--attack-name", "x", "--norm", norm]
        assert main([str(a) for a in [*argv, "--budget", "1", "--out", out]]) == 0, capsys.readouterr().err
        assert Poison.load(out).meta.norm == "l0"


# ---- 3. did you mean -------------------------------------------------------------------------------------------------
def test_a_misspelt_name_gets_a_suggestion(capsys, tmp_path):
    from uebench.attacks import ATTACKS

    assert str(unknown_name("attack", "lps", ATTACKS.names())).startswith("unknown attack 'lps'; did you mean 'lsp'? ")
    assert "did you mean" not in str(unknown_name("attack", "zzz", ATTACKS.names()))
    refused(capsys, ["craft", "--attack", "lps", *SCENES, "--out", tmp_path / "p.safetensors"], "did you mean 'lsp'?")
    refused(capsys, ["train", "--model", "resnet-18", "--out", tmp_path / "r"], "did you mean 'resnet18'?")
    refused(capsys, ["train", "--recipe", "papr", "--out", tmp_path / "r"], "did you mean 'paper'?")
    refused(capsys, ["train", "--dataset", "cifar-10", "--out", tmp_path / "r"], "did you mean 'cifar10'?")
    with pytest.raises(UserError, match="did you mean 'n_train'"):
        load("scenes", n_trian=10)
    refused(capsys, ["bench", "--defenses", "nnoe", "--plan"], "did you mean 'none'?")  # none is no registered defense
    cifar = ["--dataset", "cifar10", "--data-dir", tmp_path / "none", "--data-option", "n_train=100"]
    refused(capsys, ["train", *cifar, "--out", tmp_path / "r"], "use --subset N")  # scenes' size is a subset here


def test_a_flag_is_never_a_prefix_of_another_and_a_close_one_is_suggested(capsys, tmp_path):
    """argparse's prefix matching read `bench --seed 3` as `--seeds 3`: seeds 0, 1 and 2, not seed 3."""
    refused(capsys, ["bench", "--seed", "3", "--plan"], "unrecognized arguments: --seed 3; did you mean '--seeds'?")
    refused(capsys, ["train", "--seeds", "3", "--out", tmp_path / "r"], "did you mean '--seed'?")
    refused(capsys, ["bench", "--sal-sub", "64", "--plan"], "uebench bench: unrecognized arguments: --sal-sub 64")
    refused(capsys, ["bench", "--seed=3", "--plan"], "did you mean '--seeds'?")


# ---- 4. --resume with nothing to resume; an --out that is not a folder of its own ------------------------------------
def test_resume_refuses_a_folder_without_a_run(tmp_path, capsys):
    from uebench.training.records import run_started

    refused(capsys, ["train", *SCENES, "--out", tmp_path / "none", "--resume"], "nothing to resume")
    assert not (tmp_path / "none").exists()
    (tmp_path / "empty").mkdir()
    refused(capsys, ["train", *SCENES, "--out", tmp_path / "empty", "--resume"], "holds no run")
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / ".uebench.lock").write_text("")  # a run killed before its first record
    assert run_started(tmp_path / "killed") and not run_started(tmp_path / "empty")


def test_out_that_is_the_working_directory_or_above_or_home_is_refused(ops, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    ops.save(tmp_path / "p.safetensors")
    for out, what in ((".", "the working directory"), ("..", "a parent"), ("/", "a parent"), ("~", "home")):
        refused(capsys, ["train", *SCENES, "--out", out], what)
        refused(capsys, ["export", "--poison", tmp_path / "p.safetensors", "--out", out], what)
        for command in ("bench", "crosstask", "landscape"):  # every command that writes a folder of its own
            refused(capsys, [command, "--out", out], what)
    assert sorted(os.listdir(work)) == []


# ---- 5. a poison file is named .safetensors --------------------------------------------------------------------------
def test_craft_and_import_refuse_an_out_of_another_suffix(ops, tmp_path, capsys):
    refused(capsys, ["craft", "--attack", "ops", *SCENES, "--out", tmp_path / "x.npy"], "name it ")
    err = refused(capsys, ["craft", "--attack", "ops", *SCENES, "--out", tmp_path / "x.npy"], "x.safetensors")
    assert "x.npy" in err
    np.savez(tmp_path / "p.npz", images=ops.images.numpy(), indices=ops.indices.numpy())
    argv = ["import", *SCENES, "--from", tmp_path / "p.npz", "--attack-name", "x", "--norm", "l0", "--budget", "1"]
    refused(capsys, [*argv, "--out", tmp_path / "p"], "p.safetensors")
    assert not list(tmp_path.glob("x*")) and not (tmp_path / "p").exists()


# ---- 6. a poison records its dataset's options -----------------------------------------------------------------------
def test_a_poison_for_other_dataset_options_is_refused_as_such(ops, scenes, tmp_path):
    assert ops.meta.extra["dataset_options"]["difficulty"] == "standard"
    natural = load("scenes", n_train=40, n_test=10, difficulty="natural")
    with pytest.raises(UserError) as e:
        ops.apply(natural)
    assert "crafted on scenes {'difficulty': 'standard'}, this dataset is scenes {'difficulty': 'natural'}" in str(
        e.value
    )
    # the test split's size does not make the training split
    ops.check(load("scenes", n_train=40, n_test=20, difficulty="standard"))
    ops.save(tmp_path / "new.safetensors")
    assert Poison.load(tmp_path / "new.safetensors").meta.extra["dataset_options"]["n_train"] == 40


@pytest.mark.parametrize("recorded", [{}, None], ids=["empty", "absent"])
def test_a_poison_written_before_options_were_recorded_loads_as_before(ops, scenes, tmp_path, recorded):
    extra = {k: v for k, v in ops.meta.extra.items() if k != "dataset_options"}
    old = replace(ops, meta=replace(ops.meta, extra=extra if recorded is None else {**extra, "dataset_options": {}}))
    old.save(tmp_path / "old.safetensors")
    back = Poison.load(tmp_path / "old.safetensors")  # its content hash verifies
    assert back.content_hash() == old.content_hash()
    back.check(scenes)
    natural = load("scenes", n_train=40, n_test=10, difficulty="natural")
    with pytest.raises(UserError) as e:  # as before: no options to compare, the images tell
        back.check(natural)
    assert "crafted on" not in str(e.value)


# ---- 7. figures and the report's numbers -----------------------------------------------------------------------------
def test_text_colour_follows_the_cell_luminance():
    from uebench.report.plotting import text_color

    assert text_color((0.0, 0.0, 0.3, 1.0)) == "white" and text_color((0.4, 0.0, 0.0)) == "white"
    assert text_color((1.0, 1.0, 0.8)) == "black" and text_color((0.9, 0.9, 0.9, 1.0)) == "black"


def test_a_one_pixel_perturbation_is_scaled_and_marked():
    from uebench.report.bench_figures import perturbation_panel

    clean = torch.full((3, 32, 32), 100, dtype=torch.uint8)
    poisoned = clean.clone()
    poisoned[:, 4, 7] = 103  # three grey levels: invisible at any fixed magnification
    panel, mag, marks = perturbation_panel(clean, poisoned)
    assert float(panel.max()) == 1.0 and float(panel.min()) == 0.5 and marks == [[4, 7]]
    assert mag == pytest.approx(255 / 6)
    dense = clean.clone()
    dense[:, ::2] += 2
    assert perturbation_panel(clean, dense)[2] == []  # many pixels changed: none circled
    assert perturbation_panel(clean, clean)[1:] == (None, [])


def _crosstask():
    from uebench.report.crosstask_results import CrossTaskResults, DatasetInfo, Similarity, TaskCell, TaskRow

    tasks = ["class", "segment"]
    cells = {
        "clean": TaskCell(80.0, 80.0, {}, [80.0]),
        "ops": TaskCell(40.0, 40.0, {}, [40.0], compared=True, drop=0.5, retained=0.4),
    }
    return CrossTaskResults(
        config={},
        dataset=DatasetInfo("scenes", 96, 48, 10),
        tasks=tasks,
        versions=["clean", "ops"],
        poisons={},
        per_task={t: TaskRow("accuracy", True, 10.0, "labels", True, versions=cells) for t in tasks},
        learned={},
        learned_rule="",
        sal_similarity={"clean": Similarity(["class", "segment"], [[1.0, -0.95], [-0.95, 1.0]])},
        sal_layers=None,
        sal_mode=None,
    )


def test_crosstask_title_fits_and_dark_cells_get_white_numbers():
    from uebench.report.crosstask_figures import draw_retained, draw_similarity
    from uebench.report.plotting import pyplot

    fig = draw_retained(_crosstask())
    fig.canvas.draw()
    title = fig.axes[0].title.get_window_extent()
    assert title.x0 >= 0 and title.x1 <= fig.bbox.x1  # inside the figure: not cut off
    pyplot().close(fig)
    fig = draw_similarity(_crosstask())
    fig.canvas.draw()
    title = fig._suptitle.get_window_extent()
    assert title.x0 >= 0 and title.x1 <= fig.bbox.x1
    colours = {t.get_text(): t.get_color() for t in fig.axes[0].texts}
    assert colours == {"1.00": "white", "-0.95": "white"}  # both ends of RdBu_r are dark
    pyplot().close(fig)


def test_ud_legend_is_outside_every_panel():
    from uebench.report.bench_figures import draw_ud
    from uebench.report.plotting import pyplot

    def row(attack, ud, lo, hi):
        return SimpleNamespace(
            attack=attack, defense="none", seed=0, ud=ud, ud_ci_low=lo, ud_ci_high=hi, ud_eval=ud * 0.9,
            ranked=True, learned="yes",
        )  # fmt: skip

    results = SimpleNamespace(
        config={"seeds": [0], "defenses": ["none"]}, rows=[row("em", 1.9, 1.2, 2.6), row("ops", 2.4, 1.8, 3.0)]
    )
    fig = draw_ud(results)
    fig.canvas.draw()
    (legend,) = fig.legends
    box = legend.get_window_extent()
    assert fig.axes[0].legend_ is None
    assert all(not box.overlaps(ax.get_window_extent()) for ax in fig.axes)
    pyplot().close(fig)


def test_accuracies_have_one_format_across_the_report_tables():
    from uebench.report.bench_page import _runs
    from uebench.report.results import RunRow
    from uebench.report.tables import cell, number

    numbers = {"final_test_acc": 50.0, "peak_test_acc": 62.5, "shortcut_acc": 100.0, "clean_train_acc": 12.25}
    r = RunRow(**{f.name: None for f in fields(RunRow)} | {"train_seconds": 1.0, "sal_seconds": 0.0, **numbers})
    r = replace(
        r, attack="ops", defense="none", seed=0, status="finished", epochs_done=1, epochs=1, run="r", peak_epoch=2
    )
    header, (cells,) = _runs(SimpleNamespace(rows=[r]))
    shown = dict(zip(header, cells))
    agg = SimpleNamespace(mean=lambda m: numbers[m], n=1)
    assert shown["final acc %"] == number(50.0, "final_test_acc") == cell(agg, "final_test_acc", 1) == "50.00"
    assert shown["peak acc % (epoch)"] == "62.50 (2)"
    assert shown["shortcut %"] == cell(agg, "shortcut_acc", 1) == "100.0"
