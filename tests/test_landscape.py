"""Loss-landscape trajectories: recording and replay, loss grids, coordinate choices, PCA, statistics, the CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from uebench.cli import main as cli_main
from uebench.data import ImageDataset
from uebench.experiments.landscape import (
    LossEvaluator,
    SGDSettings,
    Tolerance,
    Trajectory,
    TrajectoryWriter,
    axis_through_zero,
    coordinate_name,
    flat_weights,
    layout,
    line_alphas,
    loss_grid,
    parameter_stats,
    pca_directions,
    recorded_steps,
    select_divergent,
    select_movers,
    set_flat_weights,
    train_recorded,
    unit_directions,
)
from uebench.experiments.landscape.pipeline import to_grey
from uebench.models import create_model
from uebench.poisons.poison import Poison, PoisonMeta
from uebench.training.trainer import evaluate_classifier


# ---- tiny data --------------------------------------------------------------------------------------------------
def toy_digits(n: int = 192, seed: int = 0, split: str = "train") -> ImageDataset:
    """28x28 grey images whose class is the row of a bright bar, plus noise: a linear model learns it in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = (torch.rand(n, 1, 28, 28, generator=g) * 60).to(torch.uint8)
    for i, c in enumerate(labels.tolist()):
        images[i, 0, 2 + 2 * c : 4 + 2 * c, 4:24] = 220
    return ImageDataset("mnist", split, images, labels, [str(i) for i in range(10)])


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_fake_mnist(folder: Path, n_train: int = 160, n_test: int = 60) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        ds = toy_digits(n, seed)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(ds.images[:, 0].numpy())))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(ds.labels.numpy())))


def model_for(ds: ImageDataset, name: str = "linear", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes=10, in_channels=1, image_size=28)


# ---- recording ------------------------------------------------------------------------------------------------
def test_recorded_steps():
    assert recorded_steps(8, 3) == [0, 3, 6, 8]
    assert recorded_steps(9, 3) == [0, 3, 6, 9]
    assert recorded_steps(4, 1) == [0, 1, 2, 3, 4]
    assert recorded_steps(5, 10) == [0, 5]


@pytest.mark.parametrize("name", ["linear", "lenet5"])
def test_trajectory_recorded_at_asked_steps_and_replays(tmp_path, name):
    ds = toy_digits(160)
    sgd = SGDSettings(epochs=2, batch_size=64, lr=0.05)  # 3 steps per epoch, 6 in all
    model = model_for(ds, name)
    init = flat_weights(model)
    # a tiny chunk size: rows spread over several chunk files, read back across their borders
    writer = TrajectoryWriter(tmp_path / "a", layout(model), chunk_bytes=2 * 4 * len(init))
    info = train_recorded(model, ds, sgd, writer, order_seed=0, record_every=4)
    traj = Trajectory.open(tmp_path / "a")
    assert info["total_steps"] == 6 and traj.finished
    assert traj.steps.tolist() == [0, 4, 6]
    assert len(list((tmp_path / "a").glob("chunk-*.npy"))) == 2
    assert np.array_equal(traj.start, init.numpy())
    assert np.array_equal(traj.end, flat_weights(model).numpy())  # the last row is the final model, bit for bit
    assert all(v is not None for v in traj.losses[1:]) and traj.losses[0] is None

    # replay: the same run recorded at every step passes through exactly the recorded weights
    model_b = model_for(ds, name)
    train_recorded(model_b, ds, sgd, TrajectoryWriter(tmp_path / "b", layout(model_b)), order_seed=0, record_every=1)
    every = Trajectory.open(tmp_path / "b")
    assert every.steps.tolist() == list(range(7))
    for i, step in enumerate(traj.steps):
        assert np.array_equal(traj.row(i), every.row(int(step)))
    # and loading a recorded row into a fresh model gives that model back
    fresh = model_for(ds, name, seed=123)
    set_flat_weights(fresh, traj.end)
    assert all(torch.equal(p, q) for p, q in zip(fresh.parameters(), model.parameters()))
    cols = traj.columns(3, 9)
    assert cols.shape == (3, 6) and np.array_equal(cols[2], traj.end[3:9])


def test_unfinished_trajectory_is_readable_prefix(tmp_path):
    w = TrajectoryWriter(tmp_path, layout(torch.nn.Linear(3, 2)), chunk_bytes=4 * 8 * 2)
    for step in range(5):
        w.append(step, np.full(8, step, np.float32))
    t = Trajectory.open(tmp_path)  # 2 chunks of 2 rows on disk, one row still buffered
    assert not t.finished and t.steps.tolist() == [0, 1, 2, 3]
    w.close()
    assert Trajectory.open(tmp_path).steps.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        w.append(4, np.zeros(8, np.float32))  # steps must increase


def test_coordinate_names():
    slots = layout(create_model("lenet5", num_classes=10, in_channels=1, image_size=28))
    assert coordinate_name(slots, 0) == "conv1.weight[0, 0, 0, 0]"
    assert coordinate_name(slots, 150) == "conv1.bias[0]"  # 6 * 1 * 5 * 5 weights come first
    lin = layout(create_model("linear", num_classes=10, in_channels=1, image_size=28))
    assert coordinate_name(lin, 785) == "fc.weight[1, 1]" and coordinate_name(lin, 7849) == "fc.bias[9]"


# ---- loss grid and line ---------------------------------------------------------------------------------------
def test_loss_grid_at_end_point_equals_model_loss(tmp_path):
    ds = toy_digits(160)
    model = model_for(ds)
    traj_writer = TrajectoryWriter(tmp_path, layout(model))
    train_recorded(model, ds, SGDSettings(epochs=1, batch_size=32), traj_writer, order_seed=0)
    traj = Trajectory.open(tmp_path)
    end_loss, _ = evaluate_classifier(model, ds, torch.device("cpu"), channels_last=False)
    probe = model_for(ds, seed=5)
    ev = LossEvaluator(probe, ds, batch_size=50)
    d = unit_directions(select_movers(traj.start, traj.end), traj.num_params)
    alphas, betas = axis_through_zero(-0.3, 0.1, 5), axis_through_zero(-0.05, 0.2, 6)
    grid = loss_grid(ev, traj.end, d, alphas, betas)
    assert grid.shape == (6, 5)
    i0, j0 = int(np.flatnonzero(betas == 0)[0]), int(np.flatnonzero(alphas == 0)[0])
    assert grid[i0, j0] == pytest.approx(end_loss, rel=1e-6)
    # another cell: the model with exactly those two weights moved
    w = traj.end.astype(np.float64) + alphas[1] * d[0] + betas[4] * d[1]
    set_flat_weights(model, w.astype(np.float32))
    assert grid[4, 1] == pytest.approx(
        evaluate_classifier(model, ds, torch.device("cpu"), channels_last=False)[0], rel=1e-6
    )
    assert len(set(np.round(grid.ravel(), 6))) > 1  # the plane is not flat


def test_axes_hold_zero_and_line_holds_both_ends():
    for lo, hi, n in [(-1.0, 3.0, 7), (0.0, 2.0, 5), (-2.0, 0.0, 4), (-0.013, 0.8, 25), (0.0, 0.0, 3)]:
        ax = axis_through_zero(lo, hi, n)
        assert len(ax) == n and 0.0 in ax and np.all(np.diff(ax) > 0)
    a = line_alphas(29)
    assert 0.0 in a and 1.0 in a and a[0] < 0 and a[-1] > 1


# ---- coordinate choices -------------------------------------------------------------------------------------------
def hand_made(
    tmp_path: Path, name: str, start: np.ndarray, moves: dict[int, float], steps: int = 6, seed: int = 0
) -> Trajectory:
    """A straight trajectory with small noise where weights `moves` travel the given amounts."""
    rng = np.random.default_rng(seed)
    end = start + rng.normal(0, 0.01, start.shape)
    for j, m in moves.items():
        end[j] = start[j] + m
    w = TrajectoryWriter(tmp_path / name, layout(torch.nn.Linear(len(start) - 1, 1)))
    for s in range(steps + 1):
        w.append(
            s,
            (start + (end - start) * s / steps + (rng.normal(0, 0.002, start.shape) if 0 < s < steps else 0)).astype(
                np.float32
            ),
        )
    w.close()
    return Trajectory.open(tmp_path / name)


def test_selection_picks_the_known_movers_and_divergers(tmp_path):
    start = np.random.default_rng(1).normal(0, 0.1, 50)
    clean = hand_made(tmp_path, "clean", start, {7: 2.0, 31: -1.5, 12: 0.5}, seed=1)
    poisoned = hand_made(tmp_path, "poisoned", start, {7: 2.0, 31: -1.5, 12: 3.0, 3: -2.6}, seed=2)
    assert select_movers(clean.start, clean.end) == [7, 31]
    assert select_movers(poisoned.start, poisoned.end) == [12, 3]
    assert select_divergent(clean.end, poisoned.end) == [3, 12]  # 2.6 away, then 2.5
    assert select_movers(np.zeros(4), np.array([1.0, -3.0, 3.0, 0.0])) == [1, 2]  # ties: lower index first


def test_pca_directions_orthonormal_and_span_the_motion(tmp_path):
    start = np.zeros(40)
    a = hand_made(tmp_path, "a", start, {5: 3.0, 9: 1.0}, steps=8, seed=3)
    b = hand_made(tmp_path, "b", start, {5: 1.0, 20: -2.5}, steps=8, seed=4)
    dirs, ratio = pca_directions([a, b])
    assert dirs.shape == (2, 40)
    assert np.allclose(dirs @ dirs.T, np.eye(2), atol=1e-10)
    assert 0 < ratio[1] <= ratio[0] and ratio.sum() <= 1 + 1e-12 and ratio.sum() > 0.95
    # the motion (weights 5, 9, 20) lies in the plane; a block-wise computation gives the same plane
    assert np.abs(dirs[:, [5, 9, 20]]).sum(axis=1).min() > 0.9
    small, _ = pca_directions([a, b], max_bytes=8 * 18 * 3)  # 3 columns per block
    assert np.allclose(np.abs(small @ dirs.T), np.eye(2), atol=1e-8)


def test_parameter_stats_constructed():
    start = np.zeros(100)
    clean = np.linspace(0.01, 1.0, 100)  # weight 99 moves most
    poisoned = clean.copy()
    poisoned[:50] += 10.0  # half the weights end far from the clean end point
    control = clean * 1.05  # within 10% of every clean move
    st = parameter_stats(start, {"clean": clean, "poisoned": poisoned, "control": control}, Tolerance(0.1, "relative"))
    assert st["runs"]["poisoned"]["within_tol"]["all"] == pytest.approx(0.5)
    assert st["runs"]["poisoned"]["within_tol"]["top1%"] == 1.0 and st["runs"]["control"]["within_tol"]["all"] == 1.0
    assert st["runs"]["clean"]["displacement"]["q1"] == pytest.approx(1.0)
    assert sum(st["runs"]["clean"]["histogram"]) == 100
    absolute = parameter_stats(start, {"clean": clean, "poisoned": poisoned}, Tolerance(0.5, "absolute"))
    assert absolute["runs"]["poisoned"]["within_tol_count"] == 50
    # weights that never move (MNIST's always-black border pixels on a linear model) are counted, not histogrammed
    clean[:7] = 0.0
    st = parameter_stats(start, {"clean": clean, "poisoned": poisoned}, Tolerance(0.1))
    assert st["runs"]["clean"]["unmoved"] == 7 and sum(st["runs"]["clean"]["histogram"]) == 93
    assert st["runs"]["poisoned"]["unmoved"] == 0


def test_to_grey():
    rgb = ImageDataset(
        "scenes",
        "train",
        torch.tensor([[[[255]], [[0]], [[0]]], [[[10]], [[10]], [[10]]]], dtype=torch.uint8),
        torch.tensor([0, 1]),
        ["a", "b"],
    )
    grey = to_grey(rgb)
    assert grey.images.shape == (2, 1, 1, 1) and grey.images.flatten().tolist() == [76, 10]


# ---- the command line -------------------------------------------------------------------------------------------
def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli_main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--model", "resnet99"], "unknown model for landscape 'resnet99'; valid: lenet5, linear"),
        (["--attack", "nope"], "unknown attack 'nope'"),
        (["--coords", "movers,zigzag"], "unknown coordinate choice 'zigzag'"),
        (["--grid", "1"], "--grid must be in [3, 401]"),
        (["--dataset", "cifar10"], "unknown dataset for landscape 'cifar10'"),
        (["--tol-mode", "fuzzy"], "unknown tolerance mode 'fuzzy'"),
    ],
)
def test_cli_refuses_bad_input(tmp_path, capsys, extra, needle):
    code, _, err = run_cli(["landscape", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), *extra], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_missing_data_and_poison(tmp_path, capsys):
    code, _, err = run_cli(["landscape", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o")], capsys)
    assert (
        code == 2
        and "mnist" in err
        and "--data-dir" in err
        and "--dataset scenes" in err
        and len(err.strip().splitlines()) == 1
    )
    write_fake_mnist(tmp_path / "data")
    code, _, err = run_cli(
        [
            "landscape",
            "--data-dir",
            str(tmp_path / "data"),
            "--poison",
            str(tmp_path / "none.safetensors"),
            "--out",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert code == 2 and "poison file not found" in err and len(err.strip().splitlines()) == 1


def test_cli_end_to_end_writes_figures_json_html(tmp_path, capsys):
    write_fake_mnist(tmp_path / "data")
    out = tmp_path / "out"
    args = [
        "landscape",
        "--dataset",
        "mnist",
        "--data-dir",
        str(tmp_path / "data"),
        "--model",
        "linear",
        "--attack",
        "ops",
        "--subset",
        "0",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--grid",
        "5",
        "--eval-size",
        "64",
        "--record-every",
        "3",
        "--out",
        str(out),
        "--quiet",
    ]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    for name in (
        "plane-movers.png",
        "plane-divergent.png",
        "plane-pca.png",
        "line.png",
        "displacements.png",
        "distance.png",
        "landscape.json",
        "landscape-data.json",
        "report.html",
        "poison.safetensors",
        "config.json",
    ):
        assert (out / name).is_file(), name
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = json.loads((out / "landscape.json").read_text())
    assert s["training"]["total_steps"] == 10 and s["training"]["record_every"] == 3  # 160 images / 32 = 5 steps x 2
    assert Trajectory.open(out / "traj" / "poisoned").steps.tolist() == [0, 3, 6, 9, 10]
    assert set(s["runs"]) == {"clean", "poisoned", "control"}
    assert s["data"]["poison_meta"]["attack"] == "ops"
    assert set(s["stats"]["runs"]["poisoned"]["within_tol"]) == {"all", "top1%", "top10%"}
    data = json.loads((out / "landscape-data.json").read_text())
    assert s["line_end_loss"]["clean"] == pytest.approx(
        data["planes"]["movers"]["panels"]["clean"]["center_loss"], rel=1e-5
    )
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6 and "<table>" in page

    # the same command again reuses the recorded runs (a changed grid only redoes the analysis) ...
    mtime = (out / "traj" / "clean" / "index.json").stat().st_mtime_ns
    code, _, err = run_cli([*args[:-3], "--grid", "3", "--coords", "movers", "--out", str(out), "--quiet"], capsys)
    assert code == 0, err
    assert (out / "traj" / "clean" / "index.json").stat().st_mtime_ns == mtime
    # ... and other training settings are refused without --overwrite
    code, _, err = run_cli([*args[:-3], "--lr", "0.2", "--out", str(out), "--quiet"], capsys)
    assert code == 2 and "--overwrite" in err and "lr" in err


def test_cli_with_poison_file_and_lenet(tmp_path, capsys):
    write_fake_mnist(tmp_path / "data", n_train=100)
    from uebench.data import load

    clean = load("mnist", tmp_path / "data", "train")
    # a hand-made class-wise patch poison on the first 80 images
    idx = torch.arange(80)
    imgs = clean.images[idx].clone()
    for i in idx.tolist():
        c = int(clean.labels[i])
        imgs[i, 0, 24:27, 2 * c : 2 * c + 3] = 255
    meta = PoisonMeta(attack="handmade", dataset="mnist", dataset_size=100, norm="none", budget=0.0)
    Poison(imgs, clean.labels[idx].clone(), idx, meta).save(tmp_path / "p.safetensors")
    out = tmp_path / "out"
    code, _, err = run_cli(
        [
            "landscape",
            "--data-dir",
            str(tmp_path / "data"),
            "--model",
            "lenet5",
            "--poison",
            str(tmp_path / "p.safetensors"),
            "--subset",
            "60",
            "--epochs",
            "1",
            "--batch-size",
            "20",
            "--grid",
            "3",
            "--eval-size",
            "30",
            "--coords",
            "pca",
            "--no-control",
            "--out",
            str(out),
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    s = json.loads((out / "landscape.json").read_text())
    assert s["data"]["train_images"] == 60 and s["data"]["poison"].startswith("file ")
    assert set(s["runs"]) == {"clean", "poisoned"} and (out / "plane-pca.png").is_file()
    assert not (out / "poison.safetensors").exists()


def test_subset_seed_draws_the_training_images_and_the_poison_covers_them(tmp_path):
    from uebench.data import load
    from uebench.experiments.landscape.pipeline import LandscapeConfig, make_poison, training_sets
    from uebench.experiments.workspace import Workspace

    ws = Workspace(tmp_path, "landscape.json", "landscape")

    def images(**kw):
        cfg = LandscapeConfig(dataset="scenes", attack="ops", subset=20, **kw)
        full = to_grey(load("scenes", split="train", size=28, n_train=60, n_test=10))  # more images than n_train
        poison, _ = make_poison(cfg, full, ws, progress=False)  # one folder: a kept poison is reused only if it fits
        clean, _ = training_sets(cfg, full, poison)
        assert torch.equal(poison.indices.sort().values, clean.indices)  # crafted on exactly the training images
        return clean.indices

    assert torch.equal(images(seed=0, subset_seed=3), images(seed=1, subset_seed=3))
    assert torch.equal(images(seed=1), images(seed=0, subset_seed=1))  # unset: the training seed, as before
    assert not torch.equal(images(seed=0), images(seed=0, subset_seed=1))
    assert "subset_seed" not in LandscapeConfig().training_key()


def test_scenes_is_generated_standard_as_every_landscape_folder_was():
    """Landscape's config names no dataset options: its scenes stay `standard` (the loader's default before 0.2.0)."""
    from uebench.experiments.landscape.pipeline import LandscapeConfig, load_data

    train_set, test_set = load_data(LandscapeConfig(dataset="scenes", subset=32))
    assert train_set.meta["difficulty"] == test_set.meta["difficulty"] == "standard"
    assert train_set.meta["options"]["difficulty"] == "standard" and train_set.images.shape[1] == 1
