"""Progress a person can read: plain lines in a log (no carriage returns, at most one per interval and one at the
end), nothing when quiet, SAL's layers shown while it measures, a bench's runs counted, and `bench --plan`."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from uebench.cli import main
from uebench.core.errors import UserError
from uebench.core.progress import Progress, Tally, clock_time, plain_every, plain_output, progress_bar
from uebench.metrics import ProbeData, SALConfig, model_sal
from uebench.models import create_model, probed_layers
from uebench.training.sal_probe import SALProbe

# the smallest bench of tests/test_bench.py, one attack, one defense, one epoch: a clean run and an OPS run
SMALL = [
    *("--data-option", "n_train=120", "--data-option", "n_test=60", "--attacks", "ops", "--width", "0.125"),
    *("--epochs", "1", "--sal-every", "1", "--sal-subset", "16", "--sal-rounds", "1"),
]


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def run_main(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def plain(monkeypatch):
    monkeypatch.setenv("UEBENCH_PROGRESS", "plain")
    monkeypatch.delenv("UEBENCH_PROGRESS_EVERY", raising=False)


# ---- the plain form --------------------------------------------------------------------------------------------
def test_plain_lines_come_at_most_once_per_interval_and_at_the_end():
    clock, stream = FakeClock(), io.StringIO()
    bar = Progress(400, "train resnet18 on cifar10", every=10, clock=clock, stream=stream)
    printed_at = []
    for step in range(400):
        clock.t += 0.25  # 4 steps a second: 100 s in all
        if step % 40 == 0:
            bar.set_stage(f"epoch {step // 40 + 1}/10")
        if step == 100:  # the latest figures (no line of their own: the last came 5 s before)
            bar.set_postfix(loss="1.234", test="41.2%")
        before = stream.getvalue().count("\n")
        bar.update()
        if stream.getvalue().count("\n") > before:
            printed_at.append(clock.t)
    bar.close()
    text = stream.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and len(lines) == len(printed_at) == 100 / 10  # the last update came as one was due
    assert all(b - a >= 10 for a, b in zip(printed_at, printed_at[1:]))
    assert lines[2] == (
        "train resnet18 on cifar10: epoch 3/10, step 120/400 (30%), 4 step/s, loss 1.234, test 41.2%, elapsed 0:30, "
        "left ~1:10"
    )
    assert lines[-1].startswith("train resnet18 on cifar10: epoch 10/10, step 400/400 (100%), 4 step/s")
    assert "left" not in lines[-1] and lines[-1].endswith("elapsed 1:40")
    bar = Progress(400, "x", every=10, clock=clock, stream=stream)
    clock.t += 5
    bar.update(3)
    bar.close()  # ended between two lines: the end writes one
    assert stream.getvalue().splitlines()[len(lines) :] == ["x: step 3/400 (1%), 1.67 s/step, elapsed 0:05"]


def test_the_environment_chooses_the_form_and_the_interval(monkeypatch, capsys):
    assert plain_output() and plain_every() == 10
    monkeypatch.setenv("UEBENCH_PROGRESS_EVERY", "0")
    bar = progress_bar(True, 3, "read", unit="img")
    for _ in range(3):
        bar.update()
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err and err.splitlines()[0].startswith("read: img 1/3 (33%)") and len(err.splitlines()) == 3
    monkeypatch.setenv("UEBENCH_PROGRESS", "bar")
    assert not plain_output()
    monkeypatch.setenv("UEBENCH_PROGRESS", "fancy")
    with pytest.raises(UserError, match="UEBENCH_PROGRESS is auto, bar, plain"):
        plain_output()
    monkeypatch.setenv("UEBENCH_PROGRESS_EVERY", "-1")
    with pytest.raises(UserError, match="UEBENCH_PROGRESS_EVERY"):
        plain_every()
    assert clock_time(42) == "0:42" and clock_time(3723) == "1:02:03"


def test_quiet_shows_nothing(capfd):
    assert progress_bar(False, 10, "x") is None
    Tally("run", 3, enabled=False).begin("clean")
    from uebench.training.trainer import TrainConfig, train

    config = TrainConfig(model="resnet18", width=0.125, epochs=1, batch_size=32, dataset_options=TINY_DATA)
    probe = SALProbe(SALConfig(mode="fast", subset=8, rounds=1), layers=("conv1", "linear"))
    train(config, probes=[probe], progress=False)
    assert capfd.readouterr().err == ""


TINY_DATA = {"n_train": 32, "n_test": 16}


def test_a_training_run_and_its_sal_probe_in_plain_lines(monkeypatch, capfd):
    from uebench.training.trainer import TrainConfig, train

    monkeypatch.setenv("UEBENCH_PROGRESS_EVERY", "0")
    config = TrainConfig(model="resnet18", width=0.125, epochs=2, batch_size=16, dataset_options=TINY_DATA)
    probe = SALProbe(SALConfig(mode="fast", subset=8, rounds=1))
    train(config, probes=[probe], progress=True)
    err = capfd.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err
    names = probed_layers(create_model("resnet18", width=0.125))
    seventh = [x for x in lines if x.startswith(f"SAL epoch 2: layer 7/{len(names)} ({names[6]}), ")]
    assert len(seventh) == 1 and "elapsed 0:" in seventh[0]
    assert len([x for x in lines if x.startswith(f"SAL epoch 1: layer {len(names)}/{len(names)} (100%)")]) == 1
    last = lines[-1]
    assert last.startswith("train resnet18 on scenes: epoch 2/2, step 4/4 (100%)") and ", loss " in last, last
    assert ", test " in last and "%, elapsed" in last


# ---- SAL: the per-layer callback ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["fast", "faithful"])
def test_the_sal_callback_is_called_once_per_layer_and_changes_no_number(mode):
    model = create_model("resnet18", width=0.125).eval()
    g = torch.Generator().manual_seed(0)
    data = ProbeData(torch.rand(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g), batch_size=4)
    kw = {"mode": mode, "rounds": 1, "seed": 3, "batch_size": 4}
    calls = []
    shown = model_sal(model, data, progress=lambda i, n, name: calls.append((i, n, name)), **kw)
    names = probed_layers(model)
    assert calls == [(i, len(names), name) for i, name in enumerate(names, 1)]
    assert shown.to_record() | {"sal_seconds": 0} == model_sal(model, data, **kw).to_record() | {"sal_seconds": 0}


# ---- the bench ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("progress") / "bench"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UEBENCH_PROGRESS", "plain")
        code, stdout, err = run_main(["bench", *SMALL, "--out", str(out)])
        assert code == 0, err
        again = run_main(["bench", *SMALL, "--out", str(out)])
        quiet = run_main(["bench", *SMALL, "--out", str(out), "--quiet"])
    return out, err, again, quiet


def test_bench_lines_count_runs_and_poisons(small_bench):
    _, err, (code, _, again), _ = small_bench
    counted = [x for x in err.splitlines() if x.startswith(("run ", "poison "))]
    assert counted[0].startswith("run 1 of 2: clean / none / seed 0 -> runs/")
    assert counted[0].endswith(" (elapsed 0:00, estimate after the first run)")
    assert counted[1].startswith("run 2 of 2: ops / none / seed 0 -> runs/") and " at " in counted[1]
    assert "left ~" in counted[1] and counted[1].endswith(" a run)")
    assert counted[2].startswith("poison 1 of 1: ops (elapsed ") and len(counted) == 3
    cached = [x for x in again.splitlines() if x.startswith(("run ", "poison "))]
    assert code == 0 and [x.split(" -> ")[0] for x in cached] == [
        "run 1 of 2 cached: clean / none / seed 0",
        "run 2 of 2 cached: ops / none / seed 0",
        "poison 1 of 1 cached: ops",
    ]


def test_a_quiet_bench_writes_nothing_but_its_table(small_bench):
    code, stdout, err = small_bench[3]
    assert code == 0 and err == "" and stdout.startswith("# uebench bench")


def test_plan_lists_every_run_and_creates_no_folder(tmp_path):
    from uebench.cli import build_parser
    from uebench.cli.bench import config_from_args
    from uebench.experiments.bench.run import make_plan

    out = tmp_path / "not" / "there"
    code, stdout, err = run_main(["bench", *SMALL, "--plan", "--out", str(out)])
    assert code == 0, err
    assert not out.exists() and not out.parent.exists()
    plan = make_plan(config_from_args(build_parser().parse_args(["bench", *SMALL, "--out", str(out)])))
    for run in plan.runs:
        assert f"{run.dir}  to train" in stdout
    assert f"{plan.poisons[0].file}  to craft" in stdout and "runs: 2 (0 cached, 2 to train)" in stdout
    assert "estimate (rough): ~" in stdout and "timed on " in stdout and "does not exist" in stdout
    assert run_main(["bench", *SMALL, "--dry-run"])[0] == 0  # the alias, and no --out: nothing cached


def test_plan_marks_what_a_bench_finished_and_touches_nothing(small_bench):
    out = small_bench[0]
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code, stdout, err = run_main(["bench", *SMALL, "--plan", "--out", str(out)])
    assert code == 0, err
    assert "runs: 2 (2 cached, 0 to train)" in stdout and "poisons: 1 (1 cached, 0 to make)" in stdout
    assert stdout.count("  cached") == 3 and "every run of this process is cached" in stdout
    # one more defense: its two runs to train, the finished ones still cached
    code, stdout, _ = run_main(["bench", *SMALL, "--defenses", "none,gray", "--plan", "--out", str(out)])
    assert code == 0 and "runs: 4 (2 cached, 2 to train)" in stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    saved = json.loads((out / "bench.json").read_text())
    assert len(saved["plan"]["runs"]) == 2  # the bench's record is the last bench's, not the plan's
    # a bench of another configuration there: refused as the bench would refuse it
    code, _, err = run_main(["bench", *SMALL, "--epochs", "2", "--plan", "--out", str(out)])
    assert code == 2 and "another configuration" in err


def test_plan_counts_a_started_run_by_its_epochs(tmp_path):
    from dataclasses import replace

    from uebench.cli import build_parser
    from uebench.cli.bench import config_from_args
    from uebench.experiments.bench.plan import plan_bench
    from uebench.experiments.bench.run import run_bench

    config = replace(config_from_args(build_parser().parse_args(["bench", *SMALL])), epochs=2)
    run_bench(config, tmp_path / "b", progress=False, log=None, max_epochs=1, report=False)  # stops in the clean run
    view = plan_bench(config, tmp_path / "b", timing=False)
    assert [(done, finished) for _, done, finished, _ in view.runs] == [(1, False), (0, False)]
    assert "1 of 2 epochs done (resumes)" in view.text() and "poisons: 1 (0 cached, 1 to make)" in view.text()


def test_tally_estimates_from_the_items_done():
    clock, stream = FakeClock(), io.StringIO()
    t = Tally("run", 4, clock=clock, stream=stream)
    t.cached("a")
    t.begin("b")
    clock.t = 60
    t.done()
    t.begin("c", left=2)
    assert stream.getvalue().splitlines() == [
        "run 1 of 4 cached: a",
        "run 2 of 4: b (elapsed 0:00, estimate after the first run)",
        "run 3 of 4: c (elapsed 1:00, left ~2:00 at 1:00 a run)",
    ]
