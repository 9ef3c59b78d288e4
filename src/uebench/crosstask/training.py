"""Training and evaluating single- and multi-task models on (possibly poisoned) images with clean targets.

Read it top to bottom, like uebench.trainer: tensor-resident data, one seeded generator per epoch (shuffle,
joint crop + flip, denoising noise), so a resumed run replays the batches an uninterrupted one would see.
A multi-task step sums the tasks' weighted losses; tasks that see another input (denoising: the image plus
noise) get their own forward pass through the shared encoder.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from ..errors import UserError
from ..metrics import FastSALConfig, ProbeData, model_sal
from ..models import HeadSpec, MultiTaskNet
from ..recipes import Recipe
from ..seeds import seeded
from ..trainer import autocast_factory, batches, epoch_generator, make_optimizer, prepare
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
    """How a model is trained: the encoder, the recipe (uebench.recipes), the task weights, SAL probing."""

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
    eval_batch: int = 256

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["recipe"] = self.recipe.to_dict() if self.recipe else None
        return d


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
) -> tuple[torch.Tensor, dict[str, float], dict[str, torch.Tensor]]:
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
            parts[t.name] = float(loss.detach())
            outs[t.name] = out[t.name]
    return total, parts, outs


def train_epoch(
    net,
    opt,
    data: TaskData,
    tasks: Sequence[Task],
    settings: Settings,
    recipe: Recipe,
    generator: torch.Generator,
    device: torch.device,
    autocast,
    on_step=None,
) -> dict[str, Any]:
    net.train()
    pads = {t.name: t.pad for t in tasks}
    sums = {t.name: 0.0 for t in tasks}
    total_sum, seen = 0.0, 0
    for idx in batches(len(data), recipe.batch_size, generator):
        if len(idx) < 2:  # BatchNorm cannot train on one image
            continue
        x = prepare(data.images[idx], device, channels_last=False)
        targets = {t.name: data.targets[t.name][idx].to(device) for t in tasks}
        if settings.augment:
            x, targets = crop_flip_joint(x, targets, pads, generator)
        x = x.contiguous(memory_format=torch.channels_last)

        def noise_fn(inp, sigma):
            return noisy(inp, sigma, torch.randn(inp.shape, generator=generator).to(device))

        with autocast():
            loss, parts, _ = multitask_loss(net, x, targets, tasks, settings.weights, noise_fn)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not torch.isfinite(loss):
            raise UserError("training diverged: the multi-task loss is NaN or infinite (lower the lr or a task weight)")
        total_sum += float(loss.detach()) * len(idx)
        for k, v in parts.items():
            sums[k] += v * len(idx)
        seen += len(idx)
        if on_step:
            on_step()
    n = max(seen, 1)
    return {"train_loss": total_sum / n, "train_task_loss": {k: v / n for k, v in sums.items()}}


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


def evaluate(net, data: TaskData, tasks: Sequence[Task], device, batch: int = 256) -> dict[str, dict[str, float]]:
    preds = predict(net, data, tasks, device, batch)
    return {t.name: t.score(preds[t.name], data.targets[t.name]) for t in tasks}


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
    """SAL of every shared-encoder layer for this task's loss (uebench.metrics.model_sal, origin "eval")."""
    probe = task_probe_data(task, data)
    probe = ProbeData(probe.inputs.to(device), probe.targets.to(device), batch_size=probe.batch_size, augment=False)

    def loss_fn(out, y):
        return task.loss(out[task.name], y)

    with only(net, [task.name]):
        result = model_sal(
            net,
            probe,
            layers=net.encoder_layers(),
            eps=settings.sal_eps,
            rounds=settings.sal_rounds,
            origin="eval",
            mode=settings.sal_mode,
            seed=settings.seed,
            loss_fn=loss_fn,
            device=device,
            fast=FastSALConfig(subset=settings.sal_subset, augment="none"),
        )
    return {
        "sal": {k.removeprefix("encoder."): v for k, v in result.to_record()["sal"].items()},
        "l0": result.loss0,
        "seconds": result.seconds,
    }


# ---- one run ------------------------------------------------------------------------------------------------
def fit(
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
    opt = make_optimizer(net, recipe)
    history: list[dict[str, Any]] = []
    if run is not None:
        state = run.load_checkpoint()
        if state is not None:
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            history = state["history"]
    steps = -(-len(train) // recipe.batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=recipe.epochs * steps, initial=len(history) * steps, desc=desc, unit="step", dynamic_ncols=True
        )
    last = recipe.epochs if stop_after is None else min(recipe.epochs, stop_after)
    for epoch in range(len(history), last):
        start = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = recipe.lr_at(epoch)
        record: dict[str, Any] = {"epoch": epoch + 1, "lr": recipe.lr_at(epoch)}
        record.update(
            train_epoch(
                net,
                opt,
                train,
                tasks,
                settings,
                recipe,
                epoch_generator(settings.seed, epoch),
                device,
                autocast,
                bar.update if bar else None,
            )
        )
        record["train_seconds"] = time.perf_counter() - start
        record["test"] = evaluate(net, test, tasks, device, settings.eval_batch)
        if settings.sal and sal_due(epoch + 1, recipe.epochs, settings.sal_every):
            t0 = time.perf_counter()
            record["task_sal"] = {t.name: task_sal(net, t, train, settings, device) for t in tasks}
            record["sal_seconds"] = time.perf_counter() - t0
        history.append(record)
        if bar:
            bar.set_postfix(epoch=epoch + 1, loss=f"{record['train_loss']:.3f}")
        if run is not None:
            run.save_epoch(net, opt, history)
    if bar:
        bar.close()
    return history


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
