"""`uebench ud` and `uebench train --sal`: the table, the files, and bad input as one line with exit status 2."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from uebench.cli import main as cli_main

LAYERS = ["conv1", "layer1.0.conv1", "layer1.0.conv2", "linear"]


def write_run(path, sal_rows, *, accs=None, mode="faithful", origin="running", layers=LAYERS):
    """A run folder as the trainer writes it (metrics.jsonl), with SAL records for the given rows."""
    path.mkdir(parents=True, exist_ok=True)
    accs = accs or [10.0 + i for i in range(len(sal_rows))]
    lines = []
    for i, row in enumerate(sal_rows):
        rec = {"epoch": i + 1, "train_loss": 1.0, "test_acc": accs[i]}
        if row is not None:
            rec.update(
                {"sal": dict(zip(layers, map(float, row))), "sal_mode": mode, "sal_origin": origin, "sal_l0": 1.0}
            )
        lines.append(json.dumps(rec, sort_keys=True))
    (path / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    return path


def run_cli(args, capsys):
    code = cli_main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def test_ud_table_json_and_csv(tmp_path, capsys):
    # clean: every epoch has two high layers (1.0) and two low (0.0): beta = 0.5, #LP = 2
    clean = write_run(tmp_path / "clean", [[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1]], accs=[50.0, 90.0, 80.0])
    em = write_run(tmp_path / "em", [[0, 0, 0, 0], [1, 0, 0, 0], [0.4, 0.5, 0, 0]], accs=[20.0, 30.0, 25.0])  # #LP 1/3
    tap = write_run(tmp_path / "tap", [[1, 1, 1, 0], [1, 1, 1, 1]])  # #LP 3.5
    code, out, err = run_cli(["ud", "--clean", clean, "--poisoned", em, tap, "--out", tmp_path / "table"], capsys)
    assert code == 0, err
    assert "beta = 0.5" in out
    summary = json.loads((tmp_path / "table.json").read_text())
    assert summary["beta"] == pytest.approx(0.5) and summary["sal_mode"] == "faithful" and summary["layers"] == LAYERS
    rows = {r["run"]: r for r in summary["rows"]}
    assert rows[str(clean)]["lp"] == pytest.approx(2.0) and rows[str(clean)]["ud"] == 1.0
    assert rows[str(clean)]["final_test_acc"] == 80.0 and rows[str(clean)]["peak_test_acc"] == 90.0
    assert rows[str(em)]["lp"] == pytest.approx(1 / 3) and rows[str(em)]["ud"] == pytest.approx(1 / 6)
    assert rows[str(tap)]["lp"] == pytest.approx(3.5) and rows[str(tap)]["ud"] == pytest.approx(1.75)
    with open(tmp_path / "table.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["run"] for r in table] == [str(clean), str(em), str(tap)]
    assert float(table[1]["ud"]) == pytest.approx(1 / 6) and float(table[1]["final_test_acc"]) == 25.0


def test_ud_skips_epochs_without_sal(tmp_path, capsys):
    # probed every 2 epochs: #LP divides by the probed epochs only
    clean = write_run(tmp_path / "clean", [None, [1, 1, 0, 0], None, [1, 1, 1, 0]])
    poisoned = write_run(tmp_path / "p", [None, [1, 0, 0, 0], None, [0, 0, 0, 0]])
    code, out, err = run_cli(["ud", "--clean", clean, "--poisoned", poisoned, "--out", tmp_path / "t"], capsys)
    assert code == 0, err
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert rows[0]["epochs"] == 2 and rows[1]["lp"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "case, needle",
    [
        ("mismatched", "SAL layers do not match"),
        ("empty", "has no finished epochs"),
        ("no_sal", "has no SAL records (no epoch was probed)"),
        ("missing", "is not a run folder"),
        ("modes", "SAL mode (faithful vs fast); --force compares them anyway"),
        ("flat_clean", "#LP = 0"),
    ],
)
def test_ud_bad_input_is_one_line_exit_2(tmp_path, capsys, case, needle):
    clean_rows = [[1, 1, 0, 0], [0, 1, 1, 0]]
    clean = write_run(tmp_path / "clean", clean_rows)
    poisoned = tmp_path / "p"
    if case == "mismatched":
        write_run(poisoned, clean_rows, layers=["conv1", "layer1.0.conv1", "layer1.0.conv2", "fc"])
    elif case == "empty":
        poisoned.mkdir()
        (poisoned / "metrics.jsonl").write_text("")
    elif case == "no_sal":
        clean = write_run(tmp_path / "clean2", [None, None])
        write_run(poisoned, clean_rows)
    elif case == "modes":
        write_run(poisoned, clean_rows, mode="fast")
    elif case == "flat_clean":
        clean = write_run(tmp_path / "flat", [[0.2] * 4, [0.2] * 4])
        write_run(poisoned, clean_rows)
    code, out, err = run_cli(["ud", "--clean", clean, "--poisoned", poisoned, "--out", tmp_path / "t"], capsys)
    assert code == 2
    assert needle in err and "\n" not in err, err
    assert not (tmp_path / "t.json").exists()


@pytest.mark.parametrize(
    "extra, needle",
    [
        (
            ["--sal-layers", "conv1,layer9.conv"],
            "unknown layer 'layer9.conv' for --sal-layers; valid: conv1, layer1.0.conv1",
        ),
        (["--sal-mode", "quick"], "unknown SAL mode 'quick'; valid: faithful, fast"),
        (["--sal-origin", "test"], "unknown SAL origin 'test'"),
        (["--sal-every", "0"], "--sal-every must be >= 1"),
    ],
)
def test_train_sal_bad_options_fail_before_training(tmp_path, capsys, extra, needle):
    code, out, err = run_cli(
        ["train", "--out", tmp_path / "run", "--width", "0.125", "--sal", *extra, "--quiet"], capsys
    )
    assert code == 2
    assert needle in err and "\n" not in err, err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_train_with_sal_then_ud(tmp_path, capsys):
    args = [
        "train",
        "--width",
        "0.125",
        "--recipe",
        "quick",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--data-option",
        "n_train=32",
        "--data-option",
        "n_test=16",
        "--sal",
        "--sal-mode",
        "fast",
        "--sal-layers",
        "conv1,layer4.1.conv2,linear",
        "--sal-subset",
        "8",
        "--sal-rounds",
        "2",
        "--quiet",
        "--out",
    ]
    code, out, err = run_cli([*args, tmp_path / "run"], capsys)
    assert code == 0, err
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rec = lines[0]
    assert (
        set(rec["sal"]) == {"conv1", "layer4.1.conv2", "linear"}
        and rec["sal_mode"] == "fast"
        and rec["sal_origin"] == "running"
    )
    assert rec["sal_settings"]["subset"] == 8 and all(np.isfinite(list(rec["sal"].values())))
    ud = ["ud", "--clean", tmp_path / "run", "--poisoned", tmp_path / "run", "--out", tmp_path / "ud"]
    code, out, err = run_cli(ud, capsys)  # one epoch on 32 images: the clean run is at chance, no baseline
    assert code == 2 and "is not clearly above chance" in err and not (tmp_path / "ud.json").exists()
    code, out, err = run_cli([*ud, "--force"], capsys)
    assert code == 0, err
    assert "compared with --force although" in out and "not clearly above chance" in out
    rows = json.loads((tmp_path / "ud.json").read_text())["rows"]
    assert rows[1]["ud"] == pytest.approx(1.0)


def _run_with_settings(path, sal_rows, width=0.125, dataset="cifar10", acc=60.0):
    """A run folder with the config and manifest the comparability check reads (10 classes, 1,000 test images)."""
    write_run(path, sal_rows, accs=[acc] * len(sal_rows))
    (path / "config.json").write_text(json.dumps({"dataset": dataset, "model": "resnet18", "width": width}))
    manifest = {"precision": "fp32", "train_set": {"num_classes": 10}, "test_set": {"size": 1000}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def test_ud_refuses_runs_measured_unlike_the_clean_run_and_force_names_the_differences(tmp_path, capsys):
    rows = [[1, 1, 0, 0], [0, 1, 1, 0]]
    clean = _run_with_settings(tmp_path / "clean", rows, width=1.0, dataset="scenes")
    other = _run_with_settings(tmp_path / "other", rows)
    args = ["ud", "--clean", clean, "--poisoned", other, "--out", tmp_path / "t"]
    code, out, err = run_cli(args, capsys)
    assert code == 2 and "\n" not in err
    assert "dataset (scenes vs cifar10)" in err and "width (1.0 vs 0.125)" in err and "--force" in err
    assert not (tmp_path / "t.json").exists()
    code, out, err = run_cli([*args, "--force"], capsys)
    assert code == 0, err
    assert "compared with --force although" in out and "width (1.0 vs 0.125)" in out
    assert json.loads((tmp_path / "t.json").read_text())["forced"]


def test_ud_shows_a_poison_the_model_ignored_as_not_learned(tmp_path, capsys):
    rows = [[1, 1, 0, 0], [0, 1, 1, 0]]
    clean = _run_with_settings(tmp_path / "clean", rows)
    ignored = _run_with_settings(tmp_path / "rem", [[0, 0, 0, 0], [0, 0, 0, 0]])  # UD 0: "the most unlearnable"
    (ignored / "summary.json").write_text(
        json.dumps({"final_shortcut_acc": 2.5, "final_clean_train_acc": 58.0, "final_shortcut_n": 512})
    )
    code, out, err = run_cli(["ud", "--clean", clean, "--poisoned", ignored, "--out", tmp_path / "t"], capsys)
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith(str(ignored)))
    assert "no" in line.split() and "not learned: no UD" in line and "0.000" not in line
    row = json.loads((tmp_path / "t.json").read_text())["rows"][1]
    assert row["learned"] == "no" and row["ud"] == 0.0  # the number stays in the file, beside its verdict


def test_ud_refuses_a_fast_run_of_0_1_0_beside_one_of_todays_step_rule(tmp_path, capsys):
    """A fast record without `step_rule` was measured with the full-batch rule, today's default is sgd: UD would
    divide one estimator's #LP by another's."""
    rows = [[1, 1, 0, 0], [0, 1, 1, 0]]
    old = write_run(tmp_path / "old", rows, mode="fast")
    new = write_run(tmp_path / "new", rows, mode="fast")
    for folder, extra in ((old, {"crossfit": True}), (new, {"crossfit": False, "step_rule": "sgd"})):
        recs = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        for r in recs:
            r["sal_settings"] = {"eps": 0.05, "subset": 256, **extra}
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    code, out, err = run_cli(["ud", "--clean", old, "--poisoned", new, "--out", tmp_path / "t"], capsys)
    assert code == 2
    assert "SAL crossfit (True vs False); SAL step_rule (full vs sgd)" in err, err
