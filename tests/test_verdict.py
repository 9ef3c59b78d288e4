"""Verdicts a reader can trust: was the poison learned, did the clean baseline learn, are two runs comparable."""

from __future__ import annotations

import json
import math

import pytest

import uebench.experiments.crosstask.tasks  # noqa: F401  (registers the tasks)
from uebench.experiments.crosstask.task import TASKS
from uebench.metrics.verdict import baseline_learned, chance_margin, poison_learned
from uebench.report.results import BenchHeader, BenchResults, MeanRow
from uebench.report.tables import FAST_SAL_CAVEAT, NOT_LEARNED, table1, verdict_lines
from uebench.training.comparable import differences


def test_chance_margin_is_three_binomial_standard_errors():
    # p = 1/10, n = 900: sqrt(0.1 * 0.9 / 900) = 0.01, times 3
    assert chance_margin(10, 900) == pytest.approx(0.03)
    assert chance_margin(2, 100) == pytest.approx(3 * 0.05)


@pytest.mark.parametrize(
    "shortcut, clean_train, verdict",
    [
        (84.0, 12.0, "yes"),  # EM on the main job: the perturbation decides
        (55.0, 60.0, "partly"),  # both learned, the content more: not "yes"
        (16.0, 40.0, "partly"),  # above 10% + 3 x 1.33% = 14%: it moves predictions
        (13.0, 45.0, "no"),  # within chance's margin, the content learned: ignored
        (2.5, 47.0, "no"),  # near 0: the model reads the host image's content
        (9.0, 11.0, "unknown"),  # neither learned
        (None, 40.0, "unknown"),  # no shortcut probe (an unpaired poison)
        (float("nan"), 40.0, "unknown"),
    ],
)
def test_poison_verdict_by_hand(shortcut, clean_train, verdict):
    # 10 classes, 512 probed images: chance 10%, margin 3 * sqrt(0.09 / 512) = 1.33 points
    assert poison_learned(shortcut, clean_train, 10, 512) == verdict


@pytest.mark.parametrize(
    "shortcut, clean_train, verdict",
    [
        (7.0, 21.3, "yes"),  # TAP in the cpu preset: no transplantable shortcut, the content held below half of 49.5%
        (49.0, 20.7, "yes"),  # EM there: the shortcut just under half, the content held back as much
        (10.4, 33.2, "partly"),  # REM: 33.2% < 49.5% - 3 x 2.2 points (512 images)
        (1.8, 58.2, "no"),  # DC: the content learned as from clean data
        (2.1, 45.0, "no"),  # within the margin of the clean run's 49.5%
    ],
)
def test_the_clean_runs_accuracy_tells_a_poison_that_holds_the_content_back(shortcut, clean_train, verdict):
    assert poison_learned(shortcut, clean_train, 10, 512, reference=49.5) == verdict


def test_a_reference_at_chance_cannot_make_a_verdict_yes():
    assert poison_learned(2.0, 5.0, 10, 512, reference=12.0) == "unknown"  # half of 12% is below chance


def test_the_margin_shrinks_with_the_probe_size():
    assert poison_learned(12.0, 40.0, 10, 100) == "no"  # 10% + 9%: 12% is noise on 100 images
    assert poison_learned(12.0, 40.0, 10, 20_000) == "partly"  # 10% + 0.6%: on 20,000 it is not


def test_a_clean_run_at_chance_is_no_baseline():
    assert not baseline_learned(8.6, 10, 500)  # the bench at chance
    assert not baseline_learned(13.9, 10, 500)  # 10% + 3 x 1.34% = 14.0%
    assert baseline_learned(14.1, 10, 500)
    assert baseline_learned(30.0, 10, 1017)
    assert not baseline_learned(None, 10, 500)
    assert not baseline_learned(math.inf, 10, 500)


def test_a_task_is_learned_only_when_the_clean_model_beats_the_trivial_predictor():
    cls, depth = TASKS.get("class"), TASKS.get("depth")
    assert not cls.beats_trivial(9.4, 11.7, 500)  # the crosstask run: worse than trivial
    assert not cls.beats_trivial(13.0, 11.7, 500)  # better, but within 3 standard errors (4.3 points)
    assert cls.beats_trivial(59.2, 10.0, 500)
    assert not depth.beats_trivial(0.55, 0.22, 500)  # RMSE: lower is better
    assert not depth.beats_trivial(0.218, 0.22, 500)  # 1% better: not a margin
    assert depth.beats_trivial(0.152, 0.212, 500)


def test_differences_name_each_setting():
    a = {"dataset": "scenes", "width": 1.0, "SAL mode": "fast", "SAL layers": ["conv1", "linear"]}
    b = {"dataset": "cifar10", "width": 0.125, "SAL mode": "fast", "SAL layers": ["conv1"]}
    diff = differences(a, b)
    assert diff[:2] == ["dataset (scenes vs cifar10)", "width (1.0 vs 0.125)"]
    assert diff[2].startswith("SAL layers (2 vs 1")
    assert differences(a, dict(a)) == []


def _results(rows: dict[str, tuple[float, float | None, float | None, float | None, list[str]]]) -> BenchResults:
    """A BenchResults of one seed and no defense: attack -> (acc, shortcut, clean-train, UD, verdicts)."""
    aggregate = [
        MeanRow(
            a,
            "none",
            [0],
            {
                "final_test_acc": (acc, 0.0),
                "shortcut_acc": (sc, 0.0),
                "clean_train_acc": (ct, 0.0),
                "ud": (ud, 0.0),
                "ud_eval": (ud, 0.0),
                "lp": (None if ud is None else 4 * ud, 0.0),
            },
            verdicts,
        )
        for a, (acc, sc, ct, ud, verdicts) in rows.items()
    ]
    config = {"defenses": ["none"], "seeds": [0]}
    return BenchResults(BenchHeader("test", config, {}, None, 10, 500), [], aggregate, [], [], {}, [])


def test_table1_gives_an_ignored_poison_no_ud_and_reads_ud_against_accuracy_from_the_bench():
    res = _results(
        {
            "clean": (50.0, None, None, 1.0, []),
            "em": (12.2, 84.0, 13.0, 0.5, ["yes"]),
            "ops": (20.0, 60.0, 18.0, 0.8, ["yes"]),
            "rem": (47.4, 2.5, 47.0, 0.0, ["no"]),
        }
    )
    header, rows = table1(res)
    assert header == ["method", "acc", "shortcut", "clean-train", "learned", "#LP", "UD"]
    by = {r[0]: r for r in rows}
    assert by["REM"][4:] == ["no", NOT_LEARNED, NOT_LEARNED]  # REM's UD 0.000 is no "most unlearnable"
    assert by["EM"][4] == "yes" and by["EM"][6].startswith("0.500")
    lines = verdict_lines(res)
    assert "EM, OPS learned" in lines[0] and "REM not learned" in lines[0]
    # EM (12.2%) has the lower UD than OPS (20.0%): UD falls with accuracy here, tau +1
    assert "Kendall tau +1.00" in lines[1] and "as the paper reads it" in lines[1]
    res = _results(
        {
            "clean": (50.0, None, None, 1.0, []),
            "em": (12.2, 84.0, 13.0, 3.0, ["yes"]),
            "ops": (20.0, 60.0, 18.0, 2.0, ["yes"]),
        }
    )
    assert "opposite of the paper" in verdict_lines(res)[1]  # the CPU-scale finding: UD rises as accuracy falls


def test_the_page_says_how_far_one_layer_moves_a_ud_and_when_the_clean_lp_is_too_small():
    rows = {"clean": (50.0, None, None, 1.0, []), "em": (12.2, 84.0, 13.0, 0.5, ["yes"])}
    said = [line for line in verdict_lines(_results(rows)) if "clean run's #LP" in line]
    assert said == [  # clean #LP 4.0 (the fixture's lp = 4 x UD): one layer per epoch is a quarter of a UD
        "UD divides by the clean run's #LP, 4.0 layers above beta per probed epoch: one more such layer per epoch in "
        "a poisoned run moves its UD by 0.25."
    ]
    small = _results({**rows, "clean": (50.0, None, None, 0.3, [])})  # clean #LP 1.2
    (line,) = [line for line in verdict_lines(small) if "clean run's #LP" in line]
    assert (
        "1.2 layers" in line and "moves its UD by 0.83; a denominator this small makes every UD here unstable" in line
    )
    ignored = _results({"clean": (50.0, None, None, 0.3, []), "rem": (47.4, 2.5, 47.0, 0.0, ["no"])})
    assert not [line for line in verdict_lines(ignored) if "clean run's #LP" in line]  # no UD is read


def test_a_ud_from_fast_sal_says_how_far_it_was_validated():
    rows = {"clean": (50.0, None, None, 1.0, []), "em": (12.2, 84.0, 13.0, 0.5, ["yes"])}
    fast, faithful = _results(rows), _results(rows)
    fast.config["sal"], faithful.config["sal"] = {"mode": "fast"}, {"mode": "faithful"}
    assert FAST_SAL_CAVEAT in verdict_lines(fast)
    assert FAST_SAL_CAVEAT not in verdict_lines(faithful)
    ignored = _results({"clean": (50.0, None, None, 1.0, []), "rem": (47.4, 2.5, 47.0, 0.0, ["no"])})
    ignored.config["sal"] = {"mode": "fast"}
    assert FAST_SAL_CAVEAT not in verdict_lines(ignored)  # no UD is read: nothing to qualify


def test_seeds_that_disagree_make_a_partly_verdict():
    row = MeanRow("ops", "none", [0, 1, 2], {}, ["yes", "no", "no"])
    assert row.learned == "partly"
    assert MeanRow("x", "none", [0, 1], {}, ["no", "unknown"]).learned == "unknown"
    assert MeanRow("x", "none", [0, 1], {}, ["no", "no"]).learned == "no"


def _cli(args, capsys):
    from uebench.cli import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


SCENES = ["--dataset", "scenes", "--data-option", "n_train=64", "--data-option", "n_test=32"]


def test_a_poison_that_covers_part_of_the_trained_images_is_refused_unless_asked_for(tmp_path, capsys):
    poison = tmp_path / "lsp.safetensors"
    code, _, err = _cli(["craft", "--attack", "lsp", *SCENES, "--subset", "32", "--out", poison, "--quiet"], capsys)
    assert code == 0, err
    train = ["train", *SCENES, "--poison", poison, "--width", "0.125", "--epochs", "1", "--quiet"]
    # crafted on one subset of 32, trained on another: a few images carry it by accident
    code, _, err = _cli([*train, "--subset", "32", "--subset-seed", "1", "--out", tmp_path / "a"], capsys)
    assert code == 2 and "\n" not in err and "of the 32 training images" in err and "--poison-fraction" in err
    assert not (tmp_path / "a" / "metrics.jsonl").exists()
    code, _, err = _cli([*train, "--out", tmp_path / "b"], capsys)  # crafted on 32, trained on all 64
    assert code == 2 and "50.0% of the 64 training images (32)" in err
    code, _, err = _cli([*train, "--subset", "32", "--out", tmp_path / "c"], capsys)  # the images it was crafted on
    assert code == 0, err
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["train_set"]["poison_fraction"] == 1.0
    code, _, err = _cli([*train, "--poison-fraction", "1", "--out", tmp_path / "d"], capsys)  # on purpose
    assert code == 0, err
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["train_set"]["poison_fraction"] == 0.5  # the share of the trained images, not of the split


def test_a_sal_schedule_that_probes_no_epoch_is_refused_before_any_work(tmp_path, capsys):
    code, _, err = _cli(
        ["train", *SCENES, "--sal", "--sal-every", "3", "--epochs", "2", "--out", tmp_path / "r"], capsys
    )
    assert code == 2 and "no epoch would be probed" in err and not (tmp_path / "r").exists()
    code, _, err = _cli(["bench", "--preset", "quick", "--epochs", "2", "--out", tmp_path / "b"], capsys)
    assert code == 2 and "SAL is probed every 3 epochs but the run trains 2" in err and not (tmp_path / "b").exists()


def test_the_setting_line_names_the_fast_step_rule_an_old_folder_ran_with():
    from uebench.report.tables import _corrections

    assert _corrections({"crossfit": True, "anchor": True}) == ", full-batch steps, cross-fitted and anchored"
    assert _corrections({"step_rule": "sgd", "crossfit": False, "anchor": True}) == ", minibatch steps, anchored"
    assert _corrections({"step_rule": "sgd", "crossfit": False, "anchor": False}) == ", minibatch steps, no corrections"
