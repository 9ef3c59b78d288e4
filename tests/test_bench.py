"""`uebench bench` and `uebench report`: end to end on a tests-sized bench (tiny scenes, width 0.125, two attacks,
two epochs, tiny fast SAL): records, tables and figures agree; reruns compute nothing; an interrupted bench ends as an
uninterrupted one; bad input is one line and exit status 2."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from uebench.cli import main
from uebench.core.errors import UserError
from uebench.experiments.bench.run import PRESETS, QUICK, BenchConfig, SALSettings, make_plan, run_bench, validate
from uebench.metrics import ud_table
from uebench.training.records import load_run_sal

TINY = BenchConfig(
    preset="test",
    dataset="scenes",
    dataset_options={"n_train": 120, "n_test": 60},
    attacks=("ops", "lsp"),
    width=0.125,
    recipe="quick",
    epochs=2,
    batch_size=32,
    defenses=("none", "gray"),
    sal=SALSettings(mode="fast", rounds=1, subset=16),
    precision="fp32",
)
DETERMINISTIC = (
    "attack",
    "defense",
    "seed",
    "status",
    "epochs_done",
    "final_test_acc",
    "peak_test_acc",
    "peak_epoch",
    "final_train_acc",
    "lp",
    "ud",
    "beta",
    "run",
    "poison",
)


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def mtimes(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() and ("runs" in p.parts or "poisons" in p.parts)
    }


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny"
    result = run_bench(TINY, out, progress=False, log=None)
    return out, result


# ---- presets and plan --------------------------------------------------------------------------------------------
def test_presets_are_valid_bench_configs():
    assert set(PRESETS) >= {"quick", "paper", "cpu"}
    for config in PRESETS.values():
        assert isinstance(config, BenchConfig)
        validate(config)  # every attack parameter override names a real parameter
    assert QUICK.dataset == "scenes" and QUICK.attack_preset == "fast" and QUICK.sal.mode == "fast"
    assert set(QUICK.attacks) == {"em", "rem", "tap", "dc", "lsp", "ops", "ar"} and QUICK.width <= 0.25
    # the regime where the poisons are learned at CPU scale (docs/results/efficacy.md): no crop+flip
    cpu = PRESETS["cpu"]
    assert (
        cpu.dataset == "cifar10"
        and cpu.resolved_recipe().augment == "none"
        and QUICK.resolved_recipe().augment == "none"
    )
    assert QUICK.dataset_options["difficulty"] == "natural"  # calibrated against CIFAR-10, unlike `standard`
    assert (
        PRESETS["paper"].width == 1.0
        and PRESETS["paper"].resolved_recipe().epochs == 50
        and PRESETS["paper"].sal.mode == "faithful"
    )
    plan = make_plan(QUICK)
    assert len(plan.runs) == 8 and len(plan.poisons) == 7 and plan.runs[0].attack == "clean"
    # another dataset drops the scenes options and keeps the preset CPU-sized
    c = QUICK.with_dataset("cifar10")
    assert c.dataset_options == {} and c.subset == QUICK.dataset_options["n_train"]


def test_keys_change_with_what_makes_the_artifact():
    a = make_plan(TINY)
    b = make_plan(replace(TINY, attack_params={"lsp": {"patch_size": 4}}))
    runs_a = {r.attack + r.defense: r.dir for r in a.runs}
    runs_b = {r.attack + r.defense: r.dir for r in b.runs}
    assert runs_a["cleannone"] == runs_b["cleannone"] and runs_a["opsnone"] == runs_b["opsnone"]
    assert runs_a["lspnone"] != runs_b["lspnone"]  # another poison -> another run
    assert {p.file for p in a.poisons} != {p.file for p in b.poisons}
    assert make_plan(TINY).runs == a.runs  # stable


def test_the_subset_has_its_own_seed_so_training_seeds_vary_the_noise_only():
    from uebench.experiments.bench.run import _Data

    config = replace(TINY, subset=48, seeds=(0, 1), attacks=("ops",))
    data = _Data(config)
    # seeds 0 and 1 train on the same images; another subset seed draws others
    assert data.subset_for(data.train, 0).indices.tolist() == data.subset_for(data.train, 1).indices.tolist()
    other = _Data(replace(config, subset_seed=5)).subset_for(_Data(config).train, 0).indices.tolist()
    assert other != data.subset_for(data.train, 0).indices.tolist()
    plan = make_plan(config)
    by_seed = {r.seed: r for r in plan.runs if r.attack == "ops"}
    # a seed-0 run is keyed as before the subset had its own seed; seed 1 names the subset seed it now trains on
    assert "subset_seed" not in by_seed[0].train and by_seed[1].train["subset_seed"] == 0
    assert "subset_seed" not in config.identity() and replace(config, subset_seed=5).identity()["subset_seed"] == 5
    # the poison of seed 1 covers the images seed 1 trains on
    from uebench.attacks import craft

    poison = craft("ops", data.train, preset="fast", seed=1, subset=48, subset_seed=0, progress=False)
    assert sorted(poison.indices.tolist()) == sorted(data.subset_for(data.train, 1).indices.tolist())


# ---- end to end ---------------------------------------------------------------------------------------------------
def test_a_clean_run_at_chance_gives_no_ud_and_the_page_says_why(tiny_bench):
    from uebench.metrics.verdict import baseline_learned

    out, _ = tiny_bench  # two epochs on 120 images: the clean runs stay near chance (6.7% and 16.7% here)
    rows = read_csv(out / "results.csv")
    table = (out / "table.md").read_text()
    n_test = json.loads((out / "results.json").read_text())["bench"]["n_test"]
    for clean in (r for r in rows if r["attack"] == "clean"):  # per defense: UD only beside a baseline that learned
        group = [r for r in rows if r["defense"] == clean["defense"]]
        if baseline_learned(float(clean["final_test_acc"]), 10, n_test):
            assert all(r["ud"] != "" for r in group)
        else:
            assert all(r["ud"] == "" and r["lp"] == "" for r in group)
            assert f"defense {clean['defense']}, seed 0: the clean run's final test accuracy" in table
            assert "is not clearly above chance" in table and "did not learn the task" in table
    assert {r["learned"] for r in rows if r["poison"]} <= {"yes", "partly", "no", "unknown"}


@contextlib.contextmanager
def baselines_read_as_learned(out: Path):
    """The tiny bench's clean runs learn nothing (the test above), so it has no UD; to check the plumbing of beta,
    #LP and UD, its report is written as if they had learned, and written back as it is afterwards (the bench
    fixture is shared by the module)."""
    import uebench.report.results as results_module
    from uebench.report.bench_report import write_bench_report

    real = results_module.baseline_learned
    results_module.baseline_learned = lambda *a: True
    try:
        write_bench_report(out)
        yield
    finally:
        results_module.baseline_learned = real
        write_bench_report(out)


def test_end_to_end_records_table_and_figures_agree(tiny_bench):
    out, _ = tiny_bench
    with baselines_read_as_learned(out):
        end_to_end(*tiny_bench)


def end_to_end(out, result):
    assert result.complete and result.epochs_trained == 6 * 2 and len(result.crafted) == 2
    for name in (
        "bench.json",
        "results.json",
        "results.csv",
        "table.md",
        "report.html",
        "sal-heatmaps-none.png",
        "sal-heatmaps-gray.png",
        "sal-heatmaps-eval-none.png",  # the same search under the other origin, beside the running one
        "sal-heatmaps-eval-gray.png",
        "beta-none.png",
        "beta-gray.png",
        "accuracy.png",
        "samples.png",
        "matrix.png",
        "ud.png",
    ):
        assert (out / name).is_file(), name
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_csv(out / "results.csv")
    assert [(r["attack"], r["defense"]) for r in rows] == [
        ("clean", "none"),
        ("clean", "gray"),
        ("ops", "none"),
        ("ops", "gray"),
        ("lsp", "none"),
        ("lsp", "gray"),
    ]
    for r in rows:  # every number in results.csv is the run's own record
        run = out / r["run"]
        summary = json.loads((run / "summary.json").read_text())
        assert (
            float(r["final_test_acc"]) == summary["final_test_acc"]
            and float(r["peak_test_acc"]) == summary["peak_test_acc"]
        )
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert float(r["train_seconds"]) == pytest.approx(sum(h["train_seconds"] for h in history))
        assert all("sal" in h and len(h["sal"]) == 21 for h in history)
        assert json.loads((run / "config.json").read_text())["width"] == 0.125
        if r["poison"]:  # poisoned runs carry the shortcut probe's final numbers; clean runs do not
            assert (out / r["poison"]).is_file()
            assert float(r["shortcut_acc"]) == summary["final_shortcut_acc"] == history[-1]["shortcut_acc"]
        else:
            assert r["shortcut_acc"] == "" and "shortcut_acc" not in history[-1]
    # UD under each defense is measured against the clean run under the same defense
    for defense in ("none", "gray"):
        group = [r for r in rows if r["defense"] == defense]
        clean = load_run_sal(out / group[0]["run"])
        beta, ud_rows = ud_table(clean, [load_run_sal(out / r["run"], layers=clean.layers) for r in group[1:]])
        for r, u in zip(group, ud_rows):
            assert float(r["beta"]) == beta and float(r["lp"]) == u.lp and float(r["ud"]) == u.ud
        # the eval origin: the same search read with L0 = the final weights' loss on the probe data
        clean_eval = load_run_sal(out / group[0]["run"], origin="eval")
        beta_eval, eval_rows = ud_table(
            clean_eval,
            [load_run_sal(out / r["run"], layers=clean_eval.layers, origin="eval") for r in group[1:]],
            bootstrap=0,
        )
        for r, u in zip(group, eval_rows):
            assert float(r["beta_eval"]) == beta_eval and float(r["ud_eval"]) == u.ud and r["sal_offset"] != ""
        for r in group[1:]:  # the bootstrap interval of UD holds the point estimate
            assert float(r["ud_ci_low"]) <= float(r["ud"]) <= float(r["ud_ci_high"])
    # table.md: the Table 1 rows carry the same numbers, and the attack x defense matrix is there
    table = (out / "table.md").read_text()
    ops_none = next(r for r in rows if r["attack"] == "ops" and r["defense"] == "none")
    line = next(ln for ln in table.splitlines() if ln.startswith("| OPS |"))
    assert f"{float(ops_none['final_test_acc']):.2f}" in line and f"{float(ops_none['ud']):.3f}" in line
    assert "| attack | standard | gray |" in table and "same defense" in table
    assert "## Is the poison learned? (shortcut probe" in table
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(list(out.glob("*.png"))) and "<table>" in page
    results = json.loads((out / "results.json").read_text())
    assert len(results["rows"]) == 6 and {b["defense"] for b in results["betas"]} == {"none", "gray"}


def test_rerun_of_a_finished_bench_trains_nothing_and_a_new_attack_only_itself(tiny_bench, tmp_path):
    out, _ = tiny_bench
    before = mtimes(out)
    csv_before = (out / "results.csv").read_text()
    again = run_bench(TINY, out, progress=False, log=None)
    assert again.complete and again.trained == [] and again.crafted == [] and again.epochs_trained == 0
    assert mtimes(out) == before  # no checkpoint, record or poison rewritten
    assert (out / "results.csv").read_text() == csv_before
    # one more attack: only its poison and its runs are computed
    more = run_bench(replace(TINY, attacks=("ops", "lsp", "ar")), out, progress=False, log=None)
    assert [Path(p).name.split("-")[0] for p in more.crafted] == ["ar"]
    assert sorted(Path(r).name.split("-")[0] + "-" + Path(r).name.split("-")[1] for r in more.trained) == [
        "ar-gray",
        "ar-none",
    ]
    assert {k: v for k, v in mtimes(out).items() if k in before} == before
    assert len(read_csv(out / "results.csv")) == 8


def test_interrupted_bench_resumes_to_the_same_results(tiny_bench, tmp_path):
    out, _ = tiny_bench
    config = replace(TINY, attacks=("ops",))
    part = tmp_path / "interrupted"
    first = run_bench(config, part, progress=False, log=None, max_epochs=3)  # stops inside the second run
    assert not first.complete and first.epochs_trained == 3 and not (part / "results.csv").exists()
    unfinished = [r for r in (part / "runs").iterdir() if not (r / "summary.json").exists()]
    assert len(unfinished) == 1 and len((unfinished[0] / "metrics.jsonl").read_text().splitlines()) == 1
    second = run_bench(config, part, progress=False, log=None, max_epochs=2)  # ends the second run, starts the third
    assert not second.complete and second.epochs_trained == 2
    rest = run_bench(config, part, progress=False, log=None)
    assert rest.complete and rest.epochs_trained == 8 - 5
    a = {(r["attack"], r["defense"]): r for r in read_csv(part / "results.csv")}
    b = {(r["attack"], r["defense"]): r for r in read_csv(out / "results.csv")}
    assert set(a) <= set(b)
    for k in a:
        assert {c: a[k][c] for c in DETERMINISTIC} == {c: b[k][c] for c in DETERMINISTIC}, k


def test_seeds_give_mean_and_spread(tmp_path):
    config = replace(TINY, attacks=("ops",), defenses=("none",), seeds=(0, 1), epochs=1)
    result = run_bench(config, tmp_path / "b", progress=False, log=None)
    assert result.complete and len(result.crafted) == 2  # one poison per seed
    rows = read_csv(tmp_path / "b" / "results.csv")
    assert [(r["attack"], r["seed"]) for r in rows] == [("clean", "0"), ("ops", "0"), ("clean", "1"), ("ops", "1")]
    mean = {r["attack"]: r for r in read_csv(tmp_path / "b" / "results-mean.csv")}
    accs = [float(r["final_test_acc"]) for r in rows if r["attack"] == "ops"]
    assert float(mean["ops"]["final_test_acc_mean"]) == pytest.approx(sum(accs) / 2)
    assert float(mean["ops"]["final_test_acc_std"]) == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
    assert mean["ops"]["n"] == "2" and "±" in (tmp_path / "b" / "table.md").read_text()


def test_results_are_typed_records_that_round_trip_through_results_json(tiny_bench):
    out, _ = tiny_bench
    with baselines_read_as_learned(out):
        typed_records(out)


def typed_records(out):
    from uebench.report.results import BenchResults, MeanRow, aggregate, collect

    results = collect(out)
    # (another test of this module may have added an attack to the folder's bench)
    assert all(r.finished for r in results.rows) and results.attacks() == ["clean", *results.config["attacks"]]
    plain = {r.attack: r for r in results.rows if r.defense == "none"}
    clean, ops = plain["clean"], plain["ops"]
    assert clean.ud == 1.0 and clean.beta == results.betas[0].beta and results.betas[0].clean_run == clean.run
    assert results.mean("ops", "none").mean("final_test_acc") == ops.final_test_acc
    assert results.curves[clean.run].epoch == [1, 2]
    on_disk = json.loads((out / "results.json").read_text())
    assert json.loads(json.dumps(results.to_json(), sort_keys=True)) == on_disk
    again = BenchResults.from_json(on_disk)
    assert json.loads(json.dumps(again.to_json())) == on_disk and again.betas == results.betas
    assert again.mean("ops", "none") == results.mean("ops", "none") and again.rows[1].ud == results.rows[1].ud
    # mean and sample std over seeds by hand: UD 10 and 14 -> 12 +- 2*sqrt(2); an unfinished seed does not count
    two = [replace(ops, seed=s, ud=u) for s, u in ((0, 10.0), (1, 14.0))]
    two.append(replace(ops, seed=2, ud=99.0, status="unfinished"))
    (m,) = aggregate(two)
    assert isinstance(m, MeanRow) and m.seeds == [0, 1] and m.mean("ud") == 12.0
    assert m.std("ud") == pytest.approx(2 * 2**0.5) and m.to_dict()["ud_std"] == m.std("ud")
    with pytest.raises(UserError, match="malformed"):
        BenchResults.from_json({"rows": []})


# ---- the command line ---------------------------------------------------------------------------------------------
def test_report_command_rebuilds_from_records(tiny_bench, capsys):
    out, _ = tiny_bench
    before = (out / "results.csv").read_text()
    for name in ("results.csv", "results.json", "table.md", "report.html", "samples.png"):
        (out / name).unlink()
    code, stdout, err = run_cli(["report", str(out)], capsys)
    assert code == 0, err
    assert (out / "results.csv").read_text() == before
    for name in ("results.json", "table.md", "report.html", "samples.png"):
        assert (out / name).is_file()


def test_cli_bench_with_a_user_poison(tmp_path, capsys):
    from uebench.attacks import craft
    from uebench.data import load

    ds = load("scenes", None, "train", n_train=120, n_test=60, difficulty=QUICK.dataset_options["difficulty"])
    craft("ops", ds, preset="fast", seed=3, progress=False).save(tmp_path / "mine.safetensors")
    args = [
        "bench",
        "--data-option",
        "n_train=120",
        "--data-option",
        "n_test=60",
        "--poison",
        str(tmp_path / "mine.safetensors"),
        "--width",
        "0.125",
        "--epochs",
        "1",
        "--sal-every",
        "1",
        "--sal-subset",
        "16",
        "--sal-rounds",
        "1",
        "--out",
        str(tmp_path / "b"),
        "--quiet",
    ]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    rows = read_csv(tmp_path / "b" / "results.csv")
    assert [r["attack"] for r in rows] == ["clean", "ops"] and rows[1]["poison"].startswith("poisons/user-ops-")
    assert "| OPS |" in stdout


def test_user_poisons_of_one_attack_are_labelled_by_their_file_names(tmp_path):
    from uebench.attacks import craft
    from uebench.data import load

    ds = load("scenes", None, "train", n_train=60, n_test=30)
    for name, eps in (("lsp-x1", 6 / 255), ("lsp-x2", 12 / 255)):  # a budget sweep: one attack, two files
        craft("lsp", ds, preset="fast", eps=eps, progress=False).save(tmp_path / f"{name}.safetensors")
    craft("ops", ds, preset="fast", progress=False).save(tmp_path / "mine.safetensors")
    config = replace(
        TINY,
        attacks=("ops",),
        defenses=("none",),
        poisons=tuple(str(tmp_path / f) for f in ("lsp-x1.safetensors", "lsp-x2.safetensors", "mine.safetensors")),
    )
    labels = [p.label for p in make_plan(config).poisons]
    assert labels == [
        "ops",
        "lsp-x1",
        "lsp-x2",
        "mine",
    ]  # a lone file keeps its attack's name unless a crafted one has it
    single = replace(config, attacks=(), poisons=(str(tmp_path / "lsp-x1.safetensors"),))
    assert [p.label for p in make_plan(single).poisons] == ["lsp"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "nope"], "unknown bench preset 'nope'"),
        (["--attacks", "em,nope"], "unknown attack 'nope'"),
        (["--defenses", "none,nope"], "unknown defense 'nope'"),
        (["--attack-option", "em.nope=1"], "has no parameter nope"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        ([], "--out DIR is required"),
        (["--subset-seed", "3"], "--subset-seed draws a --subset or a --poison-fraction"),
        (["--poison-fraction", "0.5,1.5"], "--poison-fraction takes distinct shares in (0, 1]"),
        (["--poison-fraction", "0,1"], "--poison-fraction takes distinct shares in (0, 1]"),
        (["--subset", "40", "--subset-seed", "-1"], "seed"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args, message, tmp_path, capsys):
    full = ["bench", *args] + ([] if message.startswith("--out") else ["--out", str(tmp_path / "b")])
    code, _, err = run_cli(full, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "b").exists()


def test_cli_refuses_poison_for_another_dataset_and_another_bench(tmp_path, capsys, tiny_bench):
    from uebench.attacks import craft
    from uebench.data import load

    other = load("scenes", None, "train", n_train=100, n_test=60)  # another size: not this bench's data
    craft("ops", other, preset="fast", seed=0, progress=False).save(tmp_path / "other.safetensors")
    code, _, err = run_cli(
        [
            "bench",
            "--data-option",
            "n_train=120",
            "--data-option",
            "n_test=60",
            "--poison",
            str(tmp_path / "other.safetensors"),
            "--epochs",
            "1",
            "--sal-every",
            "1",
            "--out",
            str(tmp_path / "b"),
            "--quiet",
        ],
        capsys,
    )
    assert code == 2 and "was made for 100 images" in err and len(err.strip().splitlines()) == 1, err
    # a folder holding a bench of another configuration is refused (no file touched), unless --overwrite
    out, _ = tiny_bench
    before = mtimes(out)
    code, _, err = run_cli(
        [
            "bench",
            "--data-option",
            "n_train=120",
            "--data-option",
            "n_test=60",
            "--attacks",
            "ops",
            "--width",
            "0.25",
            "--epochs",
            "1",
            "--sal-every",
            "1",
            "--out",
            str(out),
            "--quiet",
        ],
        capsys,
    )
    assert (
        code == 2
        and "another configuration" in err
        and "width" in err
        and "--overwrite" in err
        and len(err.strip().splitlines()) == 1
    )
    assert mtimes(out) == before
    code, _, err = run_cli(["bench", "--out", str(tmp_path / "x"), "report"], capsys)  # stray argument
    assert code == 2 and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["report", str(tmp_path / "empty")], capsys)
    assert code == 2 and "holds no bench" in err


def test_overwrite_replaces_a_bench_of_another_configuration(tmp_path):
    config = replace(TINY, attacks=("ops",), defenses=("none",), epochs=1)
    first = run_bench(config, tmp_path / "b", progress=False, log=None)
    assert first.complete
    old_runs = set((tmp_path / "b" / "runs").iterdir())
    from uebench.core.errors import UserError

    with pytest.raises(UserError, match="another configuration"):
        run_bench(replace(config, epochs=2), tmp_path / "b", progress=False, log=None)
    result = run_bench(replace(config, epochs=2), tmp_path / "b", progress=False, log=None, overwrite=True)
    assert result.complete and not (old_runs & set((tmp_path / "b" / "runs").iterdir()))


@pytest.mark.slow
def test_bench_killed_with_sigkill_resumes_to_the_same_results(tmp_path):
    """A real interruption: the CLI is killed (SIGKILL) while it trains, then the same command finishes the bench
    with the numbers of a bench that was never interrupted."""

    def cli(out):
        return [
            sys.executable,
            "-m",
            "uebench.cli",
            "bench",
            "--data-option",
            "n_train=120",
            "--data-option",
            "n_test=60",
            "--attacks",
            "ops,lsp",
            "--defenses",
            "none,gray",
            "--width",
            "0.125",
            "--epochs",
            "3",
            "--out",
            str(out),
            "--quiet",
        ]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cli(tmp_path / "k"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and len(list((tmp_path / "k").glob("runs/*/checkpoint.pt"))) < 3:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "k" / "results.csv").exists()
    for out in (tmp_path / "k", tmp_path / "u"):
        done = subprocess.run(cli(out), env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    a, b = read_csv(tmp_path / "k" / "results.csv"), read_csv(tmp_path / "u" / "results.csv")
    assert [{c: r[c] for c in DETERMINISTIC} for r in a] == [{c: r[c] for c in DETERMINISTIC} for r in b]


def test_seeds_take_a_count_or_a_list():
    from uebench.cli.bench import parse_seeds
    from uebench.core.errors import UserError

    assert parse_seeds("3") == (0, 1, 2) and parse_seeds("0,3,7") == (0, 3, 7) and parse_seeds("5,") == (5,)
    for bad in ("0", "", "a,b", "1,1", "-1,2", "2.5"):
        with pytest.raises(UserError, match="--seeds|seed must"):
            parse_seeds(bad)


def test_partial_poisoning_is_its_own_row_with_a_per_class_share():
    from uebench.attacks import craft
    from uebench.experiments.bench.run import _Data
    from uebench.training.trainer import training_set

    config = replace(TINY, attacks=("ops",), defenses=("none",), poison_fractions=(0.5, 1.0))
    plan = make_plan(config)
    assert [r.attack for r in plan.runs] == ["clean", "ops@0.5", "ops"]
    whole = {r.attack: r.dir for r in make_plan(replace(config, poison_fractions=(1.0,))).runs}
    assert {r.attack: r.dir for r in plan.runs}["ops"] == whole["ops"]  # the whole poison keeps its key
    data = _Data(config)
    poison = craft("ops", data.train, preset="fast", seed=0, progress=False)
    half = poison.fraction(0.5, seed=0)
    for c in range(data.train.num_classes):  # the same share of every class
        n = int((poison.labels == c).sum())
        assert int((half.labels == c).sum()) == max(1, round(0.5 * n))
    assert torch.equal(half.indices, poison.fraction(0.5, seed=0).indices)  # seeded
    assert not torch.equal(half.indices, poison.fraction(0.5, seed=1).indices)
    run = next(r for r in plan.runs if r.attack == "ops@0.5")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        poison.save(f"{d}/ops.safetensors")
        tc = replace(run.train_config(), poison=f"{d}/ops.safetensors")
        ds = training_set(tc, data.train)
    changed = (ds.images != data.train.images).flatten(1).any(1)
    assert int(changed.sum()) == len(half) <= len(poison) // 2 + data.train.num_classes
    with pytest.raises(UserError, match=r"in \(0, 1\]"):
        poison.fraction(0, seed=0)
