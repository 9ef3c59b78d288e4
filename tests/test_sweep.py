"""`uebench sal-sweep` and the SAL probe's recorded choices: kept weights, a remeasurement that equals what the bench
recorded, the one-axis grid, beta transfer, caching, cutout in the probe data, mixup's L0, and bad input."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from benchkit import SMALL as BENCH
from uebench.cli import main
from uebench.core.errors import UserError
from uebench.experiments.bench.run import run_bench
from uebench.experiments.sweep import SWEEP_DIR, Setting, grid, kendall_tau, run_sweep, spearman_rho, ud_if_defined
from uebench.metrics import ProbeData, SALConfig
from uebench.training.records import kept_weights, load_weights
from uebench.training.sal_probe import SALProbe

SMALL = replace(BENCH, keep_weights=True)


@pytest.fixture(scope="module")
def small_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "bench"
    run_bench(SMALL, out, progress=False, log=None)
    return out


def test_kendall_and_spearman_worked_by_hand():
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # pairs (1,2) concordant, (1,3) concordant, (2,3) discordant: (2 - 1) / 3
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert kendall_tau([1.0], [2.0]) is None and kendall_tau([1, 1], [1, 2]) is None
    # ranks (1,2,3,4) against (1,3,2,4): 1 - 6 * (0 + 1 + 1 + 0) / (4 * 15) = 0.8
    assert spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)


def test_ud_if_defined_uses_the_given_beta_and_refuses_an_empty_clean_count():
    clean = np.array([[0.1, 0.1, 1.0, 1.0]])
    poisoned = np.array([[0.1, 0.1, 0.1, 1.0]])
    assert ud_if_defined(poisoned, clean) == pytest.approx(0.5)  # beta 0.55: 1 cell against 2
    assert ud_if_defined(poisoned, clean, beta=0.05) == pytest.approx(1.0)  # every cell above: 4 against 4
    assert ud_if_defined(poisoned, clean, beta=5.0) is None


def test_grid_varies_one_axis_at_a_time_around_the_reference():
    ref = Setting("fast", 0.05, 3, 256)
    got = grid(ref, eps=[0.01, 0.05, 0.1], rounds=[5, 3], modes=["fast", "faithful"])
    assert got[0] == ref
    assert [s.label for s in got] == [
        "fast-eps0.05-r3-n256",
        "fast-eps0.01-r3-n256",
        "fast-eps0.1-r3-n256",
        "fast-eps0.05-r5-n256",
        "faithful-eps0.05-r10",
        "faithful-eps0.01-r10",
        "faithful-eps0.1-r10",
        "faithful-eps0.05-r5",
        "faithful-eps0.05-r3",
    ]
    for bad in ({"eps": 0.0}, {"eps": float("nan")}, {"eps": float("inf")}, {"rounds": 0}, {"mode": "quick"}):
        with pytest.raises(UserError):
            Setting(**{"mode": "fast", "eps": 0.05, "rounds": 3, **bad})


def test_the_bench_keeps_weights_at_every_sal_epoch(small_bench):
    run = next((small_bench / "runs").glob("ops-none-*"))
    assert kept_weights(run) == [1, 2]
    state = load_weights(run, 2)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)[
        "model"
    ]  # the last epoch's weights are the checkpoint's
    assert set(state) == set(ckpt) and all(torch.equal(state[k], ckpt[k]) for k in ckpt)


def test_the_reference_remeasured_equals_what_the_bench_recorded_and_the_sweep_resumes(small_bench):
    summary = run_sweep(small_bench, eps=[0.01], rounds=[2], log=None)
    assert summary["reference"] == "fast-eps0.05-r1-n16"
    assert summary["reference_max_abs_diff_from_recorded"] == 0.0  # same weights, data, seed and thread count
    ref = summary["settings"]["fast-eps0.05-r1-n16"]["origins"]["running"]
    assert ref["tau_vs_reference"] in (1.0, None) and ref["max_abs_ud_change_vs_reference"] == 0.0
    small = summary["settings"]["fast-eps0.01-r1-n16"]["origins"]["eval"]
    assert set(small["ud_by_attack"]) <= {"ops", "lsp"}
    # a smaller ball reaches smaller rises and drops: nearly every cell's SAL at eps 0.01 is at most its SAL at eps 0.05
    cells = json.loads(
        (
            small_bench
            / SWEEP_DIR
            / "fast-eps0.01-r1-n16"
            / f"{next((small_bench / 'runs').glob('clean-*')).name}.json"
        ).read_text()
    )
    again = json.loads(
        (
            small_bench
            / SWEEP_DIR
            / "fast-eps0.05-r1-n16"
            / f"{next((small_bench / 'runs').glob('clean-*')).name}.json"
        ).read_text()
    )
    lower = [
        cells["epochs"][e]["sal_eval"][k] <= again["epochs"][e]["sal_eval"][k] + 1e-6
        for e in cells["epochs"]
        for k in cells["epochs"][e]["sal_eval"]
    ]
    assert np.mean(lower) > 0.9
    cached = {p: p.stat().st_mtime_ns for p in (small_bench / SWEEP_DIR).rglob("*.json")}
    run_sweep(small_bench, eps=[0.01], rounds=[2], log=None)  # a rerun measures nothing
    assert {p: p.stat().st_mtime_ns for p in (small_bench / SWEEP_DIR).rglob("*.json")} == cached
    assert (small_bench / "sweep.md").read_text().startswith("# SAL sweep")


def test_a_second_pass_is_seeded_afresh_and_read_against_the_first(small_bench):
    assert [s.label for s in grid(Setting("fast", 0.05, 3, 16), eps=[0.1], repeats=2)] == [
        "fast-eps0.05-r3-n16",
        "fast-eps0.1-r3-n16",
        "fast-eps0.05-r3-n16-pass2",
        "fast-eps0.1-r3-n16-pass2",
    ]
    with pytest.raises(UserError):
        grid(Setting("fast", 0.05, 3, 16), repeats=0)
    summary = run_sweep(small_bench, repeats=2, log=None)
    first, second = (
        summary["settings"][k]["origins"]["eval"] for k in ("fast-eps0.05-r1-n16", "fast-eps0.05-r1-n16-pass2")
    )
    assert first["sal_ratio_vs_reference"] == pytest.approx(1.0) and "layer_rho_vs_first_pass" not in first
    # pass 2 draws another 16-image subset: its SAL differs from pass 1's, and its agreement is read against pass 1
    clean = next((small_bench / "runs").glob("clean-*")).name
    a, b = (
        json.loads((small_bench / SWEEP_DIR / label / f"{clean}.json").read_text())["epochs"]
        for label in ("fast-eps0.05-r1-n16", "fast-eps0.05-r1-n16-pass2")
    )
    assert any(a[e]["sal_eval"][k] != b[e]["sal_eval"][k] for e in a for k in a[e]["sal_eval"])
    assert -1 <= second["layer_rho_min_vs_first_pass"] <= second["layer_rho_vs_first_pass"] <= 1
    assert second["layer_rho_vs_first_pass"] == second["layer_rho_vs_reference"]  # the reference is its first pass
    assert second["sal_ratio_vs_first_pass"] > 0 and "max_abs_ud_change_vs_first_pass" in second
    assert "rho vs pass 1" in (small_bench / "sweep.md").read_text()


def test_beta_from_the_same_bench_leaves_ud_where_it_was(small_bench):
    summary = run_sweep(small_bench, beta_from=[small_bench], log=None)
    t = summary["beta_transfer"][0]
    for o in t["origins"].values():
        assert o["beta"] == pytest.approx(o["own_beta"])
        assert o["ud_transferred"] == pytest.approx(o["ud_own"])


def test_sweep_bad_input_is_one_line(small_bench, tmp_path, capsys):
    no_weights = tmp_path / "plain"
    from dataclasses import replace

    run_bench(replace(SMALL, attacks=("ops",), keep_weights=False), no_weights, progress=False, log=None)
    cases = [
        ([str(small_bench), "--eps", "0"], "eps"),
        ([str(small_bench), "--eps", "nan"], "eps"),
        ([str(small_bench), "--eps", "abc"], "--eps"),
        ([str(small_bench), "--rounds", "0"], "rounds"),
        ([str(small_bench), "--rounds", "2.5"], "--rounds"),
        ([str(small_bench), "--modes", "quick"], "mode"),
        ([str(small_bench), "--repeats", "0"], "repeats"),
        ([str(small_bench), "--repeats", "x"], "--repeats"),
        ([str(tmp_path / "nothing")], "no bench"),
        ([str(no_weights)], "kept no weights"),
    ]
    for argv, match in cases:
        code = main(["sal-sweep", *argv, "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1, (argv, err)


# ---- the probe's recorded choices ------------------------------------------------------------------------
def test_probe_transform_is_drawn_afresh_every_pass_and_once_for_a_fixed_subset():
    x = torch.full((8, 3, 8, 8), 0.5)
    y = torch.zeros(8, dtype=torch.int64)

    def zero_one_pixel(xb, yb, g):  # a transform with its own draw from the pass's generator
        out = xb.clone()
        out[:, :, int(torch.randint(0, 8, (1,), generator=g)), 0] = 0
        return out

    data = ProbeData(x, y, batch_size=8, augment=False, shuffle=False, transform=zero_one_pixel)
    g = torch.Generator().manual_seed(0)
    passes = [next(data.passes(g))[0] for _ in range(6)]
    assert all((p == 0).any() for p in passes)
    assert len({int((p[0, 0] == 0).nonzero()[0, 0]) for p in passes}) > 1  # not the same row every pass
    fixed = data.subset(8, seed=0, augment_once=True)
    assert fixed.transform is None and (fixed.inputs == 0).any()


def _train_with(defense: str, **probe):
    from uebench.training.trainer import TrainConfig, train

    config = TrainConfig(
        model="resnet18",
        width=0.125,
        recipe="quick",
        epochs=1,
        batch_size=16,
        precision="fp32",
        dataset_options={"n_train": 32, "n_test": 16},
        defense=defense,
    )
    sal = SALProbe(SALConfig(mode="fast", subset=16, rounds=1), layers=("conv1", "linear"), **probe)
    return train(config, probes=[sal], progress=False).history[0]


def test_cutout_runs_probe_with_cutout_and_other_defenses_do_not():
    assert _train_with("cutout")["sal_settings"]["probe_transform"] == "cutout"
    assert "probe_transform" not in _train_with("cutout", defense_in_probe=False)["sal_settings"]
    assert "probe_transform" not in _train_with("gray")["sal_settings"]


def test_mixup_epochs_take_the_eval_loss_as_the_running_origin_as_the_public_code():
    rec = _train_with("mixup")
    assert rec["mixed_labels"] is True and rec["sal_running_source"] == "eval" and rec["sal_origin"] == "running"
    assert rec["sal_l0"] == rec["sal_l0_eval"] == rec["sal_l0_running"] != rec["train_loss"]
    assert rec["sal"] == rec["sal_eval"] == rec["sal_running"] and rec["sal_offset"] == 0.0
    kept = _train_with("mixup", mixed_origin="running")
    assert kept["sal_l0"] == kept["train_loss"] and "sal_running_source" not in kept
    assert "mixed_labels" not in _train_with("cutout")
    with pytest.raises(UserError, match="mixed-label"):
        SALProbe(mixed_origin="mixed")
