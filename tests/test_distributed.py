"""Multi-process training (uebench.core.distributed): two torchrun processes with gloo train the run one process would,
only rank 0 writes the folder, and a run stopped after an epoch resumes to the same weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from uebench.core.distributed import SINGLE, World

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_each_process_takes_its_share_of_every_global_batch():
    idx = torch.arange(10)
    shares = [World(r, 3).share(idx) for r in range(3)]
    assert [s.tolist() for s in shares] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(torch.cat(shares).tolist()) == idx.tolist()  # together, the batch one process trains on
    assert SINGLE.share(idx) is idx and float(SINGLE.total(3)) == 3.0


def run(nproc: int, out: Path, weights: Path, stop: int = 0) -> None:
    weights.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, str(WORKER), str(out), str(weights), str(stop)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        cmd += [str(WORKER), str(out), str(weights), str(stop)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_train_the_run_one_would_and_resume(tmp_path):
    run(1, tmp_path / "one", tmp_path / "w1")
    run(2, tmp_path / "two", tmp_path / "w2")
    one = np.load(tmp_path / "w1" / "rank0.npy")
    r0, r1 = np.load(tmp_path / "w2" / "rank0.npy"), np.load(tmp_path / "w2" / "rank1.npy")
    assert np.array_equal(r0, r1)  # DDP keeps the processes' models identical
    # a linear model without augmentation: the averaged share gradients are the global batch's gradient
    assert np.allclose(r0, one, atol=1e-5), np.abs(r0 - one).max()
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    ones = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs] == [1, 2, 3] and (tmp_path / "two" / "summary.json").is_file()
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["world_size"] == 2
    for a, b in zip(recs, ones):  # the epoch's loss and accuracy are summed over both processes' shares
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["train_acc"] == pytest.approx(b["train_acc"], abs=1e-6) and a["test_acc"] == pytest.approx(
            b["test_acc"], abs=1.1
        )
    assert not list((tmp_path / "two").glob(".write-test-*")) and not list((tmp_path / "two").glob("*.tmp*"))
    # stopped after one epoch, then resumed by a new torchrun job: the same weights as the uninterrupted one
    run(2, tmp_path / "cut", tmp_path / "w3", stop=1)
    assert not (tmp_path / "cut" / "summary.json").exists()
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 1
    run(2, tmp_path / "cut", tmp_path / "w4")
    assert np.array_equal(np.load(tmp_path / "w4" / "rank0.npy"), r0)


CRAFT_WORKER = Path(__file__).with_name("ddp_craft_worker.py")


def craft(nproc: int, out: Path, attack: str = "em") -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(CRAFT_WORKER), str(out), attack]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *cmd[1:]]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_em_crafts_data_parallel_to_one_processs_perturbation(tmp_path):
    """Two processes split EM's training batches (DDP) and its sample-wise noise batches (each updates its own
    rows, then every process gets all rows): the perturbation one process crafts, to float rounding."""
    craft(1, tmp_path / "one")
    craft(2, tmp_path / "two")
    one = np.load(tmp_path / "one" / "rank0.npy")
    r0, r1 = np.load(tmp_path / "two" / "rank0.npy"), np.load(tmp_path / "two" / "rank1.npy")
    assert np.array_equal(r0, r1) and np.abs(r0).max() <= 8 / 255 + 1e-6 and np.abs(r0).max() > 0
    # a signed step flips only where a gradient element is within float rounding of zero (measured: no element differs)
    assert np.mean(r0 != one) < 0.01, np.mean(r0 != one)
    h1, h2 = np.load(tmp_path / "one" / "history0.npy"), np.load(tmp_path / "two" / "history0.npy")
    assert np.allclose(h1, h2, atol=2.0), (h1, h2)  # the stopping rule's accuracy, summed over both processes


@pytest.mark.slow
def test_tap_crafts_data_parallel(tmp_path):
    """TAP under torchrun: DDP clean training, each process its share of the PGD batches. Each process draws the
    augmentation of its own shares, so the bytes are not one process's; the poison is as strong."""
    craft(1, tmp_path / "one", "tap")
    craft(2, tmp_path / "two", "tap")
    r0, r1 = np.load(tmp_path / "two" / "rank0.npy"), np.load(tmp_path / "two" / "rank1.npy")
    assert np.array_equal(r0, r1) and 0 < np.abs(r0).max() <= 8 / 255 + 1e-6
    (one, _), (two, clean) = np.load(tmp_path / "one" / "history0.npy"), np.load(tmp_path / "two" / "history0.npy")
    # the crafting model puts far more poisoned than clean images in the target class, as one process's does
    # (measured: 48.4% and 28.1% of the images against 10.9% clean; BatchNorm sees 16-image shares in two processes)
    assert min(one, two) > clean + 10, (one, two, clean)
