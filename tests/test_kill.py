"""kill -9 at every write: a run or a bench killed just before or just after any of its atomic writes, then rerun
with the same command, ends with exactly the results of one that was never interrupted.

The kill is injected at the write (uebench.core.io's UEBENCH_KILL_AT_WRITE), not by timing, so every window is hit."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TRAIN = [
    sys.executable,
    "-m",
    "uebench.cli",
    "train",
    "--model",
    "linear",
    "--recipe",
    "quick",
    "--epochs",
    "2",
    "--data-option",
    "n_train=64",
    "--data-option",
    "n_test=32",
    "--quiet",
]
BENCH = [
    sys.executable,
    "-m",
    "uebench.cli",
    "bench",
    "--attacks",
    "ops",
    "--defenses",
    "none",
    "--model",
    "linear",
    "--data-option",
    "n_train=64",
    "--data-option",
    "n_test=32",
    "--epochs",
    "2",
    "--sal-every",
    "1",
    "--sal-subset",
    "8",
    "--sal-rounds",
    "1",
    "--precision",
    "fp32",
    "--quiet",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
DETERMINISTIC = (
    "attack",
    "defense",
    "seed",
    "status",
    "epochs_done",
    "final_test_acc",
    "peak_test_acc",
    "final_train_acc",
    "lp",
    "ud",
    "beta",
    "run",
    "poison",
)


def run(cmd, out: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([*cmd, "--out", str(out)], env={**ENV, **env}, capture_output=True, text=True, timeout=300)


def writes_of(cmd, tmp: Path) -> list[str]:
    log = tmp / "writes.log"
    done = run(cmd, tmp / "reference", UEBENCH_WRITE_LOG=str(log))
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


def kill_points(n: int, every: bool) -> list[str]:
    points = range(1, n + 1) if every else sorted({1, 2, n // 2, n - 1, n})
    return [f"{k}:{phase}" for k in points for phase in ("before", "after")]


def train_result(out: Path) -> tuple:
    summary = json.loads((out / "summary.json").read_text())
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    strip = lambda r: {k: v for k, v in r.items() if not k.endswith("seconds")}  # noqa: E731
    return {k: v for k, v in summary.items() if "seconds" not in k}, [strip(r) for r in metrics]


def test_train_killed_at_every_write_resumes_to_the_same_run(tmp_path):
    writes = writes_of(TRAIN, tmp_path)
    assert len(writes) == 7  # config, manifest, 2 x (checkpoint, metrics), summary
    expected = train_result(tmp_path / "reference")
    for point in kill_points(len(writes), every=True):
        out = tmp_path / f"k{point.replace(':', '-')}"
        killed = run([*TRAIN], out, UEBENCH_KILL_AT_WRITE=point)
        assert killed.returncode == -9, (point, killed.stderr)
        resumed = run([*TRAIN, "--resume"], out)
        assert resumed.returncode == 0, (point, resumed.stderr)
        assert train_result(out) == expected, point
        assert not list(out.glob(".*.tmp")), point


def bench_rows(out: Path) -> list[dict]:
    with open(out / "results.csv") as f:
        return [{c: r[c] for c in DETERMINISTIC} for r in csv.DictReader(f)]


def _bench_kills(tmp_path, every: bool):
    writes = writes_of(BENCH, tmp_path)
    expected = bench_rows(tmp_path / "reference")
    for point in kill_points(len(writes), every):
        out = tmp_path / f"k{point.replace(':', '-')}"
        killed = run(BENCH, out, UEBENCH_KILL_AT_WRITE=point)
        assert killed.returncode == -9, (point, killed.stderr)
        again = run(BENCH, out)  # a bench resumes by running the same command
        assert again.returncode == 0, (point, writes[int(point.split(":")[0]) - 1], again.stderr)
        assert bench_rows(out) == expected, point


def test_bench_killed_at_first_middle_and_last_writes_resumes(tmp_path):
    _bench_kills(tmp_path, every=False)  # includes the very first bench.json write


@pytest.mark.slow
def test_bench_killed_at_every_write_resumes(tmp_path):
    _bench_kills(tmp_path, every=True)
