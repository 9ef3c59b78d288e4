"""--tensorboard: every epoch's numbers and per-layer SAL land in TensorBoard event files."""

from __future__ import annotations

import pytest

from uebench.cli import main

pytest.importorskip("tensorboard")


def test_train_logs_records_and_per_layer_sal(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = ["train", "--data-option", "n_train=64", "--data-option", "n_test=32", "--model", "resnet18"]
    args += ["--width", "0.125", "--epochs", "2", "--precision", "fp32", "--sal", "--sal-mode", "fast"]
    args += ["--sal-subset", "16", "--sal-rounds", "1", "--sal-layers", "conv1,linear", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")]) == 0
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train_loss", "test_acc", "sal/conv1", "sal/linear", "sal_eval/conv1"} <= tags
    assert [e.step for e in events.Scalars("test_acc")] == [1, 2]


def test_scalars_keep_numbers_and_per_layer_dicts_only():
    from uebench.training.tensorboard import scalars

    rec = {"epoch": 3, "train_loss": 0.5, "mixed_labels": True, "sal": {"conv1": 1.5, "x": float("nan")}, "s": "txt"}
    assert scalars(rec) == [("train_loss", 0.5), ("sal/conv1", 1.5)]
