"""Reliability defects from the fuzz of issue 19: nothing lost, nothing run from files, nothing overwritten."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from uebench.errors import UserError
from uebench.records import CHECKPOINT, METRICS, SUMMARY, read_metrics
from uebench.train import TrainConfig, train

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
    meta = {"attack": attack, "dataset": "toy", "dataset_size": 16, "norm": "linf", "budget": budget,
            "params": params or {}}
    body = json.dumps(meta).replace('"budget": "NaN"', '"budget": NaN')  # json.dumps writes float nan as NaN anyway
    tensors = {"images": (images.int() + levels).clamp(0, 255).to(torch.uint8), "labels": ds.labels, "indices": torch.arange(16)}
    path.write_bytes(save(tensors, metadata={"uebench_poison": body}))
    return ds


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), 1e9, -1.0, "abc", True, None])
def test_poison_with_a_bad_budget_is_refused(tmp_path, budget):
    from uebench.poison import Poison

    ds = _toy_poison_file(tmp_path / "p.safetensors", budget)
    with pytest.raises(UserError):
        Poison.load(tmp_path / "p.safetensors").apply(ds)


@pytest.mark.parametrize("meta", ['{"attack": 3}', "[1, 2]", "{not json", '"a string"'])
def test_malformed_poison_metadata_is_one_line(tmp_path, meta):
    from safetensors.torch import save

    from uebench.poison import Poison

    t = {"images": torch.zeros(1, 3, 4, 4, dtype=torch.uint8), "labels": torch.zeros(1, dtype=torch.int64),
         "indices": torch.zeros(1, dtype=torch.int64)}
    (tmp_path / "p.safetensors").write_bytes(save(t, metadata={"uebench_poison": meta}))
    with pytest.raises(UserError):
        Poison.load(tmp_path / "p.safetensors")


def test_claimed_budget_above_the_methods_is_refused(tmp_path):
    from uebench.attacks import ATTACKS, make_config
    from uebench.poison import Poison

    params = {"preset": "paper", **dataclasses.asdict(make_config(ATTACKS.get("tap")))}  # tap: Linf eps=8/255
    ds = _toy_poison_file(tmp_path / "p.safetensors", 28 / 255, attack="tap", params=params)
    with pytest.raises(UserError, match="more than its settings allow"):
        Poison.load(tmp_path / "p.safetensors").apply(ds)
    _toy_poison_file(tmp_path / "q.safetensors", 8 / 255, levels=8, attack="tap", params=params)
    Poison.load(tmp_path / "q.safetensors").apply(ds)  # the same file within the method's budget is accepted


# ---------- 3. one process per run folder ----------


def _lock_file(folder, pid):
    import socket

    from uebench.lock import LOCK_NAME

    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": "then"}))


def test_a_second_process_on_a_run_folder_is_refused(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from uebench.lock import FolderLock; "
                               f"FolderLock({str(out)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
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

    from uebench.lock import LOCK_NAME

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock_file(tmp_path / "run", dead.pid)
    train(tiny(epochs=1), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_refused_run_leaves_no_folder_behind(tmp_path):
    with pytest.raises(UserError):
        train(tiny(epochs=1, model="no-such-model"), tmp_path / "new" / "run", progress=False)
    assert not (tmp_path / "new").exists()


def test_stale_temp_files_are_removed_on_the_next_start(tmp_path):
    out = tmp_path / "run"
    train(tiny(), out, progress=False, stop_after=1)
    (out / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    train(tiny(), out, resume=True, progress=False)
    assert not list(out.glob(".*.tmp"))
