"""The one training loop: epochs over tensor-resident data, with what a batch costs as a plug.

The victim trainer (`uebench.training.trainer`, classification), the cross-task trainer (a weighted sum of task losses)
and the landscape recorder (plain SGD, the weights kept every k steps) all run through `fit`. The epoch order, the
learning-rate schedule, the shuffle stream of each epoch (a pure function of (seed, epoch), so a resumed run replays
the batches an uninterrupted one would see), the divergence check, the resume from a run folder and the progress bar
are written once, here. What differs is the `LossStep` (the loss of one batch) and `after_epoch` (the probes).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Protocol

import torch
import torch.nn as nn

from ..core.distributed import SINGLE, World
from ..core.errors import UserError
from ..core.progress import progress_bar
from ..core.seeds import epoch_stream, generator


class LossStep(Protocol):
    """The loss of one batch, and the statistics of an epoch that only the step can keep (accuracy, per-task losses).

    `__call__` takes the positions of the batch in the training data and the epoch's generator (for augmentation);
    it returns the scalar loss to minimise and the number of images it averages over."""

    hint: str  # what to try when the loss diverges, for the error line
    min_batch: int  # smaller batches are skipped (BatchNorm cannot train on one image)

    def __call__(self, model: nn.Module, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, int]: ...

    def epoch_record(self, seen: int) -> dict[str, Any]: ...  # the epoch's statistics; resets them

    def begin_epoch(self, epoch: int) -> None: ...  # the 0-based epoch about to run (a defense may change with it)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffling/augmentation stream of one epoch: a pure function of (seed, epoch), for exact resume."""
    return generator(epoch_stream(seed, epoch))


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=generator).split(batch_size))


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    step: LossStep,
    n: int,
    batch_size: int,
    generator: torch.Generator,
    on_step: Callable[[torch.Tensor], None] | None = None,
    scaler: Any = None,
    world: World = SINGLE,
) -> dict[str, Any]:
    """One pass over n images in the generator's order: {"train_loss": the image-weighted mean, **the step's own}.
    In a world of several processes each trains on its share of every global batch (uebench.core.distributed).

    No value leaves the device inside the loop (a GPU never waits for the host): the loss is summed on the device in
    float64, which gives the bits Python's float sum would, and checked once, at the end of the epoch. `scaler` (a
    torch.amp.GradScaler) scales the loss for fp16 training."""
    model.train()
    total, seen = None, 0
    for idx in batches(n, batch_size, generator):
        if len(idx) < step.min_batch * world.size:  # the same decision in every process: each backward all-reduces
            continue
        loss, count = step(model, world.share(idx), generator)
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        part = loss.detach().double() * count
        total = part if total is None else total + part
        seen += count
        if on_step is not None:
            on_step(loss.detach())
    if world.distributed:  # the epoch's loss over every process's share
        total, seen = world.total(0.0 if total is None else total.cpu()), int(world.total(seen))
    mean = float(total) / max(seen, 1) if total is not None else 0.0
    if not math.isfinite(mean):
        raise UserError(f"training diverged: the loss is {mean} ({step.hint})")
    return {"train_loss": mean, **step.epoch_record(seen)}


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def fit(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    step: LossStep,
    n: int,
    *,
    epochs: int,
    batch_size: int,
    lr_at: Callable[[int], float],
    seed: int,
    run=None,
    after_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    stop_after: int | None = None,
    desc: str | None = None,
    postfix: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    on_step: Callable[[torch.Tensor], None] | None = None,
    leave: bool = True,
    scaler: Any = None,
    world: World = SINGLE,
    train_model: nn.Module | None = None,
    epoch_rng: Callable[[int], torch.Generator] | None = None,
) -> list[dict[str, Any]]:
    """Train for `epochs` (or until `stop_after` epochs in all); returns the per-epoch records.

    With a `run` (uebench.training.records.RunFolder), the model, optimizer and history are restored from its last
    checkpoint first and saved there after every epoch. `after_epoch(epoch, record)` adds the epoch's measurements (test
    accuracy, probes) to its record before it is saved. `desc` shows a progress bar of optimizer steps (over all
    epochs) that names the epoch under way (uebench.core.progress: tqdm, or plain lines in a log).
    `train_model` (a DistributedDataParallel wrapper of `model`) is what the steps run through in a `world` of
    several processes; only its rank 0 writes to `run`. `epoch_rng(epoch)`: another stream per epoch than
    `epoch_generator(seed, epoch)` (a crafting model's, which has drawn its own since before this loop existed)."""
    history: list[dict[str, Any]] = []
    if run is not None and (state := run.load_checkpoint(sync=world.main)) is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history = state["history"]
    steps = -(-n // batch_size)
    bar = progress_bar(desc is not None, epochs * steps, desc or "", initial=len(history) * steps, leave=leave)

    def stepped(loss: torch.Tensor) -> None:
        if bar:
            bar.update()
        if on_step is not None:
            on_step(loss)

    last = epochs if stop_after is None else min(epochs, stop_after)
    for epoch in range(len(history), last):
        start = time.perf_counter()
        if bar:
            bar.set_stage(f"epoch {epoch + 1}/{epochs}")
        set_lr(opt, lr_at(epoch))
        record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr_at(epoch)}
        step.begin_epoch(epoch)
        record.update(
            train_epoch(
                model if train_model is None else train_model,
                opt,
                step,
                n,
                batch_size,
                epoch_generator(seed, epoch) if epoch_rng is None else epoch_rng(epoch),
                stepped,
                scaler,
                world,
            )
        )
        record["train_seconds"] = time.perf_counter() - start
        if after_epoch is not None:
            after_epoch(epoch + 1, record)
        history.append(record)
        if bar and postfix is not None:
            bar.set_postfix(**postfix(record))
        if run is not None and world.main:
            run.save_epoch(model, opt, history)
    if bar:
        bar.close()
    return history
