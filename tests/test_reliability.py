"""Reliability defects from the fuzz of issue 19: nothing lost, nothing run from files, nothing overwritten."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from uebench.core.errors import UserError
from uebench.training.records import CHECKPOINT, METRICS, SUMMARY, read_metrics, sync_metrics, write_metrics
from uebench.training.trainer import TrainConfig, train

TINY = dict(model="linear", recipe="quick", batch_size=64, dataset_options={"n_train": 128, "n_test": 64})


def tiny(**kw) -> TrainConfig:
    return TrainConfig(**{**TINY, "epochs": 3, **kw})


def lines(path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


# ---------- 1. the checkpoint and the metrics of an epoch commit together ----------


def test_resume_restores_metrics_cut_short_by_a_kill(tmp_path):
    out = tmp_path / "run"
    full = train(tiny(), out, progress=False)
    (out / SUMMARY).unlink()  # what a kill between the checkpoint's rename and metrics.jsonl's leaves behind
    kept = (out / METRICS).read_text().splitlines()[:2]
    (out / METRICS).write_text("\n".join(kept) + "\n")
    again = train(tiny(), out, resume=True, progress=False)
    assert lines(out / METRICS) == 3
    assert [json.loads(x) for x in (out / METRICS).read_text().splitlines()] == full.history
    assert again.summary == full.summary


def test_readers_take_the_checkpoint_as_the_commit_point(tmp_path):
    out = tmp_path / "run"
    full = train(tiny(), out, progress=False)
    (out / METRICS).write_text((out / METRICS).read_text().splitlines()[0] + "\n")
    assert read_metrics(out) == full.history


def test_damaged_metrics_without_checkpoint_is_one_line(tmp_path):
    out = tmp_path / "run"
    train(tiny(epochs=1), out, progress=False)
    (out / CHECKPOINT).unlink()
    (out / METRICS).write_text('{"epoch": 1}\n{not json\n')
    with pytest.raises(UserError, match="damaged"):
        read_metrics(out)


def _strict(text: str) -> list:
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


def test_metrics_of_a_diverged_epoch_are_strict_json(tmp_path):
    history = [{"epoch": 1, "train_loss": 2.3}, {"epoch": 2, "train_loss": float("nan"), "test_loss": float("inf")}]
    write_metrics(tmp_path, history)
    assert _strict((tmp_path / METRICS).read_text())[1] == {"epoch": 2, "train_loss": None, "test_loss": None}
    sync_metrics(tmp_path, history)  # in line already: no rewrite that brings the NaN back
    assert _strict((tmp_path / METRICS).read_text())[1]["train_loss"] is None
    assert read_metrics(tmp_path)[1]["train_loss"] is None  # no checkpoint: the file is read, null stays null


def test_metrics_nested_too_deeply_is_one_line(tmp_path):
    (tmp_path / METRICS).write_text('{"epoch": 1, "x": ' + "[" * 50_000 + "]" * 50_000 + "}\n")
    with pytest.raises(UserError, match="nested too deeply"):
        read_metrics(tmp_path)


# ---------- 5. a checkpoint never runs code ----------


class _Payload:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.target),))


def test_crafted_checkpoint_does_not_run_its_payload(tmp_path):
    out = tmp_path / "run"
    train(tiny(), out, progress=False, stop_after=1)
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.target = str(marker)
    state = torch.load(out / CHECKPOINT, weights_only=True)
    state["history"][0]["evil"] = payload
    torch.save(state, out / CHECKPOINT)  # pickles the payload: weights_only=False would call Path.touch
    with pytest.raises(UserError, match="cannot be read as a run checkpoint"):
        train(tiny(), out, resume=True, progress=False)
    assert not marker.exists()


# ---------- 2. the budget a poison file claims is checked ----------


def _toy_poison_file(path, budget, levels=28, attack="test", params=None):
    """A poison file written by hand, as a hostile or broken tool would: metadata JSON exactly as given."""
    from safetensors.torch import save

    from uebench.data.base import ImageDataset

    g = torch.Generator().manual_seed(0)
    images = torch.randint(40, 200, (16, 3, 8, 8), generator=g, dtype=torch.uint8)
    ds = ImageDataset("toy", "train", images, torch.arange(16) % 4, ["a", "b", "c", "d"])
    meta = {
        "attack": attack,
        "dataset": "toy",
        "dataset_size": 16,
        "norm": "linf",
        "budget": budget,
        "params": params or {},
    }
    body = json.dumps(meta)  # a float NaN or inf is written as the bare NaN / Infinity a hostile file would hold
    tensors = {
        "images": (images.int() + levels).clamp(0, 255).to(torch.uint8),
        "labels": ds.labels,
        "indices": torch.arange(16),
    }
    path.write_bytes(save(tensors, metadata={"uebench_poison": body}))
    return ds


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), 1e9, -1.0, "abc", True, None])
def test_poison_with_a_bad_budget_is_refused(tmp_path, budget):
    from uebench.poisons.poison import Poison

    ds = _toy_poison_file(tmp_path / "p.safetensors", budget)
    with pytest.raises(UserError):
        Poison.load(tmp_path / "p.safetensors").apply(ds)


@pytest.mark.parametrize("meta", ['{"attack": 3}', "[1, 2]", "{not json", '"a string"'])
def test_malformed_poison_metadata_is_one_line(tmp_path, meta):
    from safetensors.torch import save

    from uebench.poisons.poison import Poison

    t = {
        "images": torch.zeros(1, 3, 4, 4, dtype=torch.uint8),
        "labels": torch.zeros(1, dtype=torch.int64),
        "indices": torch.zeros(1, dtype=torch.int64),
    }
    (tmp_path / "p.safetensors").write_bytes(save(t, metadata={"uebench_poison": meta}))
    with pytest.raises(UserError):
        Poison.load(tmp_path / "p.safetensors")


def test_claimed_budget_above_the_methods_is_refused(tmp_path):
    from uebench.attacks import ATTACKS, make_config
    from uebench.poisons.poison import Poison

    params = {"preset": "paper", **dataclasses.asdict(make_config(ATTACKS.get("tap")))}  # tap: Linf eps=8/255
    ds = _toy_poison_file(tmp_path / "p.safetensors", 28 / 255, attack="tap", params=params)
    with pytest.raises(UserError, match="more than its settings allow"):
        Poison.load(tmp_path / "p.safetensors").apply(ds)
    _toy_poison_file(tmp_path / "q.safetensors", 8 / 255, levels=8, attack="tap", params=params)
    Poison.load(tmp_path / "q.safetensors").apply(ds)  # the same file within the method's budget is accepted


def test_the_public_api_holds_a_poison_to_its_methods_budget_without_importing_the_attacks():
    """poisons sits below attacks, so the attacks register the method's rule; every public name that checks a poison
    imports them first (a fresh interpreter: nothing else imported them)."""
    code = (
        "import uebench, uebench.poisons.poison as p; assert not p._BUDGET_RULES; uebench.Poison; "
        "print(len(p._BUDGET_RULES))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"


# ---------- 3. one process per run folder ----------


def _lock_file(folder, pid):
    import socket

    from uebench.core.lock import LOCK_NAME

    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": "then"}))


def test_a_second_process_on_a_run_folder_is_refused(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from uebench.core.lock import FolderLock; "
            f"FolderLock({str(out)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"in use by another uebench process \\(pid {holder.pid}"):
            train(tiny(epochs=1), out, progress=False)
        assert not (out / "config.json").exists()  # refused before it wrote anything
    finally:
        holder.kill()
        holder.wait()
    train(tiny(epochs=1), out, progress=False)  # the holder is gone (kill -9): its lock is stale and taken over
    assert (out / SUMMARY).exists()


def test_stale_lock_of_a_dead_process_is_taken_over_and_released(tmp_path):
    import subprocess
    import sys

    from uebench.core.lock import LOCK_NAME

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock_file(tmp_path / "run", dead.pid)
    train(tiny(epochs=1), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def _contender(folder):
    """Another process that takes the folder's lock (taking a stale one over) and holds it, or says it is busy."""
    import subprocess
    import sys

    code = (
        "import time; from uebench.core.lock import FolderLock, LockBusy\n"
        "try:\n"
        f"    FolderLock({str(folder)!r}).acquire()\n"
        "except LockBusy:\n"
        "    print('busy', flush=True)\n"
        "else:\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("who", ["a taker", "a sweep"])
def test_two_processes_acting_on_one_stale_lock_never_both_hold_it(who, tmp_path, monkeypatch):
    """Both find the lock's holder dead; the second completes its take-over while the first is between its check
    and its action (the first one's liveness check is where the second runs, here). At most one may hold it after."""
    import subprocess
    import sys

    import uebench.core.lock as lock
    from uebench.core.lock import LOCK_NAME, FolderLock, LockBusy, sweep_stale

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "run"
    _lock_file(folder, dead.pid)
    other: list = []

    def alive(pid, real=lock.pid_alive):
        if pid == dead.pid and not other:
            other.append(_contender(folder))
            other.append(other[0].stdout.readline().strip())
        return real(pid)

    monkeypatch.setattr(lock, "pid_alive", alive)
    try:
        if who == "a taker":
            try:
                FolderLock(folder).acquire()
                mine = "held"
            except LockBusy:
                mine = "busy"
            assert sorted([mine, other[1]]) == ["busy", "held"]  # exactly one holds it
        else:
            sweep_stale(folder)
            if other[1] == "held":  # the contender took it over while the sweep checked: its lock stays
                assert json.loads((folder / LOCK_NAME).read_text())["pid"] == other[0].pid
    finally:
        for p in other[:1]:
            p.kill()
            p.wait()


def test_refused_run_leaves_no_folder_behind(tmp_path):
    with pytest.raises(UserError):
        train(tiny(epochs=1, model="no-such-model"), tmp_path / "new" / "run", progress=False)
    assert not (tmp_path / "new").exists()


def test_stale_temp_files_are_removed_on_the_next_start(tmp_path):
    out = tmp_path / "run"
    train(tiny(), out, progress=False, stop_after=1)
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / f".checkpoint.pt.~{dead.pid}@{socket.gethostname()}~abc123.tmp").write_bytes(b"half a checkpoint")
    train(tiny(), out, resume=True, progress=False)
    assert not list(out.glob(".*.tmp"))


# ---------- 7-10. users' files are never overwritten or deleted without --overwrite ----------


def _cli(args, capsys) -> tuple[int, str]:
    from uebench.cli import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip()


def test_crosstask_refuses_a_folder_of_other_files(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.html").write_text("my report")
    code, err = _cli(["crosstask", "--attacks", "ops", "--out", out, "--quiet"], capsys)
    assert code == 2 and "not empty and holds no crosstask experiment" in err
    assert sorted(p.name for p in out.iterdir()) == ["report.html"] and (out / "report.html").read_text() == "my report"


@pytest.mark.parametrize("name, message", [("clean.safetensors", "named 'clean'"), ("...safetensors", None)])
def test_crosstask_poison_names_are_checked_and_made_safe(name, message, tmp_path, capsys):
    from uebench.experiments.crosstask.experiment import poison_label

    (tmp_path / name).write_bytes(b"")
    if message:  # refused before any training
        code, err = _cli(["crosstask", "--attacks", tmp_path / name, "--out", tmp_path / "ct", "--quiet"], capsys)
        assert code == 2 and message in err and not (tmp_path / "ct").exists()
    else:
        label = poison_label(str(tmp_path / name))
        assert label not in (".", "..") and "/" not in label and not label.startswith(".")


def test_bench_report_deletes_only_its_own_figures(tmp_path):
    from dataclasses import replace

    from uebench.experiments.bench.run import BenchConfig, SALSettings, run_bench
    from uebench.report.bench_report import write_bench_report

    out = tmp_path / "b"
    out.mkdir()
    (out / "my-figure.png").write_bytes(b"mine")
    config = BenchConfig(
        preset="test",
        dataset_options={"n_train": 64, "n_test": 32},
        attacks=("ops",),
        model="linear",
        epochs=1,
        defenses=("none",),
        sal=SALSettings(mode="fast", rounds=1, subset=8),
        precision="fp32",
    )
    run_bench(config, out, overwrite=True, progress=False, log=None)  # a folder that held no bench, with --overwrite
    ours = json.loads((out / "figures.json").read_text())
    assert ours and all((out / f).is_file() for f in ours) and "my-figure.png" not in ours
    write_bench_report(out)  # `uebench report`
    run_bench(replace(config, epochs=2), out, overwrite=True, progress=False, log=None)  # another bench replaces it
    assert (out / "my-figure.png").read_bytes() == b"mine"
    from uebench.cli import main

    (out / "samples.safetensors").write_bytes(b"damaged")  # `uebench report` on a damaged file: one line, exit 2
    assert main(["report", str(out)]) == 2
    summary = next(out.glob("runs/*/summary.json"))
    (out / "samples.safetensors").unlink()
    summary.write_text("{damaged")
    assert main(["report", str(out)]) == 2


def test_bench_on_a_locked_folder_is_refused_before_it_writes(tmp_path):
    import os

    from uebench.experiments.bench.run import BenchConfig, run_bench

    _lock_file(tmp_path / "b", os.getppid())  # a live process of this host: the pytest runner's parent
    config = BenchConfig(
        preset="test", dataset_options={"n_train": 64, "n_test": 32}, attacks=("ops",), model="linear", epochs=1
    )
    with pytest.raises(UserError, match="in use by another uebench process"):
        run_bench(config, tmp_path / "b", progress=False, log=None, lock_wait=0)
    assert [p.name for p in (tmp_path / "b").iterdir()] == [".uebench.lock"]


# ---------- 13. umask, Ctrl-C, stable content hash ----------


def test_atomic_writes_honour_the_umask(tmp_path):
    import os

    from uebench.core.io import atomic_write_text

    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    "command, needle",
    [("train", "--resume"), ("craft", "nothing was written"), ("crosstask", "rerun the same command")],
)
def test_ctrl_c_says_what_the_command_can_do(command, needle, tmp_path, capsys, monkeypatch):
    import uebench.cli

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    args = {
        "train": ["train", "--out", tmp_path / "r"],
        "craft": ["craft", "--attack", "ops", "--out", tmp_path / "p"],
        "crosstask": ["crosstask", "--out", tmp_path / "c"],
    }[command]
    parser = uebench.cli.build_parser()
    ns = parser.parse_args([str(a) for a in args])
    monkeypatch.setattr(uebench.cli, "build_parser", lambda: type("P", (), {"parse_args": lambda self, argv: ns})())
    monkeypatch.setattr(ns, "func", interrupt)
    code, err = _cli(args, capsys)
    assert code == 130 and needle in err
    if command != "train":
        assert "--resume" not in err  # neither craft nor crosstask has one


def test_identical_crafts_have_the_same_content_hash(tmp_path):
    from uebench.attacks import craft
    from uebench.data import load
    from uebench.poisons.poison import Poison

    ds = load("scenes", n_train=32, n_test=16)
    a, b = craft("ops", ds, seed=0, progress=False), craft("ops", ds, seed=0, progress=False)
    a.save(tmp_path / "a.safetensors")
    b.meta.created, b.meta.craft_seconds = "another time", b.meta.craft_seconds + 1.0
    b.save(tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() != (tmp_path / "b.safetensors").read_bytes()
    assert (
        Poison.load(tmp_path / "a.safetensors").content_hash() == Poison.load(tmp_path / "b.safetensors").content_hash()
    )
    assert craft("ops", ds, seed=1, progress=False).content_hash() != a.content_hash()
