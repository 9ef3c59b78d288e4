"""The defense protocol: a typed config with the published defaults, and three hooks the trainer calls.

    defense = create_defense("jpeg", quality=10)
    train_set = defense.prepare(train_set)          # once, uint8 -> uint8 (ISS's JPEG / grayscale / BDR)
    test_set = defense.prepare_test(test_set)       # once; identity unless the defense also filters test images
    x, y = defense.batch(x, y, model=model, generator=g, autocast=autocast)   # every batch, after crop/flip

`x` is float [0, 1] (N, C, H, W); `y` int64 (N,) on the way in; `batch` may return a label distribution
(N, num_classes) float (mixup, cutmix), which the trainer trains on with soft cross-entropy. All randomness
comes from `generator` (a CPU torch.Generator), so a run is a pure function of its seed.
Adding a defense is one new file with one registered class.
"""

from __future__ import annotations

import contextlib
import dataclasses
from abc import ABC
from typing import Any, Callable, ClassVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import UserError
from ..core.options import typed_params
from ..core.registry import Registry
from ..data.base import ImageDataset

KINDS = ("preprocess", "augment", "training")


class Defense(ABC):
    """Subclass, set the class attributes, override the hooks you need; register with @register_defense."""

    name: ClassVar[str]
    kind: ClassVar[
        str
    ]  # preprocess (filters the data once) | augment (per batch) | training (changes the optimisation)
    description: ClassVar[str]
    source: ClassVar[str]  # where the defaults come from (paper / public code)
    Config: ClassVar[type]  # a dataclass whose defaults are the published settings
    # the SAL probe data carries this defense's batch transform (labels unchanged): the public code applies it in its
    # training loader, which it also probes with (cutout); mixup, cutmix, UEraser and AT live in its training loop
    in_probe: ClassVar[bool] = False

    def __init__(self, config: Any):
        self.config = config
        self.num_classes: int | None = None  # learnt from the training set in prepare(); mixup/cutmix need it

    # ---- hooks ---------------------------------------------------------------------------------------------
    def prepare(self, ds: ImageDataset) -> ImageDataset:
        """The training set the model will see (uint8 -> uint8). Subclasses call super().prepare(ds) first."""
        self.num_classes = ds.num_classes
        return ds

    def prepare_test(self, ds: ImageDataset) -> ImageDataset:
        """The test set the model is evaluated on. Identity unless the defense filters what it classifies."""
        return ds

    def batch(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        model: nn.Module | None = None,
        generator: torch.Generator | None = None,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One augmented training batch -> the batch the model trains on (and its labels)."""
        return x, y

    def begin_epoch(self, epoch: int) -> None:
        """Called by the trainer before each epoch (0-based); a defense that changes over training keeps it."""
        return None

    # ---- records -------------------------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "params": self.params(), "source": self.source}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


DEFENSES: Registry[type[Defense]] = Registry("defense")


def register_defense(cls: type[Defense]) -> type[Defense]:
    if cls.kind not in KINDS:
        raise ValueError(f"defense {cls.name}: kind must be one of {KINDS}, got {cls.kind!r}")
    DEFENSES.register(cls.name)(cls)
    return cls


def make_config(cls: type[Defense], **params: Any) -> Any:
    """The defense's config: the published defaults, then the user's params (checked)."""
    params = typed_params(cls.Config, params, f"defense '{cls.name}'")
    try:
        return cls.Config(**params)
    except (TypeError, ValueError) as e:
        raise UserError(f"defense '{cls.name}': bad parameters: {e}") from None


def create_defense(name: str, **params: Any) -> Defense:
    """A configured defense by name (`uebench defenses` lists them), e.g. create_defense("cutmix", prob=0.5)."""
    cls = DEFENSES.get(name)
    return cls(make_config(cls, **params))


# ---- helpers shared by the defenses -------------------------------------------------------------------------
def check(cond: bool, message: str) -> None:
    """Config validation: raises ValueError, which make_config turns into one UserError line."""
    if not cond:
        raise ValueError(message)


def check_type(value: Any, types: type | tuple[type, ...], name: str) -> None:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ValueError(f"{name} must be {getattr(types, '__name__', types)}, got {value!r}")
    if not isinstance(value, types):
        raise ValueError(f"{name} must be {getattr(types, '__name__', types)}, got {value!r}")


def map_images(
    ds: ImageDataset, fn: Callable[[torch.Tensor], torch.Tensor], chunk: int = 4096, **meta: Any
) -> ImageDataset:
    """Apply a uint8 (n, C, H, W) -> uint8 (n, C, H, W) filter to every image, in chunks (bounded memory)."""
    out = torch.empty_like(ds.images)
    for i in range(0, len(ds), chunk):
        part = fn(ds.images[i : i + chunk])
        if part.dtype != torch.uint8 or part.shape != ds.images[i : i + chunk].shape:
            raise RuntimeError(f"filter returned {part.dtype} {tuple(part.shape)}")
        out[i : i + chunk] = part
    return ds.with_images(out, **meta)


def _where(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def rand(
    shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None, device: torch.device | str
) -> torch.Tensor:
    """U[0, 1) from `generator`, made where the generator lives and moved to `device` if that is elsewhere."""
    device = torch.device(device)
    where = generator.device if generator is not None else device
    if where.type == device.type:
        return torch.rand(tuple(shape), generator=generator, device=device)
    return torch.rand(tuple(shape), generator=generator, device=where).to(device)


def device_generator(generator: torch.Generator | None, device: torch.device | str) -> torch.Generator | None:
    """A generator on `device` seeded from the CPU `generator` (so per-batch noise is drawn where it is used,
    deterministic for a seed on each device type); the CPU generator itself when the device is the CPU."""
    device = torch.device(device)
    if generator is None or generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=_where(generator)))
    return torch.Generator(device=device).manual_seed(seed)


def uniform(n: int, low: float, high: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return low + (high - low) * rand((n,), generator, device)


def beta(n: int, alpha: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """n draws from Beta(alpha, alpha), seeded by `generator` (torch's Beta sampler takes no generator)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=_where(generator)))
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=n)).float().to(device)


def randperm(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.randperm(n, generator=generator, device=_where(generator)).to(device)


def one_hot(y: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """Hard labels (N,) -> (N, C) float; a label distribution passes through."""
    if y.ndim == 2:
        return y.float()
    if num_classes is None:
        raise RuntimeError("this defense needs the number of classes: call defense.prepare(train_set) first")
    return F.one_hot(y, num_classes).float()


def loss_per_sample(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per sample for hard labels (N,) or label distributions (N, C)."""
    logits = logits.float()
    if y.ndim == 1:
        return F.cross_entropy(logits, y, reduction="none")
    return -(y * F.log_softmax(logits, dim=1)).sum(dim=1)


class PreprocessDefense(Defense):
    """A filter run once over the uint8 training images before any augmentation (ISS: JPEG, grayscale, BDR),
    as the published code runs it on each PIL image ahead of crop/flip. The config's `test` flag also filters
    the test images (ISS's --ISS_both_train_test, off by default there and here)."""

    kind: ClassVar[str] = "preprocess"

    def filter(self, images: torch.Tensor) -> torch.Tensor:  # uint8 (n, C, H, W) -> uint8 (n, C, H, W)
        raise NotImplementedError

    def prepare(self, ds: ImageDataset) -> ImageDataset:
        ds = super().prepare(ds)
        return map_images(ds, self.filter, defense=self.name)

    def prepare_test(self, ds: ImageDataset) -> ImageDataset:
        if getattr(self.config, "test", False):
            return map_images(ds, self.filter, defense=self.name)
        return ds
