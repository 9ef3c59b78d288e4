"""The experiment workspace (uebench.experiments.workspace) and the
one training loop (uebench.training.fit), tested on their own."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from uebench.core.errors import UserError
from uebench.experiments.workspace import Workspace
from uebench.training.fit import fit


def _open(ws: Workspace, identity, overwrite=False):
    ws.open(
        identity,
        {"identity": identity},
        overwrite=overwrite,
        owned=lambda: ["runs"],
        identity_of=lambda r: r["identity"],
    )


def test_same_identity_continues_another_is_refused_unless_overwrite(tmp_path):
    ws = Workspace(tmp_path / "x", "exp.json", "toy experiment")
    _open(ws, {"a": 1})
    (ws.root / "runs").mkdir()
    (ws.root / "runs" / "r1").write_text("kept")
    (ws.root / "notes.txt").write_text("the user's")
    _open(ws, {"a": 1})  # the same experiment: its files stay
    assert (ws.root / "runs" / "r1").read_text() == "kept"
    with pytest.raises(UserError, match="another configuration \\(differs in: a\\)"):
        _open(ws, {"a": 2})
    assert (ws.root / "runs" / "r1").exists() and json.loads(ws.record_path.read_text()) == {"identity": {"a": 1}}
    _open(ws, {"a": 2}, overwrite=True)  # only what the experiment owns goes
    assert not (ws.root / "runs").exists() and (ws.root / "notes.txt").read_text() == "the user's"
    assert json.loads(ws.record_path.read_text()) == {"identity": {"a": 2}}


def test_foreign_folders_and_damaged_records_are_refused(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "photo.png").write_bytes(b"x")
    with pytest.raises(UserError, match="not empty and holds no toy experiment"):
        _open(Workspace(tmp_path / "full", "exp.json", "toy experiment"), {"a": 1})
    _open(Workspace(tmp_path / "full", "exp.json", "toy experiment"), {"a": 1}, overwrite=True)
    assert (tmp_path / "full" / "photo.png").exists()
    bad = Workspace(tmp_path / "bad", "exp.json", "toy experiment")
    bad.root.mkdir()
    bad.record_path.write_text("{not json")
    with pytest.raises(UserError, match="unreadable"):
        _open(bad, {"a": 1})
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is a file"):
        _open(Workspace(tmp_path / "file", "exp.json", "toy experiment"), {"a": 1})


def test_identity_compares_as_it_reads_back(tmp_path):
    ws = Workspace(tmp_path / "t", "exp.json", "toy experiment")
    _open(ws, {"layers": ("a", "b")})  # a tuple is stored as a list: reopening must not see another identity
    _open(ws, {"layers": ("a", "b")})


def test_poison_cache_keeps_reuses_and_remakes(tmp_path):
    from uebench.attacks import craft
    from uebench.data import load

    ds = load("scenes", n_train=40, n_test=10)
    ws = Workspace(tmp_path / "p", "exp.json", "toy experiment")
    made = []

    def make():
        made.append(1)
        return craft("ops", ds, preset="paper", seed=0, progress=False)

    first, fresh = ws.poison("poisons/ops.safetensors", make)
    again, fresh_again = ws.poison("poisons/ops.safetensors", make)
    assert fresh and not fresh_again and len(made) == 1 and torch.equal(first.images, again.images)
    _, remade = ws.poison("poisons/ops.safetensors", make, reuse=lambda p: p.meta.seed == 1)  # not the one asked for
    assert remade and len(made) == 2


class _Regression:
    """A LossStep: mean squared error of a linear model, counting the batches it saw."""

    hint = "lower the lr"
    min_batch = 2

    def __init__(self, x, y):
        self.x, self.y, self.batches, self.epochs = x, y, 0, []

    def begin_epoch(self, epoch):
        self.epochs.append(epoch)

    def __call__(self, model, idx, generator):
        self.batches += 1
        return ((model(self.x[idx]).squeeze(1) - self.y[idx]) ** 2).mean(), len(idx)

    def epoch_record(self, seen):
        record, self.batches = {"batches": self.batches}, 0
        return record


def test_fit_runs_any_loss_step_and_refuses_divergence():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(33, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    step = _Regression(x, y)
    history = fit(
        model,
        opt,
        step,
        len(x),
        epochs=20,
        batch_size=16,
        lr_at=lambda e: 0.1,
        seed=0,
        after_epoch=lambda epoch, record: seen.append(epoch),
    )
    assert seen == list(range(1, 21)) and [h["epoch"] for h in history] == seen
    assert all(h["batches"] == 2 for h in history)  # 33 = 16 + 16 + 1: the batch of one is skipped (min_batch)
    assert step.epochs == list(range(20))  # the step hears of each epoch before it runs (0-based)
    assert history[-1]["train_loss"] < 0.01 * history[0]["train_loss"]
    with pytest.raises(UserError, match="training diverged.*lower the lr"):
        fit(
            model,
            torch.optim.SGD(model.parameters(), lr=1e6),
            _Regression(x, y * 1e6),
            len(x),
            epochs=50,
            batch_size=16,
            lr_at=lambda e: 1e6,
            seed=0,
        )
