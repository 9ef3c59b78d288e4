"""Shared pieces of the model-based attacks (EM, REM, TAP, HYPO, SEP): the crafting model, signed PGD steps with
projection, training steps on perturbed data, seeded batches and augmentation, and compute accounting.

Everything works on whole batches of tensors that live on the device for the whole run (no DataLoader, no
per-sample Python): the crafting set is converted to float [0,1] once, in channels_last, and a perturbation is a
tensor of the same shape, updated a batch at a time. All randomness comes from seeded `torch.Generator`s, so a
seed gives the same perturbation bytes twice on CPU.

Compute is counted in *epoch-equivalents*: image passes with a backward (a training step, or one PGD step on
the input) over the crafting set, so one PGD step over every sample = 1.0. Forward-only passes (the EM
stopping-rule check) count as 1/3 of a forward+backward, since a backward costs about two forwards.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import warnings
from abc import abstractmethod
from dataclasses import dataclass
from typing import Annotated, Callable, Iterator, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core import distributed, seeds
from ..core.errors import UserError
from ..core.options import MAX_IMAGES, MAX_WIDTH, Count, Within
from ..core.runtime import fast_bf16, refuse_bf16_without_support, resolve_device
from ..core.seeds import seeded
from ..data.augment import crop_flip
from ..data.base import ImageDataset
from ..models import MODELS, create_model
from ..training.fit import fit
from ..training.recipes import Recipe
from ..training.trainer import ClassificationStep, make_optimizer, prepare
from .base import Attack, Perturbation

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ModelConfig:
    """The crafting model shared by the model-based attacks (paper: a CIFAR ResNet-18 at full width)."""

    model: str = "resnet18"
    width: Annotated[float, Within(0.0, MAX_WIDTH)] = 1.0  # the crafting model's weights grow with its square
    device: str = "auto"  # auto | cpu | cuda[:N]
    # fp32 | bf16 (the models' passes in bf16 autocast, 1.2-2x faster where the hardware is fast at it; the first
    # layer, the perturbation and its projection stay fp32) | auto (bf16 there, fp32 elsewhere: training's rule).
    # auto where bf16 crafts were measured to keep the attack's efficacy; an attack without that measurement, or
    # that lost efficacy, sets fp32 in its own config (docs/results/efficacy.md, "Crafting in bf16")
    precision: str = "auto"
    pgd_batch: Annotated[int, Count(MAX_IMAGES)] = (
        256  # images per PGD batch: the model is frozen in eval mode, so only speed (and float rounding) depends on it
    )


def validate_common(name: str, cfg: ModelConfig, ds: ImageDataset) -> None:
    """Refusals every model-based attack shares (one clear line each)."""
    MODELS.get(str(cfg.model))  # unknown model -> UserError listing the valid ones
    positive(name, width=cfg.width)
    at_least(name, 1, pgd_batch=cfg.pgd_batch)
    if len(ds) < 2:
        raise UserError(
            f"{name}: the crafting set needs at least 2 images (BatchNorm trains on batches), got {len(ds)}"
        )
    if ds.num_classes < 2:
        raise UserError(
            f"{name}: needs at least 2 classes to craft against a classifier, {ds.name} has {ds.num_classes}"
        )
    crafting_precision(cfg.precision, resolve_device(cfg.device))


# ---- precision ---------------------------------------------------------------------------------------------------
CRAFT_PRECISIONS = ("auto", "fp32", "bf16")


def crafting_precision(precision: str, device: torch.device) -> str:
    """The precision a crafting loop runs in: training's `auto` rule, except that it never picks fp16 (the loops
    would need loss scaling in every training and unrolled step)."""
    if precision not in CRAFT_PRECISIONS:
        raise UserError(
            f"crafting precision '{precision}' is not supported; valid: {', '.join(CRAFT_PRECISIONS)} "
            "(fp16 would need loss scaling in every crafting loop)"
        )
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    if precision == "bf16":
        refuse_bf16_without_support(device, "crafting precision", "fp32 or auto")
    return precision


def precision_context(cfg) -> contextlib.AbstractContextManager:
    """bf16 autocast around a whole craft where the config resolves to bf16: the models' convolutions and matmuls
    run in bf16, while every elementwise step on the perturbation (sign, step, clamp, projection) keeps its fp32
    inputs' precision. Without autocast's weight cache: it keeps one bf16 copy of each weight for the whole
    context, so a model trained inside it would go on computing with its first weights (and diverge)."""
    device = resolve_device(cfg.device)
    if crafting_precision(cfg.precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)


def _exact(forward, x: torch.Tensor) -> torch.Tensor:
    """forward(x) in fp32 on the unrounded input, its output in autocast's dtype as the layer's would be: an fp32
    output would turn the residual stream after it fp32 (a tensor sum promotes), which ran slower than fp32."""
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    with torch.autocast(device, enabled=False):
        out = forward(x.float())
    return out if dtype is None else out.to(dtype)


class ExactConv2d(nn.Conv2d):
    """A convolution that reads its input in fp32 inside bf16 autocast. As a crafting model's first layer it sees
    x + delta exactly: in bf16 a pixel near 1.0 has the spacing 1/256, about one grey level, so the model would see
    the perturbation rounded and a PGD step smaller than that would vanish (EM crafted that way was not learned,
    docs/results/efficacy.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _exact(super().forward, x)


class ExactLinear(nn.Linear):
    """ExactConv2d's counterpart for a model whose first layer is linear (an MLP, the linear classifier)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _exact(super().forward, x)


EXACT = {nn.Conv2d: ExactConv2d, nn.Linear: ExactLinear}


def first_layer(model: nn.Module) -> str | None:
    """The name of the model's first convolution or linear layer, the one that reads the input (registration order;
    tests check it against execution order for every registered model)."""
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            return name
    return None


def exact_input(model: nn.Module, cfg) -> nn.Module:
    """The model with its first layer in fp32 where the config crafts in bf16 (ExactConv2d); unchanged in fp32.
    The layer keeps its class's parameters and names, so state dicts and layer names stay as they were."""
    if crafting_precision(cfg.precision, resolve_device(cfg.device)) != "bf16":
        return model
    name = first_layer(model)
    if name is not None:
        layer = model.get_submodule(name)
        if type(layer) in EXACT:
            layer.__class__ = EXACT[type(layer)]
    return model


def recorded_params(cfg) -> dict:
    """An attack config as its poison and its bench key record it: a `precision` field as the precision that ran,
    left out where that is fp32 (the only one before crafting had a precision: such crafts keep their keys)."""
    params = dataclasses.asdict(cfg)
    if "precision" in params:
        ran = crafting_precision(params["precision"], resolve_device(params.get("device", "auto")))
        if ran == "fp32":
            del params["precision"]
        else:
            params["precision"] = ran
    return params


def positive(name: str, **values: float) -> None:
    for key, v in values.items():
        if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise UserError(f"{name}: {key} must be a positive number, got {v!r}")


def at_least(name: str, minimum: int, **values: int) -> None:
    for key, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise UserError(f"{name}: {key} must be an integer >= {minimum}, got {v!r}")


# ---- compute accounting -------------------------------------------------------------------------------------
class Compute:
    """Counts image passes; `epochs` is the crafting cost in passes over the crafting set."""

    def __init__(self, n: int):
        self.n = max(n, 1)
        self.backward = 0  # images through a forward+backward (training step or input-gradient step)
        self.forward = 0  # images through a forward only

    def fb(self, k: int) -> None:
        self.backward += k

    def fwd(self, k: int) -> None:
        self.forward += k

    @property
    def epochs(self) -> float:
        return (self.backward + self.forward / 3) / self.n


# ---- what the crafting model learns -----------------------------------------------------------------------------
class Objective(Protocol):
    """The crafting model and its loss, where an attack should not assume a classifier (default: None = a
    registry classifier and the cross-entropy of the labels, the papers' setting). uebench.experiments.crosstask passes
    a multi-task network and the weighted sum of its task losses. `targets` must support `t[idx]` and `len(t)`."""

    def build_model(self, cfg: ModelConfig, ds: ImageDataset, seed: int, device: torch.device) -> nn.Module: ...

    def targets(self, ds: ImageDataset, device: torch.device): ...

    def loss(self, out, targets) -> torch.Tensor: ...  # mean over the batch

    def correct(self, out, targets) -> int: ...  # for accuracy-based stopping rules (0 if there is no class)

    # how the noise step combines the tasks' input gradients: "sum" (the gradient of `loss`) or "pcgrad"
    combine: str

    def task_losses(self, out, targets) -> dict[str, torch.Tensor]: ...  # each task's weighted mean loss


# ---- data, model, generators --------------------------------------------------------------------------------
def in_index_order(ds: ImageDataset, craft_fn: Callable[[ImageDataset], Perturbation]) -> Perturbation:
    """Run `craft_fn` on the images sorted by their dataset index, and hand back delta in ds's own order.

    Every batch, shuffle and random draw then depends on which images there are, not on the order they came in:
    crafting a permuted dataset gives exactly the permuted perturbation, and row i of delta is image i's.
    """
    order = torch.argsort(ds.indices)
    if torch.equal(order, torch.arange(len(ds))):
        return craft_fn(ds)
    pert = craft_fn(ds.subset(order))
    delta = torch.empty_like(pert.delta)
    delta[order] = pert.delta
    return dataclasses.replace(pert, delta=delta)


def tensors(ds: ImageDataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The crafting set as float [0,1] channels_last images and int64 labels, on the device once."""
    return prepare(ds.images, device, channels_last=True), ds.labels.to(device)


# Device memory a crafting set may take as float images plus a float perturbation before it stays on the host.
DEVICE_SHARE = 0.25


def keep_on_host(ds: ImageDataset, device: torch.device) -> bool:
    """Whether the crafting set (float images and a float perturbation, 8 bytes per element) is too large for the
    device: ImageNet-100's 20% subset at 224 px is about 31 GB so. On the CPU the host is the device."""
    if device.type != "cuda":
        return False
    need = 8 * ds.images.numel()
    return need > DEVICE_SHARE * torch.cuda.get_device_properties(device).total_memory


class HostImages:
    """The crafting set's uint8 images kept on the host; `x[idx]` is that batch as float [0,1] channels_last on
    the device, the same values `tensors` would hold there."""

    def __init__(self, images_u8: torch.Tensor, device: torch.device):
        self.u8, self.device = images_u8, device
        self.shape = tuple(images_u8.shape)

    def __len__(self) -> int:
        return len(self.u8)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        return prepare(self.u8[idx.cpu()], self.device, channels_last=True)


class HostRows:
    """A per-image float tensor (a perturbation) kept on the host: rows read to and written from the device."""

    def __init__(self, shape: tuple[int, ...], device: torch.device):
        self.data = torch.zeros(shape).contiguous(memory_format=torch.channels_last)
        self.device = device
        self.shape = tuple(shape)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.data[idx.cpu()].to(self.device, non_blocking=True)

    def __setitem__(self, idx: torch.Tensor, rows: torch.Tensor) -> None:
        self.data[idx.cpu()] = rows.to(self.data.device)


def resident(ds: ImageDataset, device: torch.device, host: bool) -> tuple[torch.Tensor | HostImages, torch.Tensor]:
    """`tensors(ds, device)`, or with `host` the images left on the host (HostImages) and the labels on the device."""
    return (HostImages(ds.images, device), ds.labels.to(device)) if host else tensors(ds, device)


def rows_like(x: torch.Tensor | HostImages, device: torch.device) -> torch.Tensor | HostRows:
    """A zero perturbation for every image of x, where x lives (device tensor, or host rows)."""
    if isinstance(x, HostImages):
        return HostRows(x.shape, device)
    return channels_last(torch.zeros(x.shape, device=device))


def build_model(cfg: ModelConfig, ds: ImageDataset, seed: int, device: torch.device) -> nn.Module:
    """A freshly initialised crafting model; its init depends on `seed` only (the global RNG is left alone)."""
    c, h, _ = ds.shape
    with seeded(seed):
        model = create_model(cfg.model, num_classes=ds.num_classes, in_channels=c, image_size=h, width=cfg.width)
    return exact_input(model.to(device).to(memory_format=torch.channels_last), cfg)


def generator(seed: int, stream: int) -> torch.Generator:
    """An independent CPU random stream per (seed, purpose), so adding one use of randomness shifts no other."""
    return seeds.generator(seeds.crafting_stream(seed, stream))


def sgd(
    model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = False
) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def chunks(n: int, size: int, device: torch.device) -> list[torch.Tensor]:
    """Index batches 0..n-1 in order (every sample exactly once, the last batch may be short)."""
    return list(torch.arange(n, device=device).split(size))


def shuffled_batches(
    n: int, size: int, gen: torch.Generator, device: torch.device, drop_last: bool = False
) -> Iterator[torch.Tensor]:
    """An endless stream of index batches: a fresh seeded permutation per pass over the data."""
    while True:
        perm = torch.randperm(n, generator=gen).to(device)
        parts = perm.split(size)
        if drop_last and len(parts) > 1 and len(parts[-1]) < size:
            parts = parts[:-1]
        yield from parts


def eval_copy(model: nn.Module) -> nn.Module:
    """A frozen eval-mode copy of the model for the PGD passes: no parameter gradients (a step then costs an
    input-gradient pass, not a full backward), and BatchNorm folded into the preceding convolutions where
    torch.fx can trace the model (the same function, ~15% faster on CPU); a plain copy otherwise."""
    was_training = model.training
    # fx would trace through an fp32 first layer and lose its autocast switch: fuse plain layers, then restore it
    exact = {n: type(m) for n, m in model.named_modules() if type(m) in EXACT.values()}
    model.eval()
    try:
        with warnings.catch_warnings():  # the module imports a deprecated torch.jit helper on first use
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch.fx.experimental.optimization import fuse

        for n, cls in exact.items():
            model.get_submodule(n).__class__ = cls.__mro__[1]
        fast = fuse(model)
        for n, cls in exact.items():
            fast.get_submodule(n).__class__ = cls
    except Exception:  # a model fx cannot trace: the same computation, unfused
        for n, cls in exact.items():
            model.get_submodule(n).__class__ = cls
        fast = copy.deepcopy(model)
    finally:
        for n, cls in exact.items():
            model.get_submodule(n).__class__ = cls
        model.train(was_training)
    fast.eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast.to(memory_format=torch.channels_last)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


# ---- augmentation ----------------------------------------------------------------------------------------------
def crop_flip_transform(gen: torch.Generator, pad: int = 4) -> Transform:
    """Random crop (zero padding `pad`) + horizontal flip per image; differentiable (it only gathers pixels)."""
    return lambda x: channels_last(crop_flip(x, gen, pad))


def shift_flip_transform(gen: torch.Generator, max_shift: float = 4.0, fill: torch.Tensor | None = None) -> Transform:
    """Differentiable translation by a continuous offset in [-max_shift, max_shift] pixels (bilinear) plus a
    horizontal flip with probability 1/2, per image: the differentiable augmentation TAP's code uses. Pixels
    shifted in from outside take the per-channel colour `fill` (C values, [0,1] pixel units), or 0 (black) if None:
    sampling x - fill with zero fill and adding fill back is what the public code's zero fill of normalised
    inputs does when fill is the normalisation mean."""

    def apply(x: torch.Tensor) -> torch.Tensor:
        if fill is not None:
            f = fill.to(x.device, x.dtype).view(1, -1, 1, 1)
            return channels_last(shift(x - f) + f)
        return shift(x)

    def shift(x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        r = torch.rand(n, 3, generator=gen).to(x.device, x.dtype)
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        flip = torch.where(r[:, 2] < 0.5, -1.0, 1.0).to(x.dtype)
        theta[:, 0, 0] = flip
        theta[:, 1, 1] = 1.0
        # align_corners=True: a grid unit is (size-1)/2 pixels
        theta[:, 0, 2] = (r[:, 0] * 2 - 1) * max_shift * 2 / (w - 1)
        theta[:, 1, 2] = (r[:, 1] * 2 - 1) * max_shift * 2 / (h - 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=True)
        return channels_last(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True))

    return apply


# ---- PGD on the input ----------------------------------------------------------------------------------------
def project(delta: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Onto the Linf ball of radius eps and onto valid images (x + delta in [0, 1])."""
    return (x + delta.clamp(-eps, eps)).clamp_(0.0, 1.0) - x


def signed_step(
    delta: torch.Tensor, grad: torch.Tensor, step: float, eps: float, x: torch.Tensor, descend: bool
) -> torch.Tensor:
    """One signed-gradient step on delta (down the loss when `descend`), then the projection."""
    with torch.no_grad():
        direction = -grad.sign() if descend else grad.sign()
        return project(delta + step * direction, x, eps)


def uniform_start(x: torch.Tensor, eps: float, gen: torch.Generator) -> torch.Tensor:
    """A random start uniform in the Linf ball (projected onto valid images)."""
    u = torch.rand(x.shape, generator=gen).to(x.device)
    return project(channels_last((u * 2 - 1) * eps), x, eps)


def loss_sum(model: nn.Module, inputs: torch.Tensor, labels, objective: "Objective | None" = None) -> torch.Tensor:
    # summed, not averaged: the same signs, without gradients shrinking by 1/batch
    if objective is not None:
        return objective.loss(model(inputs), labels) * len(inputs)
    return F.cross_entropy(model(inputs), labels, reduction="sum")


def pcgrad(grads: list[torch.Tensor]) -> torch.Tensor:
    """PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning") per sample: each task's gradient, where it
    conflicts with another's (negative dot product over the sample's pixels), loses its component along that one,
    in a fixed task order (the paper draws the order at random); the projected gradients are summed. Row i of every
    tensor is sample i's gradient."""
    flat = [g.flatten(1) for g in grads]
    total = torch.zeros_like(flat[0])
    for i, gi in enumerate(flat):
        g = gi.clone()
        for j, gj in enumerate(flat):
            if i != j:
                dot = (g * gj).sum(1, keepdim=True)
                g = torch.where(dot < 0, g - dot / gj.pow(2).sum(1, keepdim=True).clamp_min(1e-30) * gj, g)
        total += g
    return total.view_as(grads[0])


def input_gradient(
    model: nn.Module, inputs: torch.Tensor, d: torch.Tensor, labels, objective: "Objective | None" = None
) -> torch.Tensor:
    """The gradient in `d` (a leaf that `inputs` was computed from) of the summed loss, or, for an objective that
    combines its tasks by PCGrad, the PCGrad combination of the tasks' summed-loss gradients."""
    if objective is None or objective.combine == "sum":
        (grad,) = torch.autograd.grad(loss_sum(model, inputs, labels, objective), d)
        return grad
    losses = list(objective.task_losses(model(inputs), labels).values())
    grads = [torch.autograd.grad(v * len(inputs), d, retain_graph=k < len(losses) - 1)[0] for k, v in enumerate(losses)]
    return pcgrad(grads)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    delta: torch.Tensor,
    *,
    eps: float,
    step: float,
    steps: int,
    descend: bool,
    compute: Compute,
    transform: Transform | None = None,
    objective: Objective | None = None,
) -> torch.Tensor:
    """`steps` signed steps on a batch's delta against the frozen model: descend the loss of `labels` (EM's
    error-minimising noise, TAP's targeted attack with target labels) or ascend it (an adversarial example)."""
    for _ in range(steps):
        d = delta.detach().requires_grad_(True)
        inputs = x + d
        if transform is not None:
            inputs = transform(inputs)
        grad = input_gradient(model, inputs, d, labels, objective)
        delta = signed_step(d.detach(), grad, step, eps, x, descend)
        compute.fb(len(x))
    return delta.detach()


# ---- training and evaluation ------------------------------------------------------------------------------------
def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    inputs: torch.Tensor,
    labels,
    compute: Compute,
    grad_clip: float | None = None,
    objective: Objective | None = None,
) -> tuple[float, int]:
    """One SGD step on a batch in train mode; returns (loss, number correct)."""
    model.train()
    out = model(inputs)
    loss = F.cross_entropy(out, labels) if objective is None else objective.loss(out, labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    compute.fb(len(labels))
    if not torch.isfinite(loss):
        raise UserError("the crafting model diverged (loss is NaN or infinite); lower its lr")
    if objective is not None:
        return float(loss.detach()), int(objective.correct(out, labels))
    return float(loss.detach()), int((out.detach().argmax(1) == labels).sum())


@torch.no_grad()
def loss_and_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    labels,
    batch: int,
    compute: Compute,
    delta: torch.Tensor | None = None,
    objective: Objective | None = None,
    world: distributed.World = distributed.SINGLE,
) -> tuple[float, float]:
    """Mean loss and accuracy (%) of the model in eval mode on x (+ delta), no augmentation; in a world of several
    processes each evaluates its share of the chunks and the sums are taken over all."""
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    for idx in chunks(len(x), batch, x.device)[world.rank :: world.size]:
        inputs = x[idx] if delta is None else (x[idx] + delta[idx]).clamp_(0, 1)
        out = model(inputs)
        if objective is not None:
            total += float(objective.loss(out, labels[idx])) * len(idx)
            correct += int(objective.correct(out, labels[idx]))
        else:
            total += float(F.cross_entropy(out, labels[idx], reduction="sum"))
            correct += int((out.argmax(1) == labels[idx]).sum())
        compute.fwd(len(idx))
    model.train(was_training)
    if world.distributed:
        total, correct = float(world.total(total)), int(world.total(correct))
    n = max(len(x), 1)
    return total / n, 100.0 * correct / n


def clean_recipe(name: str, cfg, milestones: tuple[int, ...], **kw) -> Recipe:
    """The recipe of a crafting model trained on clean data, from a config's clean_epochs, clean_batch_size,
    clean_lr and clean_weight_decay (TAP, HYPO, SEP), multistep at `milestones`; `kw`: its other settings."""
    return Recipe(
        name,
        max(cfg.clean_epochs, 1),
        cfg.clean_batch_size,
        cfg.clean_lr,
        weight_decay=cfg.clean_weight_decay,
        schedule="multistep",
        milestones=milestones,
        **kw,
    )


def train_clean_model(
    cfg: ModelConfig,
    ds: ImageDataset,
    recipe: Recipe,
    epochs: int,
    seed: int,
    device: torch.device,
    compute: Compute,
    progress: bool,
    desc: str,
    after_epoch: Callable[[int, nn.Module], None] | None = None,
    world: distributed.World = distributed.SINGLE,
) -> nn.Module:
    """A crafting model trained on the clean data for `epochs` of `recipe` (the trainer's epoch loop; its
    augmentation), each epoch's batch order from its own seeded stream. TAP's and HYPO's starting point;
    `after_epoch(epoch, model)` sees the model after every epoch (SEP keeps its checkpoints). In a world of several
    processes each trains on its share of every batch through DDP (the returned model is the same in all)."""
    model = build_model(cfg, ds, seed, device)
    opt = make_optimizer(model, recipe)
    step = ClassificationStep(ds, recipe.augment, device, contextlib.nullcontext, True, world=world)

    def measured(epoch: int, _record: dict) -> None:
        compute.fb(len(ds))
        if after_epoch is not None:
            after_epoch(epoch - 1, model)

    fit(
        model,
        opt,
        step,
        len(ds),
        epochs=epochs,
        batch_size=recipe.batch_size,
        lr_at=recipe.lr_at,
        seed=seed,
        after_epoch=measured,
        desc=desc if progress else None,
        postfix=lambda r: {"acc": f"{r['train_acc']:.1f}%"},
        world=world,
        train_model=distributed.wrap(model, world, device),
        epoch_rng=lambda epoch: generator(seed, 100 + epoch),
    )
    return model


def to_cpu(delta: torch.Tensor | HostRows) -> torch.Tensor:
    """The perturbation as craft() wants it: float32 NCHW on the CPU."""
    if isinstance(delta, HostRows):
        delta = delta.data
    return delta.detach().float().cpu().contiguous()


def config_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


# ---- the skeleton EM, REM and TAP share ------------------------------------------------------------------------
class ModelAttack(Attack):
    """An Linf ball of radius `config.eps` crafted against a model: the shared refusals, and crafting in dataset
    index order (so a permuted dataset gives the permuted perturbation). Subclasses add `check()` and `_perturb()`."""

    norm = "linf"

    def budget(self) -> float:
        return self.config.eps

    def validate(self, ds: ImageDataset) -> None:
        positive(self.name, eps=self.config.eps)  # a number before the base class compares it
        super().validate(ds)
        validate_common(self.name, self.config, ds)
        self.check(self.config)

    def check(self, c) -> None:
        """The method's own refusals (raise UserError)."""

    def perturb(self, ds: ImageDataset, *, seed: int, progress: bool) -> Perturbation:
        with precision_context(self.config):
            return in_index_order(ds, lambda d: self._perturb(d, seed, progress))

    @abstractmethod
    def _perturb(self, ds: ImageDataset, seed: int, progress: bool) -> Perturbation:
        """The perturbation of ds, whose images come sorted by dataset index."""
