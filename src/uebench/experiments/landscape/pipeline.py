"""The landscape experiment end to end: data, poison, three recorded runs, planes, grids, statistics, files.

Runs (same initial weights; plain SGD, no augmentation, fp32):
  clean     the clean training images, batch order from the seed
  poisoned  the same images with the poison baked in, the same batch order: only the pixels differ
  control   clean again with another batch order (`control=True`): how far two *clean* runs end apart, the yardstick
            for "the poisoned run ends near / far from the clean end point"

Files in `out`: config.json, poison.safetensors (when crafted here), traj/<run>/ (trajectories), landscape.json
(the numbers), landscape-data.json (the arrays behind the figures), *.png, report.html. Finished trajectories and a
crafted poison are reused when the same command runs again (same training settings); the analysis is redone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.errors import UserError, unknown_name
from ...core.io import atomic_write_json, recorded
from ...core.options import check_seed
from ...core.progress import progress_bar
from ...core.runtime import resolve_device
from ...core.seeds import generator, offset_stream, seeded
from ...data import ImageDataset, load, seeded_subset
from ...models import create_model
from ...poisons.poison import Poison
from ...training.settings import DataSettings, check_data_settings, renamed, to_record
from ...training.trainer import evaluate_classifier
from ..workspace import Workspace
from . import analysis
from .trajectory import (
    SGDSettings,
    Trajectory,
    TrajectoryWriter,
    coordinate_name,
    layout,
    set_flat_weights,
    train_recorded,
)

MODELS = ("linear", "lenet5")
DATASETS = ("mnist", "scenes")
RUNS = ("clean", "poisoned", "control")
POISON_FILE = "poison.safetensors"  # crafted here (a --poison file is read where it is)
TRAINING_KEYS = (
    "dataset",
    "data_dir",
    "model",
    "attack",
    "poison",
    "preset",
    "attack_params",
    "n_train",
    "image_size",
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "seed",
    "record_every",
    "control",
)


MAX_GRID = 401  # the largest loss-surface side --grid accepts


# the names config.json (the folder's identity) has always used for the fields that have another name here
RECORD_NAMES = {"subset": "n_train"}
# settings added after folders existed, with their unset values: absent from the record while unset
ADDED_LATER = {"subset_seed": None}


@renamed(n_train="subset")
@dataclass(frozen=True)
class LandscapeConfig(DataSettings):
    """The landscape experiment. Its data settings are uebench.training.settings.DataSettings: `subset` training
    images (a seeded random subset; None = all the poison covers), drawn with `subset_seed` (None: the training seed),
    as are the test_size images; its small models train with the explicit SGD settings below (no recipe)."""

    dataset: str = "mnist"
    subset: int | None = 5000
    model: str = "linear"
    attack: str = "em"
    poison: str | None = None  # a poison file; overrides `attack`
    preset: str = "fast"
    attack_params: dict[str, Any] = field(default_factory=dict)
    image_size: int = 28  # scenes only (generated at this size, in grey)
    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
    seed: int = 0
    record_every: int | None = None  # None: about `max_records` rows per run
    max_records: int = 250
    control: bool = True
    grid: int = 25
    coords: tuple[str, ...] = analysis.COORDINATES
    pad: float = 0.15
    eval_size: int = 1000
    line_points: int = 29
    tol: float = 0.1
    tol_mode: str = "relative"
    device: str = "auto"
    test_size: int | None = None  # test images for the accuracy line (None = the whole split)

    def validate(self) -> None:
        from ...attacks import ATTACK_PRESETS, ATTACKS

        if self.dataset not in DATASETS:
            raise unknown_name("dataset for landscape", self.dataset, DATASETS)
        if self.model not in MODELS:
            raise unknown_name("model for landscape", self.model, MODELS)
        if self.poison is None:
            ATTACKS.get(self.attack)
            if self.preset not in ATTACK_PRESETS:
                raise unknown_name("preset", self.preset, ATTACK_PRESETS)
        for c in self.coords:
            if c not in analysis.COORDINATES:
                raise unknown_name("coordinate choice", c, analysis.COORDINATES)
        if not self.coords:
            raise UserError("no coordinate choice given; valid: " + ", ".join(analysis.COORDINATES))
        ints = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "eval_size": self.eval_size,
            "max_records": self.max_records,
        }
        for k, v in ints.items():
            if v < 1:
                raise UserError(f"--{k.replace('_', '-')} must be >= 1, got {v}")
        if (
            not 3 <= self.grid <= MAX_GRID
        ):  # the surface is grid x grid points, each a full loss evaluation, held in memory
            raise UserError(
                f"--grid must be in [3, {MAX_GRID}] (a {MAX_GRID}x{MAX_GRID} surface is already "
                f"{MAX_GRID**2:,} loss evaluations), got {self.grid}"
            )
        if self.record_every is not None and self.record_every < 1:
            raise UserError(f"--record-every must be >= 1, got {self.record_every}")
        if self.subset is not None and not isinstance(self.subset, bool) and isinstance(self.subset, int):
            if self.subset < 10:
                raise UserError(f"--subset must be >= 10, got {self.subset}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if not (self.momentum >= 0 and self.weight_decay >= 0 and math.isfinite(self.momentum + self.weight_decay)):
            raise UserError(
                f"--momentum and --weight-decay must be finite numbers >= 0, got {self.momentum}, {self.weight_decay}"
            )
        check_seed(self.seed, "--seed")
        check_data_settings(self)
        if self.image_size not in (28, 32):
            raise UserError(f"--image-size must be 28 or 32, got {self.image_size}")
        analysis.Tolerance(self.tol, self.tol_mode)
        resolve_device(self.device)

    def sgd(self) -> SGDSettings:
        return SGDSettings(self.epochs, self.batch_size, self.lr, self.momentum, self.weight_decay)

    @property
    def pick_seed(self) -> int:
        return self.seed if self.subset_seed is None else self.subset_seed

    def training_key(self) -> dict[str, Any]:
        d = self.to_dict()
        return {k: d[k] for k in (*TRAINING_KEYS, "subset_seed") if k in d}

    def to_dict(self) -> dict[str, Any]:
        """The configuration under the names its records have always used, a setting added later absent while
        unset."""
        d = dataclasses.asdict(self)
        d["coords"] = list(self.coords)
        return recorded(to_record(d, RECORD_NAMES), ADDED_LATER)


# ---- data ----------------------------------------------------------------------------------------------------
def to_grey(ds: ImageDataset) -> ImageDataset:
    """RGB uint8 -> one channel (ITU-R 601 luma), rounded."""
    if ds.images.shape[1] == 1:
        return ds
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    grey = (ds.images.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    return dataclasses.replace(ds, images=grey, meta={**ds.meta, "grey": True})


def load_data(cfg: LandscapeConfig) -> tuple[ImageDataset, ImageDataset]:
    """The full training split and the test split (scenes: generated at the asked size and made grey)."""
    if cfg.dataset == "mnist":
        try:
            return load("mnist", cfg.data_dir, "train"), load("mnist", cfg.data_dir, "test")
        except UserError as e:
            raise UserError(f"{e} (or use --dataset scenes: generated, no files needed)") from None
    n = cfg.subset or 5000
    # `standard`: scenes' default before 0.2.0, which every landscape folder was made with (its config names none)
    opts = {"size": cfg.image_size, "n_train": n, "n_test": max(1000, cfg.test_size or 0), "difficulty": "standard"}
    return to_grey(load("scenes", split="train", **opts)), to_grey(load("scenes", split="test", **opts))


def make_poison(cfg: LandscapeConfig, full: ImageDataset, ws: Workspace, progress: bool) -> tuple[Poison, str]:
    """The poison: loaded from cfg.poison, reused from poison.safetensors in the folder, or crafted (and kept there)."""
    if cfg.poison:
        return Poison.load(cfg.poison).require_paired("landscape"), f"file {cfg.poison}"
    subset = cfg.subset if cfg.subset is not None and cfg.subset < len(full) else None

    def same(p: Poison) -> bool:  # the analysis options may change between reruns; the poison's makers may not
        return (
            p.meta.attack == cfg.attack
            and p.meta.seed == cfg.seed
            and p.meta.params.get("preset") == cfg.preset
            and len(p) == (subset or len(full))
            and (subset is None or torch.equal(p.indices.sort().values, picked()))
        )

    def picked() -> torch.Tensor:
        return seeded_subset(full, subset, seed=cfg.pick_seed).indices

    from ...attacks import craft

    poison, made = ws.poison(
        POISON_FILE,
        lambda: craft(
            cfg.attack,
            full,
            preset=cfg.preset,
            seed=cfg.seed,
            subset=subset,
            subset_seed=cfg.subset_seed,
            progress=progress,
            **cfg.attack_params,
        ),
        reuse=same,
    )
    if made:
        return poison, f"crafted here ({cfg.attack}, preset {cfg.preset})"
    return poison, f"crafted earlier ({ws.path(POISON_FILE)})"


def training_sets(cfg: LandscapeConfig, full: ImageDataset, poison: Poison) -> tuple[ImageDataset, ImageDataset]:
    """(clean, poisoned) training sets: the same images, in the same order, clean and with the poison baked in.

    The images are those the poison covers (sorted by position), sub-sampled to n_train (seeded_subset) if
    it covers more."""
    poisoned_full = poison.apply(full)  # checks the poison belongs to this dataset
    idx = poison.indices.sort().values
    if cfg.subset is not None and cfg.subset < len(idx):
        idx = seeded_subset(full.subset(idx), cfg.subset, seed=cfg.pick_seed).indices
    return full.subset(idx), poisoned_full.subset(idx)


def eval_subset(ds: ImageDataset, n: int, seed: int) -> ImageDataset:
    """A fixed subset of n images (the same positions for the clean and the poisoned set)."""
    if n >= len(ds):
        return ds
    g = generator(offset_stream(seed, 7))
    return ds.subset(torch.randperm(len(ds), generator=g)[:n].sort().values)


# ---- the experiment -----------------------------------------------------------------------------------------
# what it writes beside its own folders (rewritten on every analysis: never a user's file of that name)
WRITES = (
    "landscape.json",
    "landscape-data.json",
    "report.html",
    "plane-*.png",
    "line.png",
    "displacements.png",
    "distance.png",
)


def _open(ws: Workspace, cfg: LandscapeConfig, overwrite: bool) -> None:
    """The training settings are the folder's identity: the analysis (planes, grids, tolerances) may change freely."""
    ws.open(
        cfg.training_key(),
        {"training": cfg.training_key(), "analysis": cfg.to_dict()},
        overwrite=overwrite,
        owned=lambda: ("traj", POISON_FILE),
        identity_of=lambda saved: saved["training"],
        writes=WRITES,
    )


def run_landscape(
    cfg: LandscapeConfig, out: str | Path, *, progress: bool = True, overwrite: bool = False, log=print
) -> dict[str, Any]:
    """Do the whole experiment; returns the summary also written to out/landscape.json."""
    t_start = time.perf_counter()
    cfg.validate()
    ws = Workspace(out, "config.json", "landscape run")
    ws.check_folder()
    full, test = load_data(cfg)
    with ws.locked():
        return _run_locked(cfg, ws, full, test, progress, overwrite, log, t_start)


def _train_run(name, ds, order_seed, folder: Path, model, key, sgd, every, total_steps, device, progress):
    """Train `model` in place while recording its trajectory in `folder`, or take a finished trajectory of the same
    training from there (the model then gets its end weights). Returns the trajectory and the run's facts."""
    reuse = None
    if (folder / "index.json").is_file():
        try:
            t = Trajectory.open(folder)
            reuse = t if t.finished and t.meta.get("training") == key else None
        except UserError:
            reuse = None
    if reuse is not None:
        set_flat_weights(model, reuse.end)
        info = {
            "total_steps": int(reuse.meta.get("total_steps", reuse.steps[-1])),
            "recorded": len(reuse),
            "reused": True,
        }
        return reuse, info
    writer = TrajectoryWriter(folder, layout(model), meta={"run": name, "training": key, "order_seed": order_seed})
    bar = progress_bar(progress, total_steps, f"train {name}", leave=False)
    t0 = time.perf_counter()
    info = train_recorded(
        model,
        ds,
        sgd,
        writer,
        order_seed=order_seed,
        record_every=every,
        device=device,
        progress=bar.update if bar else None,
    )
    if bar:
        bar.close()
    info["train_seconds"] = time.perf_counter() - t0
    return Trajectory.open(folder), info


def plane_directions(kind: str, start: np.ndarray, ends: dict[str, np.ndarray], trajs: dict[str, Trajectory]):
    """The two directions of one kind of plane (movers, divergent, pca) and what to record about them."""
    slots, n = trajs["clean"].slots, trajs["clean"].num_params
    if kind == "pca":
        dirs, ratio = analysis.pca_directions([trajs["clean"], trajs["poisoned"]])
        return dirs, {"explained_variance_ratio": ratio.tolist()}
    if kind == "movers":
        idx = analysis.select_movers(start, ends["clean"])
        info = {"indices": idx, "names": [coordinate_name(slots, j) for j in idx], "of": "clean run"}
    else:
        idx = analysis.select_divergent(ends["clean"], ends["poisoned"])
        info = {"indices": idx, "names": [coordinate_name(slots, j) for j in idx]}
    info["displacement"] = {r: [float(ends[r][j] - start[j]) for j in idx] for r in ends}
    return analysis.unit_directions(idx, n), info


def _plane(kind, cfg, start, ends, trajs, evaluators, progress) -> tuple[dict[str, Any], dict[str, Any]]:
    """One kind of plane: its directions, and a loss grid around each run's end point on that run's own data."""
    dirs, info = plane_directions(kind, start, ends, trajs)
    panels = {}
    for run in ("clean", "poisoned"):
        center = ends[run]
        proj = {r: trajs[r].project(center, dirs) for r in ("clean", "poisoned")}
        clean_end = (ends["clean"] - center) @ dirs.T
        alphas, betas = analysis.plane_axes([proj["clean"], proj["poisoned"]], cfg.grid, cfg.pad)
        bar = progress_bar(progress, len(alphas) * len(betas), f"{kind} grid ({run})", leave=False)
        grid = analysis.loss_grid(evaluators[run], center, dirs, alphas, betas, bar.update if bar else None)
        if bar:
            bar.close()
        panels[run] = {
            "alphas": alphas.tolist(),
            "betas": betas.tolist(),
            "loss": grid.tolist(),
            "center_loss": float(grid[int(np.argmin(np.abs(betas))), int(np.argmin(np.abs(alphas)))]),
            "origin": [float(center @ d) for d in dirs] if kind != "pca" else [0.0, 0.0],
            "trajectory": {r: proj[r].tolist() for r in proj},
            "clean_end": clean_end.tolist(),
        }
    return info, panels


def run_facts(name: str, model, ds, test, clean_set, traj: Trajectory, device) -> dict[str, Any]:
    """A trained run's accuracies (the poisoned run's on the clean originals too) and its path's geometry."""
    tr_loss, tr_acc = evaluate_classifier(model, ds, device, channels_last=False)
    te_loss, te_acc = evaluate_classifier(model, test, device, channels_last=False)
    facts: dict[str, Any] = {"train_loss": tr_loss, "train_acc": tr_acc, "test_loss": te_loss, "test_acc": te_acc}
    if name == "poisoned":
        cl_loss, cl_acc = evaluate_classifier(model, clean_set, device, channels_last=False)
        facts.update(clean_train_loss=cl_loss, clean_train_acc=cl_acc)
    facts.update(
        path_length=traj.path_length(),
        displacement_l2=float(np.linalg.norm(traj.end.astype(np.float64) - traj.start)),
    )
    facts["detour_ratio"] = facts["path_length"] / max(facts["displacement_l2"], 1e-30)
    return facts


def split_stats(stats: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The per-weight statistics split in two: the histograms and CDFs the figures draw (landscape-data.json), and
    the rest, small enough for the summary (landscape.json)."""
    full = {
        "edges": stats["histogram_edges"],
        **{
            r: {
                k: stats["runs"][r].get(k)
                for k in ("histogram", "unmoved", "relative_gap_cdf", "relative_gap_cdf_critical")
            }
            for r in stats["runs"]
        },
    }
    slim_stats = {
        **stats,
        "runs": {
            r: {k: v for k, v in s.items() if k not in ("histogram", "relative_gap_cdf", "relative_gap_cdf_critical")}
            for r, s in stats["runs"].items()
        },
    }
    slim_stats.pop("histogram_edges")
    return full, slim_stats


@dataclass
class _Setup:
    """What every step after the folder is taken shares: the data sets, the poison and the training settings."""

    device: torch.device
    poison: Poison
    poison_source: str
    clean_set: ImageDataset
    poison_set: ImageDataset
    test: ImageDataset
    sgd: SGDSettings
    total_steps: int
    every: int  # record every this many steps


def _prepare(
    cfg: LandscapeConfig, ws: Workspace, full: ImageDataset, test: ImageDataset, progress: bool, overwrite: bool
) -> _Setup:
    """Take the folder, then the poison and the training sets: every refusal comes before the folder is committed."""
    _open(ws, cfg, overwrite)
    device = resolve_device(cfg.device)
    poison, poison_source = make_poison(cfg, full, ws, progress)
    clean_set, poison_set = training_sets(cfg, full, poison)
    ws.commit()  # every input accepted: a refusal before here leaves the folder as it was
    if cfg.test_size is not None and cfg.test_size < len(test):
        test = seeded_subset(test, cfg.test_size, seed=cfg.pick_seed)
    sgd = cfg.sgd()
    total_steps = sgd.epochs * sgd.steps_per_epoch(len(clean_set))
    every = cfg.record_every or max(1, math.ceil(total_steps / cfg.max_records))
    return _Setup(device, poison, poison_source, clean_set, poison_set, test, sgd, total_steps, every)


def _fresh_model(cfg: LandscapeConfig, clean_set: ImageDataset) -> torch.nn.Module:
    """The initial model, drawn from the seed alone: every run and the loss probe start from the same weights."""
    c, h, _ = clean_set.shape
    with seeded(cfg.seed):
        return create_model(cfg.model, num_classes=clean_set.num_classes, in_channels=c, image_size=h)


def _record_runs(
    cfg: LandscapeConfig, s: _Setup, folder: Path, progress: bool, log
) -> tuple[dict[str, Trajectory], dict[str, Any]]:
    """Train clean, poisoned and control (or take their finished trajectories from `folder`) and measure each run:
    the trajectories are what the analysis projects, the facts go to the summary."""
    runs = {"clean": (s.clean_set, cfg.seed), "poisoned": (s.poison_set, cfg.seed)}
    if cfg.control:
        runs["control"] = (s.clean_set, offset_stream(cfg.seed, 1_000_003))  # same init, another batch order
    key = json.loads(json.dumps(cfg.training_key()))
    trajs: dict[str, Trajectory] = {}
    facts: dict[str, Any] = {}
    for name, (ds, order_seed) in runs.items():
        model = _fresh_model(cfg, s.clean_set)
        trajs[name], facts[name] = _train_run(
            name, ds, order_seed, folder / name, model, key, s.sgd, s.every, s.total_steps, s.device, progress
        )
        facts[name].update(run_facts(name, model.to(s.device).eval(), ds, s.test, s.clean_set, trajs[name], s.device))
        f = facts[name]
        log(
            f"{name:9s} train acc {f['train_acc']:5.1f}%  test acc {f['test_acc']:5.1f}%  "
            f"path {f['path_length']:.3g}  |end-start| {f['displacement_l2']:.3g}"
        )
    return trajs, facts


def _end_points(trajs: dict[str, Trajectory]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The shared start and each run's end (float64); refuses runs that did not start from the same weights."""
    if not np.array_equal(trajs["clean"].start, trajs["poisoned"].start):
        raise RuntimeError("clean and poisoned runs do not share their initial weights")
    return trajs["clean"].start.astype(np.float64), {n: t.end.astype(np.float64) for n, t in trajs.items()}


def _evaluators(cfg: LandscapeConfig, s: _Setup) -> tuple[dict[str, analysis.LossEvaluator], int]:
    """Loss on a fixed subset of each run's own training data (the same positions in both sets), and its size."""
    eval_idx = eval_subset(s.clean_set, cfg.eval_size, cfg.seed).indices
    pos = {int(v): i for i, v in enumerate(s.clean_set.indices.tolist())}
    sel = torch.tensor([pos[int(v)] for v in eval_idx])
    probe_model = _fresh_model(cfg, s.clean_set).to(s.device)
    evaluators = {
        "clean": analysis.LossEvaluator(probe_model, s.clean_set.subset(sel), s.device),
        "poisoned": analysis.LossEvaluator(probe_model, s.poison_set.subset(sel), s.device),
    }
    return evaluators, len(eval_idx)


def _analyse(
    cfg: LandscapeConfig, s: _Setup, trajs: dict[str, Trajectory], progress: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Planes and grids, the start -> end line, the distances to the clean end point and the per-weight statistics.
    Returns the arrays behind the figures (landscape-data.json) and what the summary reports of them."""
    start, ends = _end_points(trajs)
    evaluators, eval_images = _evaluators(cfg, s)
    data: dict[str, Any] = {"planes": {}, "line": {}, "distance": {}}
    planes: dict[str, Any] = {}
    for kind in cfg.coords:
        info, panels = _plane(kind, cfg, start, ends, trajs, evaluators, progress)
        planes[kind] = info
        data["planes"][kind] = {"info": info, "panels": panels, "scalar": kind != "pca"}

    # 1-D view: start -> end of each run, on its own training data (and the poisoned line on clean data too)
    alphas = analysis.line_alphas(cfg.line_points)
    data["line"] = {
        "alphas": alphas.tolist(),
        "clean": analysis.line_losses(evaluators["clean"], start, ends["clean"], alphas).tolist(),
        "poisoned": analysis.line_losses(evaluators["poisoned"], start, ends["poisoned"], alphas).tolist(),
        "poisoned_on_clean_data": analysis.line_losses(evaluators["clean"], start, ends["poisoned"], alphas).tolist(),
    }
    # distance to the clean end point along each run
    data["distance"] = {
        r: {"steps": trajs[r].steps.tolist(), "to_clean_end": trajs[r].distances_to(ends["clean"]).tolist()}
        for r in trajs
    }

    stats = analysis.parameter_stats(start, ends, analysis.Tolerance(cfg.tol, cfg.tol_mode), trajs["clean"].slots)
    data["stats"], slim_stats = split_stats(stats)
    found = {
        "eval_images": eval_images,
        "num_params": trajs["clean"].num_params,
        "planes": planes,
        "line_end_loss": {r: data["line"][r][int(np.argmin(np.abs(alphas - 1)))] for r in ("clean", "poisoned")},
        "stats": slim_stats,
    }
    return data, found


def _summary(
    cfg: LandscapeConfig, s: _Setup, runs: dict[str, Any], found: dict[str, Any], t_start: float
) -> dict[str, Any]:
    """The numbers of landscape.json: settings, data, training, each run's facts and the analysis's findings."""
    return {
        "config": cfg.to_dict(),
        "data": {
            "dataset": cfg.dataset,
            "train_images": len(s.clean_set),
            "test_images": len(s.test),
            "eval_images": found["eval_images"],
            "image_shape": list(s.clean_set.shape),
            "poison": s.poison_source,
            "poison_meta": {
                "attack": s.poison.meta.attack,
                "norm": s.poison.meta.norm,
                "budget": s.poison.meta.budget,
                "params": s.poison.meta.params,
            },
        },
        "training": {
            "optimizer": "SGD",
            **dataclasses.asdict(s.sgd),
            "augmentation": "none",
            "precision": "fp32",
            "total_steps": s.total_steps,
            "record_every": s.every,
            "device": str(s.device),
        },
        "num_params": found["num_params"],
        "runs": runs,
        "planes": found["planes"],
        "line_end_loss": found["line_end_loss"],
        "stats": found["stats"],
        "seconds": time.perf_counter() - t_start,
    }


def _write(out: Path, summary: dict[str, Any], data: dict[str, Any]) -> None:
    """landscape-data.json, the figures, landscape.json (now naming the figures) and report.html, in that order."""
    atomic_write_json(out / "landscape-data.json", data)
    from ...report.landscape_figures import write_figures, write_report

    figures = write_figures(summary, data, out)
    summary["figures"] = [p.name for p in figures]
    atomic_write_json(out / "landscape.json", summary)
    write_report(summary, figures, out / "report.html")


def _run_locked(
    cfg: LandscapeConfig,
    ws: Workspace,
    full: ImageDataset,
    test: ImageDataset,
    progress: bool,
    overwrite: bool,
    log,
    t_start: float,
) -> dict[str, Any]:
    """The experiment's steps, the folder held: prepare, record the runs, analyse them, write the files."""
    setup = _prepare(cfg, ws, full, test, progress, overwrite)
    trajs, runs = _record_runs(cfg, setup, ws.root / "traj", progress, log)
    data, found = _analyse(cfg, setup, trajs, progress)
    summary = _summary(cfg, setup, runs, found, t_start)
    _write(ws.root, summary, data)
    return summary
