"""Training and evaluating single- and multi-task models on (possibly poisoned) images with clean targets.

The epochs run through uebench.training.fit, the loop the victim trainer uses: tensor-resident data, one seeded
generator per epoch (shuffle, joint crop + flip, denoising noise), so a resumed run replays the batches an uninterrupted
one would see. A multi-task step sums the tasks' weighted losses; tasks that see another input (denoising: the image
plus noise) get their own forward pass through the shared encoder.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from ...core.errors import UserError
from ...core.runtime import autocast_factory
from ...core.seeds import seeded
from ...metrics import ProbeData, SALConfig
from ...models import HeadSpec, MultiTaskNet
from ...training.fit import fit as fit_epochs
from ...training.recipes import Recipe
from ...training.trainer import make_optimizer, prepare
from .augment import crop_flip_joint
from .task import Task
from .tasks import eval_noise, noisy


@dataclass
class TaskData:
    """One split ready for training: uint8 images (possibly poisoned) and every task's (clean) targets."""

    images: torch.Tensor
    targets: dict[str, torch.Tensor]
    sources: dict[str, str] = field(default_factory=dict)  # where each target came from (for the report)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: torch.Tensor) -> "TaskData":
        return TaskData(self.images[idx], {k: v[idx] for k, v in self.targets.items()}, self.sources)

    def with_images(self, images: torch.Tensor) -> "TaskData":
        if images.shape != self.images.shape:
            raise UserError(
                f"poisoned images {tuple(images.shape)} do not match the clean ones {tuple(self.images.shape)}"
            )
        return TaskData(images, self.targets, self.sources)


def task_data(ds, tasks: Sequence[Task], policy: str) -> TaskData:
    """Targets of every task from a CLEAN dataset (derived ones computed from its RGB)."""
    targets, sources = {}, {}
    for t in tasks:
        targets[t.name], sources[t.name] = t.target(ds, policy)
    return TaskData(ds.images, targets, sources)


@dataclass
class Settings:
    """How a model is trained: the encoder, the recipe (uebench.training.recipes), the task weights, SAL probing."""

    encoder: str = "resnet18"
    width: float = 0.25
    recipe: Recipe | None = None
    augment: bool = True  # joint random crop (pad 4) + flip
    weights: dict[str, float] = field(default_factory=dict)  # task -> loss weight (default: the task's own)
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    sal: bool = True
    sal_mode: str = "fast"
    sal_every: int = 0  # probe every K epochs (0: the last epoch only); the last epoch is always probed
    sal_subset: int = 256
    sal_rounds: int | None = None
    sal_eps: float = 0.05
    sal_step_rule: str = "sgd"
    sal_crossfit: bool = False
    eval_batch: int = 256

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["recipe"] = self.recipe.to_dict() if self.recipe else None
        return d

    def sal_config(self) -> SALConfig:
        """How each task's SAL is measured: the eval-loss origin (a task's running loss is a sum over heads), the
        training images un-augmented (a dense target would have to move with each crop)."""
        return SALConfig(
            mode=self.sal_mode,
            eps=self.sal_eps,
            rounds=self.sal_rounds,
            subset=self.sal_subset,
            step_rule=self.sal_step_rule,
            crossfit=self.sal_crossfit,
            augment="none",
        )


def build_net(
    tasks: Sequence[Task], channels: dict[str, int], settings: Settings, in_channels: int = 3
) -> MultiTaskNet:
    with seeded(settings.seed):  # the init depends on the seed only
        heads = {t.name: HeadSpec(t.kind, channels[t.name]) for t in tasks}
        return MultiTaskNet(heads, settings.encoder, in_channels, settings.width)


def input_groups(tasks: Sequence[Task]) -> dict[float, list[Task]]:
    """Tasks grouped by the input they see (the noise level of their input; 0 = the image itself)."""
    out: dict[float, list[Task]] = {}
    for t in tasks:
        out.setdefault(t.input_noise, []).append(t)
    return out


@contextlib.contextmanager
def only(net: MultiTaskNet, names: Sequence[str]):
    saved = net.active
    net.active = tuple(names)
    try:
        yield net
    finally:
        net.active = saved


def multitask_loss(
    net: MultiTaskNet,
    x: torch.Tensor,
    targets: dict[str, torch.Tensor],
    tasks: Sequence[Task],
    weights: dict[str, float],
    noise_fn: Callable[[torch.Tensor, float], torch.Tensor],
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Sum of weighted task losses on a batch; returns (total, per-task losses, per-task outputs)."""
    total = x.new_zeros(())
    parts, outs = {}, {}
    for sigma, group in input_groups(tasks).items():
        inp = x if sigma == 0 else noise_fn(x, sigma)
        with only(net, [t.name for t in group]):
            out = net(inp)
        for t in group:
            loss = t.loss(out[t.name], targets[t.name])
            total = total + weights.get(t.name, t.weight) * loss
            parts[t.name] = loss.detach()  # a tensor: nothing leaves the device inside the loop
            outs[t.name] = out[t.name]
    return total, parts, outs


class MultiTaskStep:
    """The loss step of the shared-encoder models (uebench.training.fit.LossStep): joint crop + flip of the images and
    their dense targets, each input group's forward pass, the weighted sum of the task losses; keeps each task's
    loss."""

    hint = "lower the lr or a task weight"
    min_batch = 2  # BatchNorm cannot train on one image

    def __init__(self, data: TaskData, tasks: Sequence[Task], settings: Settings, device: torch.device, autocast):
        self.data, self.tasks, self.settings, self.device, self.autocast = data, tasks, settings, device, autocast
        self.pads = {t.name: t.pad for t in tasks}
        self.sums = {t.name: 0.0 for t in tasks}

    def __call__(self, net, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        x = prepare(self.data.images[idx], self.device, channels_last=False)
        targets = {t.name: self.data.targets[t.name][idx].to(self.device) for t in self.tasks}
        if self.settings.augment:
            x, targets = crop_flip_joint(x, targets, self.pads, generator)
        x = x.contiguous(memory_format=torch.channels_last)

        def noise_fn(inp, sigma):
            return noisy(inp, sigma, torch.randn(inp.shape, generator=generator).to(self.device))

        with self.autocast():
            loss, parts, _ = multitask_loss(net, x, targets, self.tasks, self.settings.weights, noise_fn)
        for k, v in parts.items():  # float64 on the device: the bits a Python float sum gives
            self.sums[k] = self.sums[k] + v.double() * len(idx)
        return loss, len(idx)

    def begin_epoch(self, epoch: int) -> None:
        pass  # no defenses here

    def epoch_record(self, seen: int) -> dict[str, Any]:
        n = max(seen, 1)
        record = {"train_task_loss": {k: float(v) / n for k, v in self.sums.items()}}
        self.sums = {t.name: 0.0 for t in self.tasks}
        return record


@torch.no_grad()
def predict(
    net: MultiTaskNet, data: TaskData, tasks: Sequence[Task], device: torch.device, batch: int = 256
) -> dict[str, torch.Tensor]:
    """Every task's compact predictions on a split (no augmentation; denoising on its fixed evaluation noise)."""
    was = net.training
    net.eval()
    preds: dict[str, list[torch.Tensor]] = {t.name: [] for t in tasks}
    noise = {s: eval_noise(tuple(data.images.shape)) for s in input_groups(tasks) if s > 0}
    for i in range(0, len(data), batch):
        x = prepare(data.images[i : i + batch], device, channels_last=True)
        for sigma, group in input_groups(tasks).items():
            inp = (
                x
                if sigma == 0
                else noisy(x, sigma, noise[sigma][i : i + batch].to(device)).contiguous(
                    memory_format=torch.channels_last
                )
            )
            with only(net, [t.name for t in group]):
                out = net(inp)
            for t in group:
                preds[t.name].append(t.predict(out[t.name]).cpu())
    net.train(was)
    return {k: torch.cat(v) for k, v in preds.items()}


def evaluate_tasks(net, data: TaskData, tasks: Sequence[Task], device, batch: int = 256) -> dict[str, dict[str, float]]:
    preds = predict(net, data, tasks, device, batch)
    return {t.name: t.score(preds[t.name], data.targets[t.name]) for t in tasks}


def class_shortcut(
    net: MultiTaskNet, task: Task, poisoned: TaskData, clean: TaskData, device, size: int = 512, seed: int = 0
) -> dict[str, float] | None:
    """The shortcut probe (uebench.training.shortcut) on a label task's head: accuracy, against the poisoned image's
    label, of its perturbation moved onto a clean image of another class, and accuracy on the clean originals
    (percent). None where the poison changed no image of two classes."""
    from ...training.shortcut import other_class_partners, transplant

    labels = clean.targets[task.name]
    changed = torch.nonzero((poisoned.images != clean.images).flatten(1).any(1)).flatten()
    g = torch.Generator().manual_seed(seed)
    pick = changed[torch.randperm(len(changed), generator=g)[:size]].sort().values
    partner = other_class_partners(labels[pick])
    pick, partner = pick[partner >= 0], pick[partner[partner >= 0]]
    if len(pick) == 0:
        return None
    moved = transplant(poisoned.images[pick], clean.images[pick], clean.images[partner])
    probe = clean.subset(pick)
    on_moved = predict(net, probe.with_images(moved), [task], device)[task.name]
    on_clean = predict(net, probe, [task], device)[task.name]
    y = labels[pick]
    return {
        "shortcut_acc": 100.0 * float((on_moved == y).float().mean()),
        "clean_train_acc": 100.0 * float((on_clean == y).float().mean()),
        "shortcut_n": len(pick),
    }


def trivial_scores(train: TaskData, test: TaskData, tasks: Sequence[Task]) -> dict[str, dict[str, float]]:
    """The scores of each task's best constant predictor (fitted on the training targets)."""
    return {
        t.name: t.score(t.trivial(train.targets[t.name], test.targets[t.name]), test.targets[t.name]) for t in tasks
    }


# ---- SAL of one task's loss on the shared encoder -----------------------------------------------------------
def task_probe_data(task: Task, data: TaskData, batch_size: int = 256) -> ProbeData:
    """Probe data of a task: the training images (fixed noise for denoising) and the task's targets.

    Not augmented: a dense target would have to move with each crop, which the SAL search's data passes do not
    do; the same un-augmented images serve every task, so their SAL vectors compare."""
    x: torch.Tensor = data.images
    if task.input_noise > 0:
        x = noisy(x.float() / 255.0, task.input_noise, eval_noise(tuple(x.shape)))
    return ProbeData(x, data.targets[task.name], batch_size=batch_size, augment=False)


def task_sal(net: MultiTaskNet, task: Task, data: TaskData, settings: Settings, device: torch.device) -> dict[str, Any]:
    """SAL of every shared-encoder layer for this task's loss (the settings' SALConfig, origin "eval")."""
    probe = task_probe_data(task, data)
    probe = ProbeData(probe.inputs.to(device), probe.targets.to(device), batch_size=probe.batch_size, augment=False)

    def loss_fn(out, y):
        return task.loss(out[task.name], y)

    with only(net, [task.name]):
        result = settings.sal_config().measure(
            net, probe, layers=net.encoder_layers(), origin="eval", seed=settings.seed, loss_fn=loss_fn, device=device
        )
    return {
        "sal": {k.removeprefix("encoder."): v for k, v in result.to_record()["sal"].items()},
        "l0": result.loss0,
        "seconds": result.seconds,
    }


# ---- one run ------------------------------------------------------------------------------------------------
def fit_multitask(
    net: MultiTaskNet,
    train: TaskData,
    test: TaskData,
    tasks: Sequence[Task],
    settings: Settings,
    *,
    run=None,
    progress: bool = True,
    desc: str = "crosstask",
    stop_after: int | None = None,
) -> list[dict[str, Any]]:
    """Train `net` for the recipe's epochs; after each: test metrics per task, and per-task SAL when due.
    With a RunFolder `run`, every epoch is checkpointed there and a rerun continues where it stopped."""
    recipe = settings.recipe
    if recipe is None:
        raise UserError("no training recipe given")
    device = torch.device(settings.device)
    autocast = autocast_factory(device, settings.precision)
    net = net.to(device).to(memory_format=torch.channels_last)

    def after_epoch(epoch: int, record: dict[str, Any]) -> None:
        record["test"] = evaluate_tasks(net, test, tasks, device, settings.eval_batch)
        if settings.sal and sal_due(epoch, recipe.epochs, settings.sal_every):
            t0 = time.perf_counter()
            record["task_sal"] = {t.name: task_sal(net, t, train, settings, device) for t in tasks}
            record["sal_seconds"] = time.perf_counter() - t0

    return fit_epochs(
        net,
        make_optimizer(net, recipe),
        MultiTaskStep(train, tasks, settings, device, autocast),
        len(train),
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        lr_at=recipe.lr_at,
        seed=settings.seed,
        run=run,
        after_epoch=after_epoch,
        stop_after=stop_after,
        desc=desc if progress else None,
        postfix=lambda r: {"loss": f"{r['train_loss']:.3f}"},
    )


def sal_due(epoch: int, epochs: int, every: int) -> bool:
    return epoch == epochs or (every > 0 and epoch % every == 0)


def summarize(history: list[dict[str, Any]], tasks: Sequence[Task]) -> dict[str, Any]:
    """Final and best-epoch metrics per task (best in the task's own direction)."""
    out: dict[str, Any] = {"epochs_done": len(history), "train_seconds": sum(h["train_seconds"] for h in history)}
    for t in tasks:
        vals = [h["test"][t.name][t.metric] for h in history]
        best = vals[0]
        for v in vals[1:]:
            best = v if t.better(v, best) else best
        out[t.name] = {"final": vals[-1], "best": best, "final_all": history[-1]["test"][t.name]}
    return out


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
