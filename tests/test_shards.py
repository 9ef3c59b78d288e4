"""Several processes on one bench folder: shards (--shard I/N), two plain processes at once, locks that wait, and
temporary files that a live writer still owns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from benchkit import SMALL, histories, results
from uebench.cli import main
from uebench.experiments.bench.run import run_bench


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "b"
    assert run_bench(SMALL, out, progress=False, log=None).complete
    return out


def test_two_shards_then_the_report_equal_one_serial_bench(serial, tmp_path):
    out = tmp_path / "sharded"
    first = run_bench(SMALL, out, progress=False, log=None, shard=(0, 2))
    assert not first.complete and not (out / "results.csv").exists()  # the other shard's runs are missing
    assert len(first.trained) == 2  # runs 0 and 2 of the three (clean, ops, lsp)
    second = run_bench(SMALL, out, progress=False, log=None, shard=(1, 2))
    assert second.complete and second.trained == [r for r in second.trained if r not in first.trained]
    assert results(out) == results(serial) and histories(out) == histories(serial)


def test_two_processes_at_once_write_every_run_exactly_once(tmp_path):
    args = [
        "bench", "--data-option", "n_train=96", "--data-option", "n_test=48", "--attacks", "ops,lsp", "--width",
        "0.125", "--epochs", "2", "--sal-every", "1", "--sal-rounds", "1", "--sal-subset", "16", "--precision", "fp32",
        "--quiet",
    ]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "one")]) == 0  # the reference: one process alone
    out = tmp_path / "both"
    cmd = [sys.executable, "-m", "uebench.cli", *args, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(histories(out)) == 3 and all(len(h) == 2 for h in histories(out).values())
    assert (out / "report.html").exists() and results(out) == results(tmp_path / "one")
    assert histories(out) == histories(tmp_path / "one")


@pytest.mark.parametrize("spec", ["3/2", "0/0", "a/b", "1", "-1/2"])
def test_bad_shards_are_one_line_exit_2(spec, tmp_path, capsys):
    code = main(["bench", f"--shard={spec}", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and "--shard is I/N" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_a_lock_that_waits_gets_it_once_the_holder_lets_go(tmp_path):
    from uebench.core.lock import Lock, LockBusy

    path = tmp_path / ".thing.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from uebench.core.lock import Lock; "
            f"lock = Lock({str(path)!r}).acquire(); print('held', flush=True); time.sleep(1.5); lock.release(); "
            "time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy, match=f"thing is in use by another uebench process \\(pid {holder.pid}"):
            Lock(path).acquire()
        with Lock(path, wait=20, poll=0.05):  # the holder, alive, lets go after 1.5 s
            assert json.loads(path.read_text())["pid"] == os.getpid()
    finally:
        holder.kill()
        holder.wait()
    assert not path.exists()


def test_a_live_writers_temporary_file_is_not_swept(tmp_path):
    from uebench.core.io import remove_stale_temps

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    host = socket.gethostname()
    live = tmp_path / f".x.~{os.getpid()}@{host}~abc.tmp"
    gone = tmp_path / f".y.~{dead.pid}@{host}~abc.tmp"
    untagged = tmp_path / ".z.abc.tmp"  # no writer in its name: maybe a user's own hidden file, never swept
    for f in (live, gone, untagged):
        f.write_bytes(b"half")
    remove_stale_temps(tmp_path)
    assert live.exists() and not gone.exists() and untagged.exists()


def test_shards_keep_the_plan_whole_between_them():
    from uebench.experiments.bench.run import make_plan, shard_runs

    plan = make_plan(replace(SMALL, defenses=("none", "gray"), seeds=(0, 1)))
    parts = [shard_runs(plan, (i, 3)) for i in range(3)]
    assert sorted(r.dir for p in parts for r in p) == sorted(r.dir for r in plan.runs)
    assert all(not set(map(id, a)) & set(map(id, b)) for a in parts for b in parts if a is not b)
