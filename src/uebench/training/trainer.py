"""The victim trainer: tensor-resident data, batch augmentation, per-epoch probes, atomic checkpoints, resume.

Read it top to bottom: `train()` resolves data and model, then loops over epochs; each epoch shuffles and
augments with a generator seeded by (seed, epoch), so a resumed run replays exactly the batches an
uninterrupted one would have seen and ends with the same weights on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core import distributed
from ..core.errors import UserError
from ..core.io import read_json, recorded
from ..core.lock import FolderLock
from ..core.runtime import autocast_factory, grad_scaler, resolve_device, resolve_precision
from ..core.seeds import seeded
from ..data import ImageDataset, load, options_from_record, recorded_options, resolved_options, seeded_subset
from ..data.augment import AUGMENTATIONS, to_float
from ..models import create_model
from ..poisons.poison import Poison
from .fit import fit, train_epoch
from .pretrained import INIT_HEADS, freeze, load_init, trainable
from .recipes import Recipe
from .records import CHECKPOINT, RunFolder, kept_weights, manifest, save_weights
from .settings import RunSettings, check_settings, from_record, renamed, to_record
from .shortcut import SHORTCUT_KEYS, shortcut_probes

# TrainConfig fields added after run folders existed, with their unset values: left out of config.json (and so out of
# a bench's run keys) when unset, so that older folders resume and keep their names
ADDED_LATER = {
    "subset_seed": None,
    "poison_fraction": None,
    "eval_batch_size": None,
    "compile": False,
    "unpaired": False,
    "init_from": None,
    "init_sha256": None,
    "init_head": "auto",
    "freeze": (),
}


# the names config.json has always used for the fields that have another name in the Python API
RECORD_NAMES = {"subset": "train_subset"}


@renamed(train_subset="subset")
@dataclass(frozen=True)
class TrainConfig(RunSettings):
    """Everything that determines a run. Saved as config.json; a resume must match it exactly. The data, model and
    recipe settings are uebench.training.settings.RunSettings (`subset_seed` None: the training seed). The defaults
    are a first run on a laptop CPU (scenes `natural`, ResNet-18 width 0.125, recipe cpu: minutes); the paper's
    victim is `width=1.0, recipe="paper"`."""

    poison: str | None = None
    seed: int = 0
    poison_fraction: float | None = None  # the share of the poison's images kept (per class); None: all of them
    # the user confirms that the poison is unpaired (no index mapping: it replaces the whole training set, its budget
    # unchecked); true exactly when it is, so config.json says what the run trained on
    unpaired: bool = False
    eval_batch_size: int | None = None  # the test evaluation's batch (memory only, not the result); None: 1024
    compile: bool = False  # torch.compile the training forward pass (the weights, checkpoints and probes are the same)
    channels_last: bool = True
    defense: str | None = None  # a training-time defense from uebench.defenses (jpeg, gray, mixup, at, ...)
    defense_params: dict[str, Any] = field(default_factory=dict)
    # a pretrained start (uebench.training.pretrained): a safetensors weights file, its sha256 (None: hashed when the
    # run starts, so config.json holds it; given, the file must still have it), and what happens to the classifier
    # head: auto (loaded where the classes match in number, else re-initialised from the seed) | reset (always)
    init_from: str | None = None
    init_sha256: str | None = None
    init_head: str = "auto"
    # modules whose parameters get no updates and whose BatchNorm statistics stay the file's (`conv1,bn1,layer1`)
    freeze: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # an option whose default changed (scenes' difficulty) is held as the value it loads with: the config says
        # what it trains on, and reads back from its record as it was made
        object.__setattr__(self, "dataset_options", resolved_options(self.dataset, self.dataset_options))
        if isinstance(self.freeze, (list, str)):  # a record's list, or one module name
            object.__setattr__(self, "freeze", (self.freeze,) if isinstance(self.freeze, str) else tuple(self.freeze))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "TrainConfig":
        """A run's settings as config.json (or a bench's plan) holds them; dataset options it leaves out whose
        default changed since have the value it was made with (uebench.data.options_from_record)."""
        values = from_record(record, RECORD_NAMES)
        if "dataset_options" in values:
            values["dataset_options"] = options_from_record(
                values.get("dataset", cls.dataset), values["dataset_options"]
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {**self.fields(), "resolved_recipe": self.resolved_recipe().to_dict()}

    def fields(self) -> dict[str, Any]:
        """The fields under their record names, without a subset seed that is the training seed's (run folders
        written before it existed keep their configuration, and a bench its run keys), the dataset options as a record
        holds them (uebench.data.recorded_options: scenes' difficulty written out unless `standard`, which a record
        written before leaves out)."""
        values = asdict(self)
        values["dataset_options"] = recorded_options(self.dataset, values["dataset_options"])
        return recorded(to_record(values, RECORD_NAMES), ADDED_LATER)

    @property
    def subset_rng_seed(self) -> int:
        return self.seed if self.subset_seed is None else self.subset_seed


@dataclass
class EpochContext:
    """What a probe sees after each epoch. The model is in eval mode; probes must leave it as they found it."""

    epoch: int  # 1-based: the number of finished epochs
    model: nn.Module
    train_set: ImageDataset  # what the model trained on (poisoned, if a poison was given)
    test_set: ImageDataset
    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager]
    record: dict[str, Any]  # this epoch's record so far (train_loss, train_acc, ...)
    seed: int
    batch_size: int = 256  # the training batch (the SAL probe's default batch, as the paper's code)
    defense: Any = None  # the run's uebench.defenses.Defense, or None
    run_dir: Path | None = None  # the run folder, when the run has one (probes that keep files write there)
    progress: bool = False  # the run shows progress: a long probe shows its own (SAL: its layers, under the bar)

    def evaluate(self, ds: ImageDataset, batch_size: int = 1024) -> tuple[float, float]:
        """Mean loss and accuracy (%) of the model on `ds`, as the test accuracy is measured."""
        return evaluate_classifier(self.model, ds, self.device, self.autocast, batch_size)


class Probe(Protocol):
    """A per-epoch measurement. Returns flat JSON-able values merged into the epoch's record."""

    name: str

    def __call__(self, ctx: EpochContext) -> dict[str, Any]: ...


@dataclass
class TestAccuracy:
    name: str = "test"
    batch_size: int = 1024

    def __call__(self, ctx: EpochContext) -> dict[str, Any]:
        loss, acc = evaluate_classifier(ctx.model, ctx.test_set, ctx.device, ctx.autocast, self.batch_size)
        return {"test_loss": loss, "test_acc": acc}


@dataclass
class RunResult:
    config: TrainConfig
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    model: nn.Module
    out: Path | None = None


# ---- the pieces of an epoch ---------------------------------------------------------------------------------
def prepare(images_u8: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = to_float(images_u8.to(device, non_blocking=True))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    ds: ImageDataset,
    device: torch.device,
    autocast=contextlib.nullcontext,
    batch_size: int = 1024,
    channels_last: bool = True,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (in %) of `model` on `ds`, without augmentation."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(ds), batch_size):
        x = prepare(ds.images[i : i + batch_size], device, channels_last)
        y = ds.labels[i : i + batch_size].to(device)
        with autocast():
            out = model(x)
        total_loss += float(F.cross_entropy(out.float(), y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
    model.train(was_training)
    n = max(len(ds), 1)
    return total_loss / n, 100.0 * correct / n


def soft_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for hard labels (N,) or label distributions (N, C) (mixup, cutmix)."""
    if y.ndim == 1:
        return F.cross_entropy(logits, y)
    return -(y * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


class ClassificationStep:
    """The loss step of a classifier (uebench.training.fit.LossStep): augment the batch, let a defense rewrite it and
    its labels, cross-entropy against hard labels or label distributions; counts the correct predictions."""

    hint = "lower --lr?"
    min_batch = 1

    def __init__(
        self,
        ds: ImageDataset,
        augment: str | None,
        device,
        autocast,
        channels_last: bool,
        defense=None,
        forward=None,
        world: distributed.World = distributed.SINGLE,
    ):
        self.augment, self.device, self.world = AUGMENTATIONS[augment], device, world
        self.autocast, self.channels_last, self.defense = autocast, channels_last, defense
        self.forward = forward  # a compiled forward of the model (torch.compile), or None: the model itself
        # uint8 images and labels resident on the device once (a no-op on CPU): a batch is an index, not a copy
        self.images, self.labels = ds.images.to(device), ds.labels.to(device)
        self.correct, self.mixed = 0, False

    def __call__(self, model: nn.Module, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        idx = idx.to(self.device)
        x = prepare(self.images[idx], self.device, self.channels_last)
        y = self.labels[idx]
        if self.augment is not None:
            x = self.augment(x, generator)
        if self.defense is not None:
            x, y = self.defense.batch(x, y, model=model, generator=generator, autocast=self.autocast)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            out = (model if self.forward is None else self.forward)(x)
            loss = soft_cross_entropy(out.float(), y)
        self.correct = self.correct + (out.argmax(1) == (y if y.ndim == 1 else y.argmax(1))).sum()  # stays on device
        self.mixed = self.mixed or y.ndim == 2
        return loss, len(y)

    def begin_epoch(self, epoch: int) -> None:
        if self.defense is not None:
            self.defense.begin_epoch(epoch)

    def epoch_record(self, seen: int) -> dict[str, Any]:
        correct = int(self.world.total(self.correct)) if self.world.distributed else int(self.correct)
        record: dict[str, Any] = {"train_acc": 100.0 * correct / max(seen, 1)}
        if self.mixed:  # the loss is against label distributions (mixup, cutmix): SAL's running origin needs to know
            record["mixed_labels"] = True
        self.correct, self.mixed = 0, False
        return record


def classification_epoch(
    model,
    opt,
    ds: ImageDataset,
    recipe: Recipe,
    generator,
    device,
    autocast,
    channels_last,
    on_step=None,
    defense=None,
    world: distributed.World = distributed.SINGLE,
) -> dict[str, float]:
    """One pass over ds with the recipe's augmentation (and a defense's batch rewrite):
    uebench.training.fit.train_epoch. In a world of several processes `model` is the DDP wrapper and each trains on its
    share of every batch."""
    step = ClassificationStep(ds, recipe.augment, device, autocast, channels_last, defense, world=world)
    return train_epoch(model, opt, step, len(ds), recipe.batch_size, generator, on_step, world=world)


# ---- data and model -------------------------------------------------------------------------------------
def load_splits(config: TrainConfig) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """Train (poisoned if asked), test, and the clean train split with the same subset (the poisoned images'
    originals; the train split itself when there is no poison). Each split is read once."""
    clean = load(config.dataset, config.data_dir, "train", **config.dataset_options)
    test_set = load(config.dataset, config.data_dir, "test", **config.dataset_options)
    train_set = training_set(config, clean)
    if config.subset is not None:
        clean = seeded_subset(clean, config.subset, seed=config.subset_rng_seed) if config.poison else train_set
    return train_set, test_set, clean


def training_set(config: TrainConfig, clean: ImageDataset) -> ImageDataset:
    """What a run trains on, from the full clean training split: poisoned (if asked), then its seeded subset."""
    poison = Poison.load(config.poison) if config.poison else None
    if poison is not None and poison.paired and config.unpaired:  # the config would record what the run is not
        raise UserError(
            f"--unpaired: {config.poison} is paired (each image "
            "replaces a known clean one); train it without --unpaired"
        )
    if poison is not None and config.poison_fraction is not None:
        poison = poison.fraction(config.poison_fraction, config.subset_rng_seed)
    train_set = poison.apply(clean, unpaired=config.unpaired) if poison is not None else clean
    if config.subset is not None:
        train_set = seeded_subset(train_set, config.subset, seed=config.subset_rng_seed)
    if poison is not None and poison.paired:
        share = poison_coverage(poison, len(clean), train_set.indices, config)
        train_set = train_set.with_images(train_set.images, poison_fraction=share)
    return train_set


def poison_coverage(poison: Poison, split_size: int, trained_indices: torch.Tensor, config: TrainConfig) -> float:
    """The share of the trained images that carry the poison. Without --poison-fraction every trained image must
    carry it (99%: a release may miss a few); a poison crafted on another subset, or on a subset and trained on the
    whole split, protects a few images by accident and reads as "the attack does not work", so it is refused in one
    line. --poison-fraction asks for partial poisoning on purpose: then at least one trained image must carry it."""
    covered = torch.zeros(split_size, dtype=torch.bool)
    covered[poison.indices] = True
    trained = covered[trained_indices]
    n, hit = len(trained), int(trained.sum())
    share = hit / max(n, 1)
    if config.poison_fraction is None and share < 0.99:
        raise UserError(
            f"the poison covers {100 * share:.1f}% of the {n} training images ({hit}), not all of them: train on the "
            f"images it was crafted on (the --subset and --subset-seed of its craft; it holds {len(poison)} of the "
            f"split's {split_size}), or pass --poison-fraction 1 to train this partly poisoned set on purpose"
        )
    if hit == 0:
        raise UserError(f"the poison covers none of the {n} training images: it was crafted on other images")
    return share


def load_data(config: TrainConfig) -> tuple[ImageDataset, ImageDataset]:
    """Train (poisoned if asked) and test splits for a config."""
    train_set, test_set, _ = load_splits(config)
    return train_set, test_set


def build_defense(config: TrainConfig):
    """The configured defense, or None. Imported lazily: uebench.defenses is optional for the trainer."""
    if config.defense in (None, "", "none"):
        return None
    from ..defenses import create_defense

    return create_defense(config.defense, **config.defense_params)


def build_model(config: TrainConfig, ds: ImageDataset) -> nn.Module:
    return model_for(config, ds.shape, ds.num_classes)


def model_for(config: TrainConfig, shape: Sequence[int], num_classes: int) -> nn.Module:
    c, h, _ = shape
    with seeded(config.seed):  # the init depends on the seed only; the global generator is left as it was
        return create_model(config.model, num_classes=num_classes, in_channels=c, image_size=h, width=config.width)


def uses_channels_last(config: TrainConfig) -> bool:
    return config.channels_last and config.model not in ("linear",)


def place_model(model: nn.Module, config: TrainConfig, device: torch.device) -> nn.Module:
    """The model on its device, in the memory format the run trains in."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if uses_channels_last(config) else model


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimizer over the parameters that train (frozen ones get no step, no weight decay)."""
    params = trainable(model)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(
        params,
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=recipe.nesterov,
    )


# ---- the run --------------------------------------------------------------------------------------------
def train(
    config: TrainConfig,
    out: str | Path | None = None,
    *,
    train_set: ImageDataset | None = None,
    test_set: ImageDataset | None = None,
    probes: Sequence[Probe] = (),
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    init_file: str | Path | None = None,
    save_final_weights: bool = False,
) -> RunResult:
    """Train one victim model. With `out`, every epoch is checkpointed and recorded there.

    `stop_after` ends the run after that many epochs in total without marking it finished (simulates
    an interruption; `resume=True` continues it). `init_file`: where to read `config.init_from` (a bench keeps its
    copy in its folder; the config records the name it has there). `save_final_weights`: the finished model's weights
    as a safetensors file in the run folder (weights/epoch-NNNN.safetensors, what --init-from takes); a run finished
    earlier writes it from its checkpoint.
    """
    world = distributed.current(resolve_device(config.device))
    check_config(config)  # before the init file is hashed: its settings are checked first
    config = resolve_init(config, init_file)
    args = (train_set, test_set, probes, resume, overwrite)
    more = (init_file, save_final_weights)
    if out is None:
        if save_final_weights:
            raise UserError("saving the final weights needs a run folder (--out)")
        return _train(config, None, *args, progress, stop_after, world, *more)
    if not world.main:  # rank 0 holds the lock for the whole torchrun job
        return _train(config, Path(out), *args, False, stop_after, world, *more)
    with FolderLock(out):  # one process per run folder: a second one is refused before it reads or deletes anything
        return _train(config, Path(out), *args, progress, stop_after, world, *more)


def resolve_init(config: TrainConfig, init_file: str | Path | None = None) -> TrainConfig:
    """The config with its init file's sha256, hashed now where it does not hold one (config.json then records it)."""
    if config.init_from is None or config.init_sha256 is not None:
        return config
    from ..core.io import file_sha256

    path = init_file if init_file is not None else config.init_from
    if not os.path.isfile(path):
        raise UserError(f"--init-from {path}: no such file")
    return dataclasses.replace(config, init_sha256=file_sha256(path))


def check_config(config: TrainConfig) -> None:
    """What can be refused before any data is loaded: the model's name and the run's numbers."""
    check_settings(config, seeds=(config.seed,))
    e = config.eval_batch_size
    if e is not None and (isinstance(e, bool) or not isinstance(e, int) or e < 1):
        raise UserError(f"--eval-batch-size must be a whole number >= 1, got {e!r}")
    if config.poison_fraction is not None:
        f = config.poison_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise UserError(f"--poison-fraction is in (0, 1], got {f!r}")
        if not config.poison:
            raise UserError("--poison-fraction is a share of a poison's images; give --poison too")
    if not isinstance(config.unpaired, bool):
        raise UserError(f"unpaired is true or false, got {config.unpaired!r}")
    if config.unpaired and not config.poison:
        raise UserError("--unpaired confirms that a --poison file is unpaired; give --poison too")
    if config.subset_seed is not None:
        if config.subset is None and config.poison_fraction is None:
            raise UserError("--subset-seed draws a --subset or a --poison-fraction; give one of them too")
    check_init_settings(config.init_from, config.init_head, config.freeze)
    if config.init_sha256 is not None and config.init_from is None:
        raise UserError("init_sha256 is the hash of an --init-from file; give --init-from too")


def check_init_settings(init_from: Any, init_head: Any, frozen: Any) -> None:
    """The pretrained-start settings every experiment takes (train, bench), refused in one line where they contradict
    each other or would be ignored. The file itself is checked against the model when the run builds it."""
    if init_from is not None and (not isinstance(init_from, str) or not init_from):
        raise UserError(f"--init-from takes a weights file, got {init_from!r}")
    if init_head not in INIT_HEADS:
        raise UserError(f"unknown --init-head '{init_head}'; valid: {', '.join(INIT_HEADS)}")
    if init_head != "auto" and init_from is None:
        raise UserError("--init-head says what to do with the head of an --init-from file; give --init-from too")
    if not isinstance(frozen, tuple) or not all(isinstance(m, str) and m for m in frozen):
        raise UserError(f"--freeze takes module names (e.g. conv1,bn1,layer1), got {frozen!r}")
    if frozen and init_from is None:
        raise UserError("--freeze keeps layers at their pretrained values; give --init-from too")


def splits_and_probes(config: TrainConfig) -> tuple[ImageDataset, ImageDataset, list[Probe]]:
    """The training and test splits of `config`, and the probes its poison calls for: the shortcut probe (is the model
    reading the poison or the content?) when it names one. Pass all three to train(); the trainer adds no probe."""
    train_set, test_set, clean = load_splits(config)
    probes = shortcut_probes(train_set, clean, seed=config.seed) if config.poison else []
    return train_set, test_set, probes


def _finished_run(config: TrainConfig, run: RunFolder, world, model: nn.Module | None = None) -> RunResult | None:
    """A finished run handed back: `model` (or one built from the manifest's shape and classes, None if it does not
    say) with the checkpoint's weights. Only rank 0 may bring metrics.jsonl in line with the checkpoint."""
    if model is None:
        trained_on = run.trained_on()
        if trained_on is None:
            return None
        model = model_for(config, *trained_on)
    state = run.load_checkpoint(sync=world.main)
    model.load_state_dict(state["model"])
    return RunResult(config, state["history"], run.summary(), model, run.path)


def _open_run(config: TrainConfig, out: Path | None, resume: bool, overwrite: bool, world) -> RunFolder | None:
    """The run folder; in a distributed run rank 0 opens it first (it may clear it), the others then read it."""
    if out is None:
        return None
    record = resumed_record(config, out) if resume else config.to_dict()
    run = RunFolder(out, record, resume=resume, overwrite=overwrite) if world.main else None
    world.barrier()
    return run if world.main else RunFolder(out, record, resume=True)


def resumed_record(config: TrainConfig, out: Path) -> dict[str, Any]:
    """What config.json must hold to resume `config` in `out`: config.to_dict(), or the folder's config.json as it
    is where it differs only in how an earlier uebench spelled the same dataset options (scenes' difficulty written
    out as `standard`, which a record leaves out now), so such a run resumes and its config.json stays as written."""
    record = config.to_dict()
    path = out / "config.json"
    saved = read_json(path) if path.is_file() else None
    dataset = saved.get("dataset") if isinstance(saved, dict) else None
    if not (isinstance(dataset, str) and isinstance(saved.get("dataset_options"), dict)):
        return record
    options = recorded_options(dataset, options_from_record(dataset, saved["dataset_options"]))
    respelled = {**saved, "dataset_options": options}
    return saved if json.loads(json.dumps(respelled)) == json.loads(json.dumps(record, default=str)) else record


def _train(
    config, out, train_set, test_set, probes, resume, overwrite, progress, stop_after, world, init_file, save_final
) -> RunResult:
    recipe = config.resolved_recipe()
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    autocast = autocast_factory(device, precision)
    channels_last = uses_channels_last(config)
    run = _open_run(config, out, resume, overwrite, world)
    if run is not None and run.finished() and (done := _finished_run(config, run, world)) is not None:
        if save_final and world.main:
            keep_final_weights(done)
        return done  # a finished run: its model is built from the manifest, no data is loaded or filtered
    if train_set is None or test_set is None:
        loaded_train, loaded_test = load_data(config)
        train_set = loaded_train if train_set is None else train_set
        test_set = loaded_test if test_set is None else test_set
    defense = build_defense(config)
    if defense is not None:
        train_set = defense.prepare(train_set)  # dataset-level filters (ISS's JPEG, grayscale, BDR) run once
        test_set = defense.prepare_test(test_set)  # identity unless the defense also filters what it classifies
    model = build_model(config, train_set)
    if run is not None and run.finished():  # a finished run whose manifest does not say what it trained on
        done = _finished_run(config, run, world, model)
        if save_final and world.main:
            keep_final_weights(done)
        return done
    init = None
    if config.init_from is not None and not (run is not None and (run.path / CHECKPOINT).exists()):
        # a run resumed from a checkpoint has its weights there; the file was loaded (and recorded) when it started
        path = init_file if init_file is not None else config.init_from
        init = load_init(model, path, train_set.num_classes, config.init_head, config.init_sha256)
    frozen = freeze(model, config.freeze) if config.freeze else None
    model = place_model(model, config, device)
    opt = make_optimizer(model, recipe)
    if run is not None and world.main:
        facts = manifest(config.seed, device, precision, train_set, test_set, defense.describe() if defense else None)
        if world.distributed:  # how many processes shared each batch (absent for one, as before)
            facts["world_size"] = world.size
        if init is not None:  # the weights the run started from, and what became of the head (absent from scratch)
            facts["init"] = init.record()
        if frozen is not None:
            facts["frozen"] = frozen
        run.start(facts)
    all_probes: list[Probe] = [TestAccuracy(batch_size=config.eval_batch_size or 1024), *probes]
    trained = distributed.wrap(model, world, device)  # DDP in a world of several processes, else the model
    forward = torch.compile(trained) if config.compile else (None if trained is model else trained)

    def after_epoch(epoch: int, record: dict[str, Any]) -> None:
        model.eval()
        ctx = EpochContext(
            epoch,
            model,
            train_set,
            test_set,
            device,
            autocast,
            record,
            config.seed,
            recipe.batch_size,
            defense,
            run.path if run is not None else None,
            progress,
        )
        for probe in all_probes:
            t0 = time.perf_counter()
            record.update(probe(ctx))
            record[f"{probe.name}_seconds"] = time.perf_counter() - t0

    step = ClassificationStep(train_set, recipe.augment, device, autocast, channels_last, defense, forward, world)
    history = fit(
        model,
        opt,
        step,
        len(train_set),
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        lr_at=recipe.lr_at,
        seed=config.seed,
        run=run,
        after_epoch=after_epoch if world.main else None,  # the probes run in one process
        stop_after=stop_after,
        desc=f"train {config.model} on {config.dataset}" if progress else None,
        postfix=lambda r: {"loss": f"{r['train_loss']:.3f}", "test": f"{r['test_acc']:.1f}%"},
        scaler=grad_scaler(precision, device),
        world=world,
    )

    if not world.main:  # rank 0's records are the run's: wait for them
        world.barrier()
        done = run.finished() if run is not None else False
        summary = run.summary() if done else {"epochs_done": len(history), "epochs": recipe.epochs}
        return RunResult(config, run.load_checkpoint(sync=False)["history"] if done else history, summary, model, out)
    summary = summarize(history, recipe.epochs, precision, str(device))
    if config.init_from is not None:  # the summary says what the run started from, beside what it reached
        summary["init"] = {"name": Path(config.init_from).name, "sha256": config.init_sha256}
    result = RunResult(config, history, summary, model, run.path if run else None)
    if run is not None and len(history) == recipe.epochs:
        if save_final:  # before the summary: a finished run has its weights file
            keep_final_weights(result)
        run.finish(summary)
    world.barrier()
    return result


def keep_final_weights(result: RunResult) -> Path:
    """The finished model's weights as a safetensors file in its run folder (written once): what --init-from takes."""
    from .records import weights_file

    epoch = len(result.history)
    path = weights_file(result.out, epoch)
    if epoch not in kept_weights(result.out):
        save_weights(result.out, epoch, result.model)
    return path


def summarize(history: list[dict[str, Any]], epochs: int, precision: str, device: str) -> dict[str, Any]:
    if not history:
        return {"epochs_done": 0, "epochs": epochs}
    accs = [h["test_acc"] for h in history]
    peak = max(range(len(accs)), key=accs.__getitem__)
    return {
        "epochs": epochs,
        "epochs_done": len(history),
        "final_test_acc": accs[-1],
        "peak_test_acc": accs[peak],
        "peak_epoch": peak + 1,
        "final_train_acc": history[-1]["train_acc"],
        **{f"final_{k}": history[-1][k] for k in (*SHORTCUT_KEYS, "shortcut_n") if k in history[-1]},
        "final_train_loss": history[-1]["train_loss"],
        "train_seconds": sum(h["train_seconds"] for h in history),
        "precision": precision,
        "device": device,
    }
