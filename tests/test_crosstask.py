"""Cross-task unlearnability: tasks, derived targets, Taskonomy reader, multi-task model and attack, experiment, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from uebench import data
from uebench.cli import main
from uebench.core.errors import UserError
from uebench.data.base import ImageDataset
from uebench.experiments.crosstask import TASKS, get_tasks
from uebench.experiments.crosstask import metrics as M
from uebench.experiments.crosstask.augment import crop_flip_joint
from uebench.experiments.crosstask.derived import canny_edges, derive, felzenszwalb_segments, harris_keypoints
from uebench.experiments.crosstask.training import Settings, build_net, fit_multitask, task_data, trivial_scores
from uebench.report.crosstask_results import CrossTaskResults
from uebench.training.recipes import RECIPES

ALL_TASKS = ("class", "segment", "unsup", "depth", "edges", "keypoints", "autoencode", "denoise")


def scenes(n: int, split: str = "train", size: int = 32, **kw) -> ImageDataset:
    key = "n_train" if split == "train" else "n_test"
    return data.load("scenes", split=split, size=size, num_classes=kw.pop("num_classes", 10), **{key: n}, **kw)


def train_tasks(names, train_ds, test_ds, *, epochs, batch=32, width=0.125, sal=False, lr=0.1):
    tasks = get_tasks(names)
    tr, te = task_data(train_ds, tasks, "missing"), task_data(test_ds, tasks, "missing")
    channels = {t.name: t.channels(train_ds) for t in tasks}
    s = Settings(
        width=width,
        recipe=RECIPES.get("quick").with_overrides(epochs=epochs, batch_size=batch, lr=lr),
        sal=sal,
        sal_subset=32,
        sal_rounds=2,
    )
    net = build_net(tasks, channels, s)
    history = fit_multitask(net, tr, te, tasks, s, progress=False)
    return tasks, tr, te, net, history, trivial_scores(tr, te, tasks)


def margin_ok(task, value, trivial, margin):
    return value > trivial + margin if task.higher_is_better else value < trivial - margin


# ---- metrics -----------------------------------------------------------------------------------------------
def test_metrics_on_known_answers():
    t = torch.tensor([[0, 0, 1, 1], [2, 2, 2, -1]])
    assert M.mean_iou(t.clamp_min(0), t, 3) == pytest.approx(100.0)
    assert M.mean_iou(torch.zeros_like(t), t, 3) == pytest.approx(100 * (2 / 7) / 3)
    y = torch.tensor([1, 0, 0, 1, -1, 0, 0, 0])
    assert M.average_precision(torch.full((8,), 0.3), y) == pytest.approx(100 * 2 / 7)  # a constant: the positive rate
    assert M.average_precision(torch.tensor([0.9, 0.1, 0.2, 0.8, 0.5, 0, 0, 0]), y) == pytest.approx(100.0)
    assert M.best_f1(torch.tensor([0.9, 0.1, 0.2, 0.8, 0.5, 0, 0, 0]), y) == pytest.approx(100.0)
    assert M.adjusted_rand_from_pairs(5, 0, 0, 7) == pytest.approx(1.0)
    assert M.adjusted_rand_from_pairs(10, 5, 0, 0) == pytest.approx(0.0)  # "all pairs the same": chance level
    assert M.psnr(torch.zeros(4), torch.full((4,), 0.1)) == pytest.approx(20.0)


def test_unsupervised_segmentation_metric_ignores_label_permutations():
    unsup = TASKS.get("unsup")
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 4, (3, 16, 16)))
    perm = torch.tensor([2, 0, 3, 1])[ids]
    # a perfect affinity prediction from one labelling scores 1 against any relabelling of it
    from uebench.experiments.crosstask.tasks import AFFINITY_OFFSETS, _affinity

    prob = torch.zeros(3, len(AFFINITY_OFFSETS), 16, 16)
    for k, (dy, dx) in enumerate(AFFINITY_OFFSETS):
        same, _ = _affinity(ids, dy, dx)
        prob[:, k, : 16 - dy, : 16 - dx] = same.float()
    assert unsup.score(prob, ids)["ARI"] == pytest.approx(1.0)
    assert unsup.score(prob, perm)["ARI"] == pytest.approx(1.0)
    trivial = unsup.trivial(ids, ids)
    assert unsup.score(trivial, perm)["ARI"] == pytest.approx(0.0, abs=1e-9)


def test_task_registry_and_relative_drop():
    assert set(ALL_TASKS) <= set(TASKS.names())
    with pytest.raises(UserError, match="unknown task 'normals'; valid: .*segment"):
        get_tasks("class,normals")
    acc, depth = TASKS.get("class"), TASKS.get("depth")
    assert acc.drop(80.0, 20.0) == pytest.approx(0.75) and depth.drop(0.1, 0.15) == pytest.approx(0.5)
    assert acc.retained(80.0, 45.0, 10.0) == pytest.approx(0.5) and depth.retained(0.1, 0.2, 0.2) == pytest.approx(0.0)


# ---- derived targets -----------------------------------------------------------------------------------------
def square_image(size=32, lo=8, hi=24) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    img[lo:hi, lo:hi] = 255
    return img


def test_canny_edges_lie_on_the_edge_drawn():
    e = canny_edges(square_image())
    assert e.dtype == np.uint8 and e.shape == (32, 32) and e.sum() > 40
    ys, xs = np.nonzero(e)
    # every edge pixel is within one pixel of the square's boundary (rows/cols 7.5 and 23.5)
    dist = np.minimum.reduce([np.abs(ys - 7.5), np.abs(ys - 23.5), np.abs(xs - 7.5), np.abs(xs - 23.5)])
    inside_band = (ys >= 6) & (ys <= 25) & (xs >= 6) & (xs <= 25)
    assert (dist <= 1.5).all() and inside_band.all()
    assert canny_edges(np.full((32, 32, 3), 90, np.uint8)).sum() == 0  # a flat image has no edge


def test_corners_and_superpixels_of_a_drawn_square():
    k = harris_keypoints(square_image())
    ys, xs = np.nonzero(k)
    assert len(ys) >= 4
    corners = np.array([[8, 8], [8, 23], [23, 8], [23, 23]])
    d = np.abs(np.stack([ys, xs], 1)[:, None] - corners[None]).max(-1).min(1)
    assert (d <= 2).all()  # every detection sits on a corner
    assert harris_keypoints(np.zeros((32, 32, 3), np.uint8)).sum() == 0
    seg = felzenszwalb_segments(square_image())
    assert seg[16, 16] == seg[10, 20] and seg[16, 16] != seg[2, 2] and seg[2, 2] == seg[30, 30]


def test_derived_targets_deterministic_cached_and_shaped():
    ds = scenes(24)
    for kind, dtype in (("edges", torch.uint8), ("keypoints", torch.uint8), ("unsup", torch.int64)):
        a = derive(kind, ds.images)
        assert a.shape == (24, 32, 32) and a.dtype == dtype
        assert derive(kind, ds.images) is a  # cached in memory
        assert torch.equal(derive(kind, ds.images.clone()), a)
    from uebench.experiments.crosstask.derived import clear_cache

    edges = derive("edges", ds.images)
    clear_cache()
    assert torch.equal(derive("edges", ds.images), edges)  # recomputed: the same bytes
    td = task_data(ds, get_tasks(ALL_TASKS), "always")
    assert td.sources["edges"].startswith("Canny") and td.sources["segment"].startswith("scenes")
    assert td.targets["keypoints"].shape == (24, 32, 32) and td.targets["autoencode"].shape == (24, 3, 32, 32)
    own = task_data(ds, get_tasks("edges"), "missing")
    assert torch.equal(own.targets["edges"], ds.targets["edges"].float())


def test_joint_crop_flip_moves_targets_with_pixels():
    n, h = 6, 12
    pos = torch.arange(h * h, dtype=torch.float32).view(1, 1, h, h).expand(n, 1, h, h) + 1
    targets = {"seg": pos[:, 0].long(), "depth": pos[:, 0].clone(), "label": torch.arange(n)}
    x, t = crop_flip_joint(
        pos.clone(), targets, {"seg": -1, "depth": float("nan"), "label": -1}, torch.Generator().manual_seed(3)
    )
    moved = x[:, 0]
    assert torch.equal(t["label"], torch.arange(n))
    assert torch.equal(t["seg"] == -1, moved == 0) and torch.equal(torch.isnan(t["depth"]), moved == 0)
    keep = moved > 0
    assert torch.equal(t["seg"][keep].float(), moved[keep]) and torch.equal(t["depth"][keep], moved[keep])


# ---- Taskonomy ------------------------------------------------------------------------------------------------
def write_taskonomy(root: Path, n: int = 12, size: int = 40, with_depth: bool = True) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        stem = f"building{i % 2}/point_{i}_view_0_domain_"

        def put(domain, arr, ext="png", stem=stem):
            p = root / domain / f"{stem}{domain}.{ext}"
            p.parent.mkdir(parents=True, exist_ok=True)
            if ext == "npy":
                np.save(p, arr)
            else:
                Image.fromarray(arr).save(p)

        put("rgb", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        put("class_scene", np.eye(5)[i % 5], "npy")
        put("segment_semantic", np.full((size, size), i % 3, np.uint8))
        put("segment_unsup2d", (np.arange(size)[None, :].repeat(size, 0) // 10).astype(np.uint8))
        if with_depth:
            d = np.full((size, size), 1024, np.uint16)
            d[:5] = 65535
            put("depth_zbuffer", d)
        e = np.zeros((size, size), np.uint8)
        e[:, 20] = 255
        put("edge_texture", e)
        put("keypoints2d", np.zeros((size, size), np.uint8))


def test_taskonomy_fixture_reads(tmp_path):
    write_taskonomy(tmp_path)
    tr = data.load("taskonomy", tmp_path, "train", size=16)
    te = data.load("taskonomy", tmp_path, "test", size=16)
    assert len(tr) + len(te) == 12 and len(te) > 0 and len(tr) > 0
    assert tr.images.shape[1:] == (3, 16, 16) and tr.num_classes == 5
    assert set(tr.targets) == {"segment", "unsup", "depth", "edges", "keypoints"}
    d = tr.targets["depth"]
    assert torch.isnan(d[:, :2]).all() and torch.allclose(d[:, 4:], torch.tensor(2.0))  # 1024 / 512 m
    assert tr.targets["edges"].sum(dim=(1, 2)).min() > 0 and tr.targets["segment"].dtype == torch.int64
    td = task_data(tr, get_tasks("class,segment,unsup,depth,edges"), "missing")
    assert td.sources["unsup"] == "taskonomy 'unsup' target"
    again = data.load("taskonomy", tmp_path, "train", size=16)
    assert torch.equal(again.images, tr.images) and torch.equal(again.labels, tr.labels)


def test_taskonomy_refuses_partial_and_missing_folders(tmp_path):
    write_taskonomy(tmp_path, n=4)
    next((tmp_path / "depth_zbuffer").rglob("*.png")).unlink()
    with pytest.raises(UserError, match="depth_zbuffer/ lacks sample"):
        data.load("taskonomy", tmp_path, "train")
    with pytest.raises(UserError, match="no 'rgb' folder"):
        data.load("taskonomy", tmp_path / "nothing", "train")


# ---- learning on clean data ------------------------------------------------------------------------------------
def colour_classes(n: int, split: str) -> ImageDataset:
    """4 classes told apart by a colour tint over noise: a class task any working pipeline learns in 2 epochs."""
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    labels = torch.arange(n) % 4
    tint = torch.tensor([[60, 0, 0], [0, 60, 0], [0, 0, 60], [60, 60, 0]])[labels]
    x = torch.randint(0, 160, (n, 3, 16, 16), generator=g) + tint[:, :, None, None]
    return ImageDataset("colours", split, x.clamp(0, 255).to(torch.uint8), labels, ["r", "g", "b", "y"])


def test_class_task_learns_on_clean_data():
    tasks, *_, history, trivial = train_tasks(
        "class", colour_classes(256, "train"), colour_classes(128, "test"), epochs=4
    )
    assert history[-1]["test"]["class"]["accuracy"] > trivial["class"]["accuracy"] + 20


@pytest.fixture(scope="module")
def dense_run():
    """One multi-task model on small 32x32 scenes: the 2-D tasks that learn in a few epochs, with per-task SAL."""
    return train_tasks("unsup,edges,keypoints,autoencode,denoise", scenes(512), scenes(128, "test"), epochs=4, sal=True)


MARGINS = {
    "unsup": 0.1,
    "edges": 5.0,
    "keypoints": 5.0,
    "autoencode": 1.5,
    "denoise": 1.5,
    "segment": 1.0,
    "depth": 0.01,
}


def test_dense_tasks_learn_on_clean_data(dense_run):
    tasks, *_, history, trivial = dense_run
    for t in tasks:
        got = history[-1]["test"][t.name][t.metric]
        assert margin_ok(t, got, trivial[t.name][t.metric], MARGINS[t.name]), (t.name, got, trivial[t.name][t.metric])


def test_segmentation_and_depth_learn_on_clean_data():
    """The slowest learners on `scenes` (which object is in front of what needs context): 16x16 scenes, 6 epochs."""
    tasks, *_, history, trivial = train_tasks(
        "segment,depth", scenes(1024, size=16, num_classes=2), scenes(256, "test", size=16, num_classes=2), epochs=6
    )
    for t in tasks:
        got = history[-1]["test"][t.name][t.metric]
        assert margin_ok(t, got, trivial[t.name][t.metric], MARGINS[t.name]), (t.name, got, trivial[t.name][t.metric])


def test_multitask_model_trains_and_probes_sal_per_task(dense_run):
    tasks, tr, _, net, history, _ = dense_run
    for t in tasks:
        losses = [h["train_task_loss"][t.name] for h in history]
        assert losses[-1] < losses[0], (t.name, losses)
    sal = history[-1]["task_sal"]
    layers = [n.removeprefix("encoder.") for n in net.encoder_layers()]
    assert set(sal) == {t.name for t in tasks} and len(layers) == 20
    for t in tasks:
        assert list(sal[t.name]["sal"]) == layers and all(v >= 0 for v in sal[t.name]["sal"].values())
    assert "task_sal" not in history[0]  # sal_every=0: the last epoch only


def test_cifar_provides_derived_tasks_but_not_depth(shared_data):
    ds = data.seeded_subset(data.load("cifar10", shared_data, "train"), 40)
    td = task_data(ds, get_tasks("class,unsup,edges,keypoints,autoencode,denoise"), "missing")
    assert td.targets["edges"].shape == (40, 32, 32) and 0.02 < float(td.targets["edges"].mean()) < 0.5
    assert td.sources["keypoints"].startswith("Harris")
    with pytest.raises(UserError, match="task 'depth' cannot be had from dataset cifar10"):
        task_data(ds, get_tasks("depth"), "missing")


# ---- multi-task attack ---------------------------------------------------------------------------------------
def test_em_crafted_against_the_multitask_loss():
    from uebench.attacks import craft
    from uebench.experiments.crosstask.attack import craft_multitask

    ds = scenes(64)
    tasks = get_tasks("class,edges")
    td = task_data(ds, tasks, "missing")
    params = {"max_rounds": 1, "steps": 2, "train_steps": 2, "batch_size": 32}
    p = craft_multitask(
        "em",
        ds,
        ds,
        td.targets,
        tasks,
        {"class": 10, "edges": 1},
        subset=None,
        preset="fast",
        seed=0,
        params=params,
        weights={},
        encoder="resnet18",
        progress=False,
    )
    assert p.meta.variant == "multitask" and p.meta.extra["tasks"] == ["class", "edges"]
    assert p.measure(ds)["linf"] <= 8 / 255 + 1e-6 and (p.images != ds.images).any()
    plain = craft("em", ds, preset="fast", seed=0, progress=False, **params)
    assert not torch.equal(plain.images, p.images)
    # the attack API itself refuses an objective for an attack that has no model and loss to swap
    from uebench.experiments.crosstask.attack import MultiTaskObjective

    objective = MultiTaskObjective(tasks, {"class": 10, "edges": 1}, td.targets, ds.indices)
    with pytest.raises(UserError, match="no crafting model and loss to swap.*em"):
        craft("ops", ds, preset="paper", seed=0, progress=False, objective=objective)
    with pytest.raises(UserError, match="multi-task crafting is available for: em"):
        craft_multitask(
            "ops",
            ds,
            ds,
            td.targets,
            tasks,
            {"class": 10, "edges": 1},
            subset=None,
            preset="paper",
            seed=0,
            params={},
            weights={},
            encoder="resnet18",
            progress=False,
        )


def test_pcgrad_by_hand():
    from uebench.attacks._crafting import pcgrad

    g1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    g2 = torch.tensor([[-1.0, 1.0], [1.0, 1.0]])  # sample 0: the tasks conflict; sample 1: they agree
    out = pcgrad([g1, g2])
    # sample 0: g1 - (-1/2) g2 = (0.5, 0.5) and g2 - (-1/1) g1 = (0, 1), summed; sample 1: the plain sum
    assert torch.allclose(out, torch.tensor([[0.5, 1.5], [2.0, 1.0]]))
    # with two tasks the combined step never goes against either task's own gradient
    g = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    h = -g + 0.3 * torch.randn(3, 64, generator=torch.Generator().manual_seed(1))
    both = pcgrad([g, h])
    assert ((both * g).sum(1) >= -1e-5).all() and ((both * h).sum(1) >= -1e-5).all()
    assert ((g + h) * g).sum(1).min() < 0 or ((g + h) * h).sum(1).min() < 0  # the plain sum does go against one


def test_em_crafted_with_pcgrad_across_tasks():
    from uebench.experiments.crosstask.attack import craft_multitask

    ds = scenes(64)
    tasks = get_tasks("class,edges")
    td = task_data(ds, tasks, "missing")
    args = dict(subset=None, preset="fast", seed=0, weights={}, encoder="resnet18", progress=False)
    params = {"max_rounds": 1, "steps": 2, "train_steps": 2, "batch_size": 32}
    channels = {"class": 10, "edges": 1}
    summed = craft_multitask("em", ds, ds, td.targets, tasks, channels, params=params, **args)
    pc = craft_multitask("em", ds, ds, td.targets, tasks, channels, params=params, combine="pcgrad", **args)
    assert pc.meta.variant == "multitask-pcgrad" and pc.meta.extra["combine"] == "pcgrad"
    assert pc.measure(ds)["linf"] <= 8 / 255 + 1e-6 and not torch.equal(pc.images, summed.images)
    with pytest.raises(UserError, match="sample-wise noise only"):
        craft_multitask(
            "em", ds, ds, td.targets, tasks, channels, params={**params, "mode": "classwise"}, combine="pcgrad", **args
        )


# ---- the experiment and its CLI ----------------------------------------------------------------------------------
def test_cli_end_to_end_writes_report_and_resumes(tmp_path, capsys):
    out = tmp_path / "ct"
    args = [
        "crosstask",
        "--data-option",
        "n_train=96",
        "--data-option",
        "n_test=48",
        "--tasks",
        "class,edges,unsup",
        "--attacks",
        "ops",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--sal-subset",
        "16",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| edges | AP |" in printed and "report written" in printed
    for f in (
        "report.html",
        "results.json",
        "table.md",
        "table.csv",
        "figures/metrics.png",
        "figures/similarity.png",
        "poisons/ops.safetensors",
        "runs/clean/single-edges/summary.json",
        "runs/ops/single-class/summary.json",
    ):
        assert (out / f).is_file(), f
    results = json.loads((out / "results.json").read_text())
    assert results["versions"] == ["clean", "ops"] and set(results["per_task"]) == {"class", "edges", "unsup"}
    assert CrossTaskResults.from_dict(results).to_dict() == results  # typed records read back, absent keys kept absent
    for task, row in results["per_task"].items():  # a drop only where the clean model beat the trivial predictor
        cell = row["versions"]["ops"]
        assert "final" in cell and ("drop" in cell and "retained" in cell) == row["clean_learned"], task
        assert row["clean_learned"] or "does not beat the trivial predictor" in row["note"]
    assert results["learned"]["ops"] in ("yes", "partly", "no", "unknown")  # the class head's shortcut probe
    assert "| learned (class shortcut probe) |" in (out / "table.md").read_text()
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Margin over the trivial predictor" in html
    ckpt = out / "runs/ops/single-edges/checkpoint.pt"
    stamp = ckpt.stat().st_mtime_ns
    assert main(args) == 0  # a rerun: every run finished, nothing retrained
    assert ckpt.stat().st_mtime_ns == stamp
    assert main([*args[:-3], "--epochs", "2", "--out", str(out), "--quiet"]) == 2  # another configuration, same folder
    assert "another configuration" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tasks", "class,normals"], "unknown task 'normals'"),
        (["--attacks", "em,nope"], "unknown attack 'nope'"),
        (["--dataset", "imagenet-9000"], "unknown dataset"),
        (["--attacks", "ops", "--multitask-attacks"], "multi-task crafting needs a model-based attack"),
        (["--attacks", "missing.safetensors"], "poison file not found"),
        (["--preset", "huge"], "unknown crosstask preset 'huge'"),
        (["--attacks", "ops", "--attack-option", "ar.eps=1"], "not among the attacks"),
        (["--attacks", "em", "--multitask-attacks", "--multitask-combine", "mgda"], "unknown multi-task combine mgda"),
    ],
)
def test_cli_bad_inputs_exit_2(tmp_path, capsys, extra, message):
    assert main(["crosstask", "--out", str(tmp_path / "o"), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_task_the_dataset_cannot_provide_exits_2(tmp_path, capsys):
    write_taskonomy(tmp_path / "tk", n=6, with_depth=False)
    code = main(
        [
            "crosstask",
            "--dataset",
            "taskonomy",
            "--data-dir",
            str(tmp_path / "tk"),
            "--tasks",
            "class,depth",
            "--attacks",
            "ops",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ]
    )
    assert code == 2 and "task 'depth' cannot be had from dataset taskonomy" in capsys.readouterr().err


def test_cli_lists_tasks(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ALL_TASKS)


def test_unsup_trivial_scores_zero_even_when_offsets_differ():
    """A constant per offset ("near pixels: same segment; far ones: different") knows nothing of the image."""
    unsup = TASKS.get("unsup")
    r = torch.arange(32) // 6
    ids = (r[:, None] * 10 + r[None, :]).expand(4, 32, 32).clone()  # 6x6 blocks: near pairs mostly same, far ones not
    assert unsup.score(unsup.trivial(ids, ids), ids)["ARI"] == pytest.approx(0.0, abs=1e-9)


def test_subset_seed_draws_the_subsets_and_the_training_seed_only_the_noise():
    from uebench.experiments.crosstask.experiment import CrossTaskConfig, load_splits

    tasks = get_tasks("class")
    opts = {"n_train": 96, "n_test": 64}

    def splits(**kw):
        return load_splits(CrossTaskConfig(dataset_options=opts, subset=40, test_subset=30, **kw), tasks)

    old = splits(seed=1)  # as before the option existed: the training seed draws the subsets
    fixed = [splits(seed=s, subset_seed=5) for s in (0, 1)]
    assert torch.equal(fixed[0].train.indices, fixed[1].train.indices)
    assert torch.equal(fixed[0].test.indices, fixed[1].test.indices)
    assert not torch.equal(old.train.indices, fixed[1].train.indices)
    assert torch.equal(old.train.indices, splits(seed=0, subset_seed=1).train.indices)
    # unset, it is absent from the record, so folders made before it keep their identity
    assert (
        "subset_seed" not in CrossTaskConfig().to_dict()
        and CrossTaskConfig(subset_seed=5).to_dict()["subset_seed"] == 5
    )


def test_scenes_without_a_difficulty_is_standard_as_every_crosstask_folder_was_made():
    """The config is the folder's identity and records the dataset options as given: scenes' loader default moved to
    `natural` in 0.2.0, crosstask's meaning of a difficulty left out did not (`standard`)."""
    from uebench.experiments.crosstask.experiment import CrossTaskConfig, load_splits

    tasks = get_tasks("class")
    opts = {"n_train": 48, "n_test": 16}
    left_out = load_splits(CrossTaskConfig(dataset_options=opts), tasks)
    assert left_out.full.meta["difficulty"] == "standard" and left_out.test.meta["difficulty"] == "standard"
    given = load_splits(CrossTaskConfig(dataset_options={**opts, "difficulty": "natural"}), tasks)
    assert given.full.meta["difficulty"] == "natural"
    assert CrossTaskConfig(dataset_options=opts).to_dict()["dataset_options"] == opts  # the identity is unchanged
