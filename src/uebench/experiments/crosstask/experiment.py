"""The cross-task experiment: classification UEs, then every task trained on the poisoned images with clean targets.

    config = CrossTaskConfig(
        dataset="scenes", attacks=("em", "ops", "ar"), tasks=("class", "segment", "depth", "edges")
    )
    results = run_experiment(config, "out/crosstask")

1. Load the clean train/test splits (a seeded random subset if asked) and every task's targets from the
   CLEAN images (dataset ground truth, or derived from RGB).
2. Make the poisons: each attack crafted against the class labels only (or a poison file given by path); with
   `multitask_attacks`, each model-based attack also crafted against the multi-task loss (label "<attack>+mt").
3. For every data version (clean, then each poison): train one multi-task model (`multitask=True`) or one
   single-task model per task, on the (poisoned) images with the clean targets; test on clean test images.
   After the probed epochs, the SAL of each task's loss on every layer of the shared encoder (fast mode by default).
4. Per task: the metric clean vs poisoned, the relative drop and the retained margin over the trivial predictor;
   per data version, the cosine similarity of the tasks' SAL vectors; per task and attack, UD (beta from the
   task's clean run).

Everything lands in the out folder: experiment.json, poisons/<label>.safetensors, runs/<version>/<model>/ (run
folders, checkpointed every epoch), results.json, table.md/.csv, figures/, report.html. A rerun with the same
configuration reuses every finished poison and run and continues unfinished ones; another configuration in the
same folder is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ...attacks import ATTACK_PRESETS, ATTACKS, craft, objective_attacks
from ...core.errors import UserError, unknown_name
from ...core.io import atomic_write_json, atomic_write_text, recorded
from ...core.registry import Registry
from ...core.runtime import resolve_device, resolve_precision
from ...data import load, options_from_record, seeded_subset
from ...data.base import ImageDataset
from ...metrics import learnable_count, learnable_threshold, ud_if_defined
from ...metrics.sal_config import SALConfig
from ...metrics.verdict import RULE, poison_learned
from ...models.multitask import ENCODERS
from ...poisons.poison import Poison
from ...report.crosstask_results import CrossTaskResults, DatasetInfo, PoisonInfo, Similarity, TaskCell, TaskRow
from ...training.records import RunFolder, safe_label
from ...training.settings import RunSettings, check_settings, from_record, renamed, to_record, warn_renamed
from ..workspace import Workspace
from .attack import COMBINES, craft_multitask, load_poison_file
from .task import Task, check_derive, get_tasks
from .training import Settings, TaskData, build_net, class_shortcut, fit_multitask, summarize, task_data, trivial_scores

LABEL_TASK = "class"  # the task whose labels the class-wise attacks were crafted against

DEFAULT_ATTACKS = ("em", "ops", "ar")
DEFAULT_TASKS = ("class", "segment", "depth", "edges")
MT_SUFFIX = "+mt"


# How crosstask measures each task's SAL: the fast estimator on 256 images, un-augmented (a dense target would have to
# move with each crop). A config sets its mode, eps, rounds and subset; the probed epochs are its own `sal_every`
CROSSTASK_SAL = SALConfig(mode="fast", subset=256, augment="none")
_SAL_SET = ("mode", "eps", "rounds", "subset", "step_rule", "crossfit")
# what a folder written before step_rule and crossfit were recorded measured with (uebench 0.1.0's fast estimator)
_SAL_BEFORE = {"sal_step_rule": "full", "sal_crossfit": True}
# the names experiment.json (the folder's identity) has always used for the fields that have another name here
RECORD_NAMES = {"subset": "train_subset", "model": "encoder", "probe_sal": "sal"}
# settings added after folders existed, with their unset values: absent from the identity while unset
ADDED_LATER = {"subset_seed": None, "multitask_combine": ("sum",), "sal_eps": CROSSTASK_SAL.eps}
# the flat SAL keywords of 0.1.0 (CrossTaskConfig(sal_mode=...)), now the fields of `sal`
FLAT_SAL = {"sal_mode": "mode", "sal_subset": "subset", "sal_rounds": "rounds"}


def _flat_sal_accepted(cls):
    """CrossTaskConfig(sal=False, sal_mode=..., sal_subset=..., sal_rounds=...), the flat SAL keywords of 0.1.0,
    accepted until REMOVED_IN with a FutureWarning."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args: Any, **kw: Any) -> None:
        if isinstance(kw.get("sal"), bool):
            warn_renamed(cls.__name__, "sal=True/False", "probe_sal")
            kw["probe_sal"] = kw.pop("sal")
        flat = {FLAT_SAL[k]: kw.pop(k) for k in list(kw) if k in FLAT_SAL}
        for k in flat:
            warn_renamed(cls.__name__, f"sal_{k}", f"sal=SALConfig({k}=...)")
        if flat:
            kw["sal"] = dataclasses.replace(kw.get("sal", CROSSTASK_SAL), **flat)
        init(self, *args, **kw)

    cls.__init__ = __init__
    return cls


@_flat_sal_accepted
@renamed(train_subset="subset", encoder="model")
@dataclass(frozen=True)
class CrossTaskConfig(RunSettings):
    """Everything that determines a cross-task experiment. The data, model (the shared encoder) and recipe settings
    are uebench.training.settings.RunSettings (`subset_seed` None: the training seed, as before it existed). On
    `scenes`, dataset options without a difficulty are `standard` (as every crosstask folder was made before 0.2.0,
    whose loader default is now `natural`): give `dataset_options={"difficulty": "natural"}` for the other."""

    width: float = 0.25
    recipe: str = "quick"
    precision: str = "fp32"
    tasks: tuple[str, ...] = DEFAULT_TASKS
    attacks: tuple[str, ...] = DEFAULT_ATTACKS  # attack names or poison files (.safetensors)
    attack_preset: str = "fast"
    attack_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # attack -> parameter overrides
    multitask: bool = False  # one multi-task model per data version (else one single-task model per task)
    multitask_attacks: bool = False  # also craft the model-based attacks against the multi-task loss
    # how those combine the tasks' noise gradients, one poison each: sum ("<attack>+mt") | pcgrad ("<attack>+pcgrad")
    multitask_combine: tuple[str, ...] = ("sum",)
    targets: str = "missing"  # missing: the dataset's own targets where it has them; always: derive from RGB
    weights: dict[str, float] = field(default_factory=dict)
    test_subset: int | None = None
    seed: int = 0
    probe_sal: bool = True  # the per-task SAL (and UD, similarity); False: none
    sal: SALConfig = CROSSTASK_SAL  # how each task's SAL is measured (its mode, eps, rounds and subset)
    sal_every: int = 0  # probe every K epochs; 0: the last epoch only (the last epoch is always probed)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "attacks", tuple(self.attacks))
        object.__setattr__(self, "multitask_combine", tuple(self.multitask_combine))

    @property
    def pick_seed(self) -> int:
        """The seed that picks the train and test subsets (and the images a crafted poison covers)."""
        return self.seed if self.subset_seed is None else self.subset_seed

    def to_dict(self) -> dict[str, Any]:
        """The configuration as experiment.json holds it (the folder's identity): the names and the flat SAL
        settings it has always had, a setting added later absent while unset."""
        d = dataclasses.asdict(self)
        sal = d.pop("sal")
        d.update({f"sal_{k}": sal[k] for k in _SAL_SET})
        return recorded(to_record(d, RECORD_NAMES), ADDED_LATER)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "CrossTaskConfig":
        """A configuration as to_dict wrote it."""
        d = from_record({**_SAL_BEFORE, **record}, RECORD_NAMES)
        sal = {k: d.pop(f"sal_{k}") for k in _SAL_SET if f"sal_{k}" in d}
        return cls(**d, sal=dataclasses.replace(CROSSTASK_SAL, **sal))


# Named presets: overrides of the defaults above (the user's explicit options override a preset).
CROSSTASK_PRESETS: Registry[dict[str, Any]] = Registry("crosstask preset")
CROSSTASK_PRESETS.register("quick")(
    {
        "width": 0.125,
        "recipe": "quick",
        "epochs": 8,
        "batch_size": 64,
        "subset": None,
        "test_subset": 500,
        "sal_every": 4,
        "sal": {"subset": 128, "rounds": 3},
        "attack_preset": "fast",
    }
)
CROSSTASK_PRESETS.register("standard")(
    {
        "width": 0.25,
        "recipe": "quick",
        "epochs": 20,
        "batch_size": 128,
        "sal_every": 5,
        "sal": {"subset": 512},
        "attack_preset": "fast",
    }
)
CROSSTASK_PRESETS.register("paper")(
    {"width": 1.0, "recipe": "paper", "sal_every": 1, "sal": {"mode": "faithful"}, "attack_preset": "paper"}
)
# `scenes` is generated: a preset may size it (only applied when the dataset is scenes and the user did not)
SCENES_SIZE = {"quick": {"n_train": 2000, "n_test": 500}, "standard": {"n_train": 5000, "n_test": 1000}, "paper": {}}


def with_preset(preset: str, **explicit: Any) -> CrossTaskConfig:
    """A config from a named preset plus the options given explicitly (None = not given). `sal` is a SALConfig, or
    a dict of its settings over the preset's (a None value: not given)."""
    values = dict(CROSSTASK_PRESETS.get(preset))
    sal = values.pop("sal", {})
    given = explicit.pop("sal", None)
    if isinstance(given, dict):
        sal = {**sal, **{k: v for k, v in given.items() if v is not None}}
    values.update({k: v for k, v in explicit.items() if v is not None})
    try:
        values["sal"] = given if isinstance(given, SALConfig) else dataclasses.replace(CROSSTASK_SAL, **sal)
    except TypeError as e:
        raise UserError(f"crosstask: bad SAL option: {e}") from None
    if values.get("dataset", "scenes") == "scenes":
        values["dataset_options"] = {**SCENES_SIZE.get(preset, {}), **(values.get("dataset_options") or {})}
    try:
        return CrossTaskConfig(**values)
    except TypeError as e:
        raise UserError(f"crosstask: bad option: {e}") from None


# ---- validation -------------------------------------------------------------------------------------------
def is_poison_file(entry: str) -> bool:
    return entry.endswith(".safetensors") or Path(entry).is_file()


def poison_label(entry: str) -> str:
    """The name a poison goes by in tables and folders: the attack name, or the file's stem, made safe as a folder
    name (never '.', '..' or a path)."""
    return safe_label(Path(entry).stem if is_poison_file(entry) else entry)


def validate(config: CrossTaskConfig) -> list[Task]:
    """Every name checked before any data is loaded or anything is crafted (one clear line each)."""
    from ...data import DATASETS

    DATASETS.get(config.dataset)
    tasks = get_tasks(config.tasks)
    check_derive(config.targets)
    for entry in config.attacks:
        if is_poison_file(entry):
            if not Path(entry).is_file():
                raise UserError(f"poison file not found: {entry}")
        else:
            ATTACKS.get(entry)
    labels = [poison_label(a) for a in config.attacks]
    if config.multitask_attacks:  # and each model-based attack's multi-task poisons: a file may be named like one
        crafted = [a for a in config.attacks if not is_poison_file(a) and a in objective_attacks()]
        labels += [
            poison_label(a) + (MT_SUFFIX if c == "sum" else f"+{c}") for a in crafted for c in config.multitask_combine
        ]
    if len(set(labels)) != len(labels) or "clean" in labels:
        raise UserError(
            f"two poisons would share a name, or one is named 'clean' (reserved): {', '.join(labels)}; rename the file"
        )
    if config.attack_preset not in ATTACK_PRESETS:
        raise UserError(f"unknown attack preset '{config.attack_preset}'; valid: {', '.join(ATTACK_PRESETS)}")
    unknown = sorted(set(config.attack_params) - {a for a in config.attacks if not is_poison_file(a)})
    if unknown:
        raise UserError(f"attack parameters given for {', '.join(unknown)}, which is not among the attacks")
    bad_combine = sorted(set(config.multitask_combine) - set(COMBINES))
    if bad_combine or not config.multitask_combine:
        raise UserError(
            f"unknown multi-task combine {', '.join(bad_combine) or '(none)'}; valid: {', '.join(COMBINES)}"
        )
    if config.multitask_attacks:
        usable = objective_attacks()
        if not any(a in usable for a in config.attacks):
            raise UserError(
                f"multi-task crafting needs a model-based attack among --attacks; available: {', '.join(usable)}"
            )
    bad_w = sorted(set(config.weights) - {t.name for t in tasks})
    if bad_w:
        raise UserError(f"loss weights given for {', '.join(bad_w)}, which is not among the tasks")
    check_settings(config, seeds=(config.seed,))  # the names, the width, the seeds, the subset and the recipe
    if config.model not in ENCODERS:
        raise unknown_name("encoder", config.model, ENCODERS)
    if config.test_subset is not None and config.test_subset < 1:
        raise UserError(f"test-subset must be >= 1, got {config.test_subset}")
    if config.sal_every < 0:
        raise UserError(f"--sal-every must be >= 0 (0: the last epoch only), got {config.sal_every}")
    if not isinstance(config.sal, SALConfig):
        raise UserError(f"crosstask's SAL settings must be a SALConfig, got {type(config.sal).__name__}")
    fixed = dataclasses.replace(config.sal, **{k: getattr(CROSSTASK_SAL, k) for k in _SAL_SET})
    if fixed != CROSSTASK_SAL:  # the probe is crosstask's own: on its schedule, eval-loss origin, un-augmented
        raise UserError(
            "crosstask measures SAL with its own probe: of its SAL settings, give mode, eps, rounds, subset, "
            "step_rule, crossfit"
        )
    resolve_device(config.device)
    resolve_precision(config.precision, torch.device("cpu"))
    return tasks


# ---- data -------------------------------------------------------------------------------------------------
@dataclass
class Splits:
    full: ImageDataset  # the whole clean training split (poisons index into it)
    train: ImageDataset  # what is trained on (a seeded random subset of full, or full)
    test: ImageDataset
    train_data: TaskData  # clean images + targets
    test_data: TaskData
    channels: dict[str, int]


def load_splits(config: CrossTaskConfig, tasks: list[Task]) -> Splits:
    # the config is the folder's identity and records the options as given: a scenes difficulty left out is the one
    # every crosstask folder was made with (`standard`, scenes' default before 0.2.0), not today's loader default
    opts = options_from_record(config.dataset, dict(config.dataset_options))
    full = load(config.dataset, config.data_dir, "train", **opts)
    test = load(config.dataset, config.data_dir, "test", **opts)
    train = seeded_subset(full, config.subset, seed=config.pick_seed) if config.subset else full
    if config.test_subset and config.test_subset < len(test):
        test = seeded_subset(test, config.test_subset, seed=config.pick_seed)
    if full.shape[1] % 8 or full.shape[2] % 8:
        raise UserError(
            f"crosstask needs image sides divisible by 8 (the encoder's stride), {full.name} has {full.shape[1:]}"
        )
    train_data = task_data(train, tasks, config.targets)
    test_data = task_data(test, tasks, config.targets)
    channels = {t.name: t.channels(train) for t in tasks}
    for t in tasks:  # a label the head cannot output (a class only the test split has) is ignored, not a crash
        if t.name == "segment":
            tt = test_data.targets[t.name]
            test_data.targets[t.name] = torch.where(tt >= channels[t.name], torch.full_like(tt, -1), tt)
    return Splits(full, train, test, train_data, test_data, channels)


# ---- poisons ----------------------------------------------------------------------------------------------
def make_poisons(
    config: CrossTaskConfig,
    tasks: list[Task],
    splits: Splits,
    ws: Workspace,
    progress: bool,
    log: Callable[[str], None],
) -> dict[str, Poison]:
    """label -> Poison; each crafted one kept as poisons/<label>.safetensors (the identity pins what made it) and
    reused on reruns."""
    poisons: dict[str, Poison] = {}
    jobs: list[tuple[str, Callable[[], Poison], bool]] = []  # (label, make, save: crafted here, not a user's file)
    for entry in config.attacks:
        label = poison_label(entry)
        if is_poison_file(entry):
            jobs.append((label, lambda e=entry: load_poison_file(e, splits.full), False))
            continue
        params = config.attack_params.get(entry, {})
        jobs.append(
            (
                label,
                lambda e=entry, p=params: craft(
                    e,
                    splits.full,
                    subset=config.subset,
                    subset_seed=config.subset_seed,
                    preset=config.attack_preset,
                    seed=config.seed,
                    progress=progress,
                    **p,
                ),
                True,
            )
        )
        for combine in config.multitask_combine if config.multitask_attacks and entry in objective_attacks() else ():
            jobs.append(
                (
                    label + (MT_SUFFIX if combine == "sum" else f"+{combine}"),
                    lambda e=entry, p=params, cb=combine: craft_multitask(
                        e,
                        splits.full,
                        splits.train,
                        splits.train_data.targets,
                        tasks,
                        splits.channels,
                        subset=config.subset,
                        subset_seed=config.subset_seed,
                        preset=config.attack_preset,
                        seed=config.seed,
                        params=p,
                        weights=config.weights,
                        encoder=config.model,
                        progress=progress,
                        combine=cb,
                    ),
                    True,
                )
            )
    for label, make, save in jobs:
        if not save:
            log(f"loading {label}")
            poisons[label] = make()
            continue

        def announced(label=label, make=make) -> Poison:
            log(f"crafting {label}")
            return make()

        poisons[label], made = ws.poison(f"poisons/{label}.safetensors", announced)
        if not made:
            poisons[label].check(splits.full)
    return poisons


def poisoned_train(splits: Splits, poison: Poison) -> TaskData:
    """The training images a victim would download (poison applied to the full split, then the same subset)."""
    images = poison.apply(splits.full).images[splits.train.indices]
    return splits.train_data.with_images(images)


# ---- runs -------------------------------------------------------------------------------------------------
def settings_for(config: CrossTaskConfig) -> Settings:
    recipe = config.resolved_recipe()
    device = resolve_device(config.device)
    return Settings(
        encoder=config.model,
        width=config.width,
        recipe=recipe,
        weights=dict(config.weights),
        seed=config.seed,
        device=str(device),
        precision=resolve_precision(config.precision, device),
        sal=config.probe_sal,
        sal_mode=config.sal.mode,
        sal_every=config.sal_every,
        sal_subset=config.sal.subset,
        sal_rounds=config.sal.rounds,
        sal_eps=config.sal.eps,
        sal_step_rule=config.sal.step_rule,
        sal_crossfit=config.sal.crossfit,
    )


def model_groups(config: CrossTaskConfig, tasks: list[Task]) -> dict[str, list[Task]]:
    """Model name -> the tasks it learns: one multi-task model, or one single-task model per task."""
    return {"multitask": tasks} if config.multitask else {f"single-{t.name}": [t] for t in tasks}


def run_one(
    config: CrossTaskConfig,
    settings: Settings,
    version: str,
    model: str,
    tasks: list[Task],
    splits: Splits,
    train: TaskData,
    out: Path,
    progress: bool,
    poison_meta: dict | None,
) -> list[dict[str, Any]]:
    path = out / "runs" / version / model
    run_config = {
        "version": version,
        "model": model,
        "tasks": [t.name for t in tasks],
        "settings": settings.to_dict(),
        "dataset": config.dataset,
        "dataset_options": config.dataset_options,
        "train_subset": config.subset,
        "test_subset": config.test_subset,
        "targets": config.targets,
        "poison": poison_meta,
    }
    run = RunFolder(path, run_config, resume=True)
    if run.finished():
        history = run.load_checkpoint()["history"]
        summary = run.summary()
    else:
        run.start({"train_size": len(train), "test_size": len(splits.test_data), "sources": splits.train_data.sources})
        net = build_net(tasks, {t.name: splits.channels[t.name] for t in tasks}, settings, splits.full.shape[0])
        history = fit_multitask(
            net, train, splits.test_data, tasks, settings, run=run, progress=progress, desc=f"{version}/{model}"
        )
        summary = summarize(history, tasks)
        label = next((t for t in tasks if t.name == LABEL_TASK), None)
        if version != "clean" and label is not None:  # was the poison learned at all? (metrics.verdict)
            summary["shortcut"] = class_shortcut(net, label, train, splits.train_data, torch.device(settings.device))
        run.finish(summary)
    if summary.get("shortcut"):  # the last record carries it to the results
        history = [*history[:-1], {**history[-1], "shortcut": summary["shortcut"]}]
    return history


# ---- results ----------------------------------------------------------------------------------------------
def task_sal_matrix(history: list[dict[str, Any]], task: str) -> tuple[np.ndarray, list[str]] | None:
    rows = [h["task_sal"][task]["sal"] for h in history if "task_sal" in h and task in h["task_sal"]]
    if not rows:
        return None
    layers = list(rows[0])
    return np.array([[r[k] for k in layers] for r in rows]), layers


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")


def finite(v: float) -> float | None:
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def assemble(
    config: CrossTaskConfig,
    tasks: list[Task],
    splits: Splits,
    histories: dict[str, dict[str, list]],
    poisons: dict[str, Poison],
) -> CrossTaskResults:
    """What results.json holds: per task and version the metrics; drops; UD; SAL similarity per version."""
    versions = list(histories)
    trivial = trivial_scores(splits.train_data, splits.test_data, tasks)

    def history_of(version: str, task: str) -> list[dict[str, Any]]:
        runs = histories[version]
        return runs["multitask"] if "multitask" in runs else runs[f"single-{task}"]

    per_task: dict[str, TaskRow] = {}
    for t in tasks:
        clean_h = history_of("clean", t.name)
        clean_final = clean_h[-1]["test"][t.name][t.metric]
        # a clean model no better than the trivial predictor learned nothing a poison could take away: no drop, no
        # retained margin, no beta or UD for that task
        triv = trivial[t.name][t.metric]
        learned = t.beats_trivial(clean_final, triv, len(splits.test))
        row = TaskRow(
            metric=t.metric,
            higher_is_better=t.higher_is_better,
            trivial=triv,
            source=splits.train_data.sources[t.name],
            clean_learned=learned,
        )
        if not learned:
            row.note = (
                f"the clean model ({clean_final:.4g}) does not beat the trivial predictor ({triv:.4g}) by a "
                "margin: no drop, retained margin or UD"
            )
        clean_sal = task_sal_matrix(clean_h, t.name) if learned else None
        beta = learnable_threshold(clean_sal[0]) if clean_sal is not None else None
        for v in versions:
            h = history_of(v, t.name)
            final = h[-1]["test"][t.name][t.metric]
            vals = [r["test"][t.name][t.metric] for r in h]
            best = max(vals) if t.higher_is_better else min(vals)
            cell = TaskCell(final=final, best=best, all=h[-1]["test"][t.name], curve=vals)
            if v != "clean" and learned:
                cell.compared = True
                cell.drop = finite(t.drop(clean_final, final))
                cell.retained = finite(t.retained(clean_final, final, triv))
            m = task_sal_matrix(h, t.name)
            if m is not None and beta is not None:
                cell.probed = True
                cell.lp = learnable_count(m[0], beta)
                cell.ud = ud_if_defined(m[0], clean_sal[0], beta)
                cell.sal_mean = float(m[0].mean())
            row.versions[v] = cell
        row.beta = beta
        per_task[t.name] = row

    verdicts: dict[str, str] = {}  # was each poison learned? the class head's shortcut probe (metrics.verdict)
    labelled = LABEL_TASK in [t.name for t in tasks]
    reference = history_of("clean", LABEL_TASK)[-1]["test"][LABEL_TASK]["accuracy"] if labelled else None
    for v in versions:
        if v == "clean":
            continue
        sc = history_of(v, LABEL_TASK)[-1].get("shortcut") if labelled else None
        verdicts[v] = poison_learned(
            sc and sc["shortcut_acc"],
            sc and sc["clean_train_acc"],
            splits.full.num_classes,
            sc and sc["shortcut_n"],
            reference,
        )

    similarity: dict[str, Similarity] = {}
    for v in versions:
        vecs = {}
        for t in tasks:
            m = task_sal_matrix(history_of(v, t.name), t.name)
            if m is not None:
                vecs[t.name] = m[0].mean(0)
        names = list(vecs)
        similarity[v] = Similarity(names, [[finite(cosine(vecs[a], vecs[b])) for b in names] for a in names])
    layers = None
    for v in versions:
        for t in tasks:
            m = task_sal_matrix(history_of(v, t.name), t.name)
            if m is not None:
                layers = m[1]
                break
        if layers:
            break
    return CrossTaskResults(
        config=config.to_dict(),
        dataset=DatasetInfo(
            name=splits.full.name,
            train=len(splits.train),
            test=len(splits.test),
            classes=splits.full.num_classes,
        ),
        tasks=[t.name for t in tasks],
        versions=versions,
        poisons={
            k: PoisonInfo(
                attack=p.meta.attack,
                variant=p.meta.variant,
                norm=p.meta.norm,
                budget=p.meta.budget,
                craft_seconds=p.meta.craft_seconds,
                epoch_equivalents=p.meta.epoch_equivalents,
                measured=p.measure(splits.full).get(p.meta.norm),
            )
            for k, p in poisons.items()
        },
        per_task=per_task,
        learned=verdicts,
        learned_rule=RULE + " (read on the class head; unknown without a class task)",
        sal_similarity=similarity,
        sal_layers=layers,
        sal_mode=config.sal.mode if config.probe_sal else None,
    )


def markdown_table(results: CrossTaskResults) -> str:
    """One row per task: trivial, clean, then each poison's final metric with its relative drop."""
    versions = results.versions
    head = ["task", "metric", "trivial", *[v if v == "clean" else f"{v} (drop, UD)" for v in versions]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in results.per_task.items():
        cells = [
            name,
            row.metric + (" (lower better)" if not row.higher_is_better else ""),
            f"{row.trivial:.4g}",
        ]
        for v in versions:
            c = row.versions[v]
            if v == "clean":
                cells.append(f"{c.final:.4g}" + ("" if row.clean_learned else " (not learned)"))
            else:
                drop = "-" if c.drop is None else f"{100 * c.drop:+.0f}%"
                ud = "" if c.ud is None else f", UD {c.ud:.2f}"
                cells.append(f"{c.final:.4g} ({drop}{ud})")
        lines.append("| " + " | ".join(cells) + " |")
    learned = results.learned
    if learned:
        lines.append(
            "| learned (class shortcut probe) | | | - | "
            + " | ".join(learned.get(v, "unknown") for v in versions if v != "clean")
            + " |"
        )
    return "\n".join(lines) + "\n"


def csv_table(results: CrossTaskResults) -> str:
    rows = ["task,metric,version,final,best,trivial,drop,retained,lp,ud"]
    for name, row in results.per_task.items():
        for v, c in row.versions.items():
            vals = [name, row.metric, v, c.final, c.best, row.trivial, c.drop, c.retained, c.lp, c.ud]
            rows.append(",".join("" if x is None else (f"{x:.6g}" if isinstance(x, float) else str(x)) for x in vals))
    return "\n".join(rows) + "\n"


# ---- the experiment ---------------------------------------------------------------------------------------
OWNED = ("runs", "poisons", "figures")  # what a new experiment in the folder deletes (the report is rewritten)
WRITES = ("results.json", "table.md", "table.csv", "report.html")  # rewritten: never a user's file of that name


def run_experiment(
    config: CrossTaskConfig,
    out: str | Path,
    *,
    progress: bool = True,
    overwrite: bool = False,
    log: Callable[[str], None] = lambda s: None,
    figures: bool = True,
) -> CrossTaskResults:
    tasks = validate(config)
    ws = Workspace(out, "experiment.json", "crosstask experiment")
    with ws.locked():
        return _run_locked(config, tasks, ws, progress, overwrite, log, figures)


def _run_locked(
    config: CrossTaskConfig,
    tasks: list[Task],
    ws: Workspace,
    progress: bool,
    overwrite: bool,
    log: Callable[[str], None],
    figures: bool,
) -> CrossTaskResults:
    record = json.loads(json.dumps(config.to_dict(), default=str))  # the identity is the whole configuration
    ws.open(record, record, overwrite=overwrite, owned=lambda: OWNED, writes=WRITES)
    out = ws.root
    splits = load_splits(config, tasks)
    poisons = make_poisons(config, tasks, splits, ws, progress, log)
    settings = settings_for(config)
    histories: dict[str, dict[str, list]] = {}
    versions: list[tuple[str, TaskData, dict | None]] = [("clean", splits.train_data, None)]
    versions += [
        (label, poisoned_train(splits, p), dataclasses.asdict(p.meta) | {"label": label})
        for label, p in poisons.items()
    ]
    ws.commit()  # every input accepted: a refusal before here leaves the folder as it was
    for version, train, meta in versions:
        histories[version] = {}
        for model, group in model_groups(config, tasks).items():
            log(f"training {version}/{model}")
            meta_key = None if meta is None else {k: meta[k] for k in ("label", "attack", "variant", "seed", "params")}
            histories[version][model] = run_one(
                config, settings, version, model, group, splits, train, out, progress, meta_key
            )
    results = assemble(config, tasks, splits, histories, poisons)
    atomic_write_json(out / "results.json", results.to_dict())
    atomic_write_text(out / "table.md", markdown_table(results))
    atomic_write_text(out / "table.csv", csv_table(results))
    if figures:
        from ...report.crosstask_figures import write_report

        write_report(results, out)
    return results
