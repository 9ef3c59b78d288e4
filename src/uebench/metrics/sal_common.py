"""What both SAL estimators share (sal.py's faithful procedure and fast_sal.py's approximation): the result records,
the probe data and how a pass over it is drawn, the ball's projection, each layer's random stream, and the model
handling (which weights are probed, eval mode with everything frozen, a forward pass with one weight replaced).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from ..core.errors import UserError
from ..core.seeds import layer_stream
from ..data.augment import AUGMENTATIONS, to_float

ORIGINS = ("running", "eval")
MODES = ("faithful", "fast")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# SAL's defaults, one source for SALConfig (a probe's settings) and model_sal (a call): the fast estimator (the
# paper's procedure is mode "faithful"), the paper's ball radius and step
DEFAULT_MODE = "fast"
DEFAULT_EPS = 0.05
DEFAULT_LR = 0.1


def default_origin(running_loss: float | None) -> str:
    """L0 where no origin is asked for: "running" where a running loss is given (a training epoch's, as the public
    code), else "eval" (the loss of W0 on the probe data: a standalone call has no running loss). A SAL probe always
    has its epoch's running loss, hence SALConfig's "running"."""
    return "eval" if running_loss is None else "running"


def cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.float(), y)


# ---- results and the small pure pieces ----------------------------------------------------------------------
@dataclass(frozen=True)
class SALResult:
    """One layer's SAL and both branches: L_max from the ascending copy, L_min from the descending one."""

    layer: str
    sal: float
    loss_max: float
    loss_min: float
    loss0: float
    rounds: int  # rounds actually run (fast mode may stop early)
    # the branches' extremes over the search's own evaluations, before best-of tracking meets L0 (-inf/+inf when
    # none ran): the search does not depend on L0, so these give the SAL of any origin (sal_at) at no extra cost
    eval_max: float = -math.inf
    eval_min: float = math.inf

    @classmethod
    def from_search(cls, layer: str, loss0: float, eval_max: float, eval_min: float, rounds: int) -> "SALResult":
        """Best-of tracking from L0 over the search's extremes (NaN losses never reach eval_max/eval_min)."""
        loss_max, loss_min = max(loss0, eval_max), min(loss0, eval_min)
        return cls(layer, sal_value(loss0, loss_max, loss_min), loss_max, loss_min, loss0, rounds, eval_max, eval_min)

    def sal_at(self, loss0: float) -> float:
        return sal_at(loss0, self.eval_max, self.eval_min)

    @property
    def rise(self) -> float:
        return self.loss_max - self.loss0

    @property
    def drop(self) -> float:
        return self.loss0 - self.loss_min


@dataclass
class ModelSAL:
    """SAL of several layers of one model at one moment, in the order probed."""

    layers: dict[str, SALResult]
    loss0: float
    mode: str
    origin: str
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    origins: dict[str, float] = field(default_factory=dict)  # L0 of every origin known here: "eval", "running"

    def values(self) -> list[float]:
        return [r.sal for r in self.layers.values()]

    def to_record(self) -> dict[str, Any]:
        """The keys a training epoch's record stores (see SALProbe)."""
        return {
            "sal": {k: r.sal for k, r in self.layers.items()},
            "sal_max": {k: r.loss_max for k, r in self.layers.items()},
            "sal_min": {k: r.loss_min for k, r in self.layers.items()},
            "sal_l0": self.loss0,
            "sal_mode": self.mode,
            "sal_origin": self.origin,
            "sal_settings": self.settings,
            # both origins from the one search (the same branches, only L0 differs), and the gap between them:
            # the same for every layer of an epoch, so #LP compares it with beta wherever it dominates
            **{f"sal_{o}": {k: r.sal_at(l0) for k, r in self.layers.items()} for o, l0 in self.origins.items()},
            **{f"sal_l0_{o}": l0 for o, l0 in self.origins.items()},
            **({"sal_offset": self.origins["eval"] - self.origins["running"]} if len(self.origins) == 2 else {}),
        }


def sal_value(loss0: float, loss_max: float, loss_min: float) -> float:
    """SAL = max(L_max - L0, L0 - L_min) (the paper's Eq.; the public code's signed pick equals it here)."""
    return max(loss_max - loss0, loss0 - loss_min)


def sal_at(loss0: float, eval_max: float, eval_min: float) -> float:
    """SAL for origin L0 from the search's raw extremes: best-of tracking from L0 gives L_max = max(L0, eval_max)
    and L_min = min(L0, eval_min), so SAL = max(0, eval_max - L0, L0 - eval_min). The sentinels -inf (no ascending
    evaluation) and +inf (no descending one) count as not found, as NaN losses do in the search itself."""
    rise = eval_max - loss0 if eval_max != -math.inf else 0.0
    drop = loss0 - eval_min if eval_min != math.inf else 0.0
    return max(0.0, rise, drop)


def origin_losses(eval_loss0: float, running_loss: float | None) -> dict[str, float]:
    """L0 of every origin known: "eval" (W0's loss on the probe data, always measured) and "running" (the epoch's
    running training loss, when the caller has one)."""
    origins = {"eval": float(eval_loss0)}
    if running_loss is not None and math.isfinite(running_loss):
        origins["running"] = float(running_loss)
    return origins


def project_to_ball(w: torch.Tensor, w0: torch.Tensor, eps: float) -> torch.Tensor:
    """Pull w back onto the ball ||w - w0|| <= eps ||w0|| along w - w0 (the public code's rescaling).

    A non-finite distance compares false and leaves w as it is, as the public code does."""
    diff = w - w0
    ratio = torch.linalg.vector_norm(diff) / torch.linalg.vector_norm(w0)
    if bool(ratio > eps):
        return w0 + diff * (eps / ratio)
    return w


def layer_seed(seed: int, layer: str) -> int:
    """A layer's own random stream: its result does not depend on which other layers are probed."""
    return layer_stream(seed, layer)


# ---- probe data -----------------------------------------------------------------------------------------
@dataclass
class ProbeData:
    """The data SAL passes over: inputs (uint8 images or float tensors), targets, and how a pass is drawn.

    `augment`: the training recipe's augmentation (a name in uebench.data.augment.AUGMENTATIONS: crop_flip, crop,
    flip_jitter, none), drawn afresh on every pass, as the public code's training loader does; True and False are
    the old spellings of "crop_flip" and "none".
    `transform`: (x, y, generator) -> x after the crop/flip, drawn afresh on every pass: a per-batch defense that
    the public code's loader applies (cutout), so its probe data carries it too.
    `source_size`: the size of the training set this was drawn from (a fixed subset remembers the full size:
    the fast mode scales its step by the number of SGD steps one faithful pass over the full set makes).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    batch_size: int = 256
    augment: str = "none"
    shuffle: bool = True
    drop_last: bool = True
    source_size: int | None = None
    transform: Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.targets):
            raise UserError(f"probe data has {len(self.inputs)} inputs but {len(self.targets)} targets")
        if len(self.inputs) == 0:
            raise UserError("probe data is empty")
        if self.batch_size < 1:
            raise UserError(f"SAL batch size must be >= 1, got {self.batch_size}")
        if isinstance(self.augment, bool):
            self.augment = "crop_flip" if self.augment else "none"
        if self.augment not in AUGMENTATIONS:
            raise UserError(f"unknown probe augmentation '{self.augment}'; valid: {', '.join(AUGMENTATIONS)}")
        if self.source_size is None:
            self.source_size = len(self.inputs)

    def __len__(self) -> int:
        return len(self.inputs)

    @classmethod
    def from_dataset(
        cls,
        ds,
        device: torch.device | str = "cpu",
        *,
        augment: str | bool = True,
        batch_size: int = 256,
        transform=None,
    ) -> "ProbeData":
        """The faithful probe data: the whole training set, augmented afresh on every pass as the run trained."""
        return cls(
            ds.images.to(device), ds.labels.to(device), batch_size=batch_size, augment=augment, transform=transform
        )

    @classmethod
    def coerce(cls, data, device: torch.device | str = "cpu", *, batch_size: int = 256) -> "ProbeData":
        if isinstance(data, ProbeData):
            return data
        if isinstance(data, (tuple, list)) and len(data) == 2:
            x, y = data
            return cls(x.to(device), y.to(device), batch_size=batch_size, augment="none")
        if hasattr(data, "images") and hasattr(data, "labels"):
            return cls.from_dataset(data, device, batch_size=batch_size)
        raise UserError(
            f"SAL data must be an ImageDataset, a ProbeData or an (inputs, targets) pair, got {type(data).__name__}"
        )

    def subset(self, n: int, seed: int, *, augment_once: bool, augment: str | None = None) -> "ProbeData":
        """A fixed subset of n samples (seeded, sorted indices), optionally augmented once with a fixed draw of this
        data's own augmentation (or `augment`, another name) and per-batch transform: none where the data has none,
        so the subset is what the run trained on.

        Fixed inputs make every pass the same function of W, so the frozen prefix can be cached."""
        g = torch.Generator().manual_seed(seed)
        n = min(n, len(self))
        idx = torch.randperm(len(self), generator=g)[:n].sort().values.to(self.inputs.device)
        x, y = self.prepare(self.inputs[idx]), self.targets[idx]
        if augment_once and x.ndim == 4:
            x = self._augmented(x, y, g, self.augment if augment is None else augment)
        return ProbeData(
            x, y, self.batch_size, augment="none", shuffle=False, drop_last=False, source_size=self.source_size
        )

    def _augmented(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, augment: str | None = None):
        fn = AUGMENTATIONS[self.augment if augment is None else augment]
        if fn is not None:
            x = _contiguous_like(fn(x, generator))
        if self.transform is not None:
            x = _contiguous_like(self.transform(x, y, generator))
        return x

    @staticmethod
    def prepare(x: torch.Tensor) -> torch.Tensor:
        x = to_float(x) if x.dtype == torch.uint8 else x
        return _contiguous_like(x)

    def passes(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass: shuffled batches (drop_last where a full batch exists), augmented afresh if asked."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        order = order.to(self.inputs.device)
        stop = n - n % self.batch_size if self.drop_last and n >= self.batch_size else n
        for i in range(0, stop, self.batch_size):
            idx = order[i : i + self.batch_size]
            x, y = self.prepare(self.inputs[idx]), self.targets[idx]
            if x.ndim == 4:
                x = self._augmented(x, y, generator)
            elif self.transform is not None:
                x = _contiguous_like(self.transform(x, y, generator))
            yield x, y

    def steps_per_pass(self) -> int:
        """SGD steps one pass over the full source set makes (drop_last)."""
        return max(1, self.source_size // self.batch_size)


def _contiguous_like(x: torch.Tensor) -> torch.Tensor:
    # the trainer keeps images channels_last; matching it keeps the conv kernels the model was timed with
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


# ---- model handling -------------------------------------------------------------------------------------
def probed_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Layer name -> weight of every Conv2d/Linear layer, in definition order (what SAL probes)."""
    return {name: m.weight for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def resolve_layers(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    valid = list(probed_weights(model))
    if layers is None:
        return valid
    unknown = [name for name in layers if name not in valid]
    if unknown:
        shown = ", ".join(valid[:30]) + (", ..." if len(valid) > 30 else "")
        raise UserError(f"unknown layer '{unknown[0]}' for SAL; valid: {shown}")
    if not layers:
        raise UserError("no layers to probe")
    return list(layers)


@contextlib.contextmanager
def probing(model: nn.Module):
    """Eval mode and every parameter frozen while probing; both restored after, whatever happens."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def weight_key(layer: str) -> str:
    """The parameter name of a layer's weight ("" = the model itself is the layer)."""
    return f"{layer}.weight" if layer else "weight"


def forward_with(model: nn.Module, layer: str, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The model's output with `layer`'s weight replaced by w; the model's own parameter is never written."""
    return functional_call(model, {weight_key(layer): w}, (x,))


@torch.no_grad()
def eval_loss(model: nn.Module, data: ProbeData, generator: torch.Generator, loss_fn: LossFn = cross_entropy) -> float:
    """Mean loss of the model as it is over one pass of the probe data (eval mode is the caller's)."""
    total, n = 0.0, 0
    for x, y in data.passes(generator):
        total += float(loss_fn(model(x), y)) * len(y)
        n += len(y)
    return total / max(n, 1)
