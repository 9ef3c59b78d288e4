"""The settings every experiment shares, declared once: the data (`DataSettings`: bench, crosstask, landscape and
train) and the model and its training (`RunSettings`: bench, crosstask and train). Each experiment's config derives
from one of them and re-declares only a default that is its own (bench and crosstask train width 0.25 with the quick
recipe; train takes these: width 0.125 with the cpu recipe, minutes on a laptop CPU, and the paper's victim is
`width=1.0, recipe="paper"`); `check_settings` is the one validation of these fields.

    config = BenchConfig(dataset="cifar10", subset=1000, width=0.25)   # the same names in every experiment

A record on disk keeps the names it was written with (a train run's config.json says `train_subset`, a crosstask
folder `encoder`): `to_record` and `from_record` map the names in the one place each experiment lists them, so
folders written before keep their identity and resume. The old keyword names (`train_subset=`, `n_train=`,
`encoder=`) are accepted until REMOVED_IN, with a FutureWarning (`renamed`).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..core.errors import UserError
from ..core.options import MAX_WIDTH, check_seed

REMOVED_IN = "0.3.0"  # the version that drops the old keyword names below


@dataclass(frozen=True)
class DataSettings:
    """What a run trains on: the dataset and a seeded random subset of its training split."""

    dataset: str = "scenes"
    data_dir: str | None = None  # where the data is read from; not part of any key (moving the data changes nothing)
    subset: int | None = None  # a seeded random subset of the training split (CPU-sized runs); None: all of it
    # the subset's own seed, so that the training seeds vary the training noise and not the data; None: the
    # experiment's own default (the training seed)
    subset_seed: int | None = None


@dataclass(frozen=True)
class RunSettings(DataSettings):
    """The data, the model and how it is trained: what bench, crosstask and train share."""

    dataset_options: dict[str, Any] = field(default_factory=dict)
    model: str = "resnet18"
    # a first run on a laptop CPU: an eighth-width ResNet-18 with the cpu recipe (10 epochs, no augmentation), where
    # the poisons are learned (docs/results/efficacy.md); the paper's: width 1.0 with recipe "paper" (before 0.2.0
    # these were the defaults; a record always holds both, so one written then reads back as it was)
    width: float = 0.125
    recipe: str = "cpu"  # uebench.training.recipes; epochs, batch_size and lr override it
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    device: str = "auto"
    # auto: bf16 where the hardware has fast bf16 (CUDA, AMX, AVX512-BF16); fp16 with a gradient scaler on a CUDA
    # device without it (V100, T4); else fp32
    precision: str = "auto"

    def resolved_recipe(self):
        from .recipes import RECIPES

        return RECIPES.get(self.recipe).with_overrides(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr)


def check_run_numbers(*, width: float, seeds: Sequence[int] = (0,), subset: int | None = None) -> None:
    """The numbers every training command takes, refused with one line (NaN, inf, 0, a seed torch cannot take)."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not (math.isfinite(width) and width > 0):
        raise UserError(f"width must be a positive number, got {width}")
    if width > MAX_WIDTH:  # the weights grow with its square: memory and time without bound
        raise UserError(f"width must be at most {MAX_WIDTH:g}, got {width:g}")
    for seed in seeds:
        check_seed(seed)
    check_subset(subset)


def check_subset(subset: int | None) -> None:
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise UserError(f"train subset must be a whole number >= 1, got {subset}")


def check_data_settings(settings: DataSettings) -> None:
    """The one validation of the data settings every experiment shares (the dataset's name is each experiment's:
    landscape takes two): the subset and its seed."""
    check_subset(settings.subset)
    if settings.subset_seed is not None:
        check_seed(settings.subset_seed, "--subset-seed")


def check_settings(settings: RunSettings, seeds: Sequence[int] = ()) -> None:
    """The one validation of the shared settings: the dataset, model and recipe by name, the width, the seeds (the
    experiment's training seeds and the subset's), the subset, and the recipe's numbers with their overrides. The
    device and the precision are each experiment's (a record read back may name a device this machine lacks)."""
    from ..data import DATASETS
    from ..models import MODELS

    DATASETS.get(settings.dataset)
    MODELS.get(settings.model)
    own = () if settings.subset_seed is None else (settings.subset_seed,)
    check_run_numbers(width=settings.width, seeds=(*seeds, *own), subset=settings.subset)
    settings.resolved_recipe()  # a Recipe validates its epochs, batch size and lr


# ---- names on disk and old keyword names --------------------------------------------------------------------
def to_record(values: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """`values` (a config's fields) under the names its records have always used (`names`: field -> record name),
    in the same order."""
    return {names.get(k, k): v for k, v in values.items()}


def from_record(values: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A record's values under the fields' names (the inverse of to_record)."""
    back = {v: k for k, v in names.items()}
    return {back.get(k, k): v for k, v in values.items()}


def renamed(**old_to_new: str):
    """A config class decorator: each old keyword name is still accepted (and read) until REMOVED_IN, with a
    FutureWarning naming the new one."""

    def decorate(cls):
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args: Any, **kw: Any) -> None:
            for old, new in old_to_new.items():
                if old in kw:
                    if new in kw:
                        raise TypeError(f"{cls.__name__}() got both {old}= and {new}= (the same setting)")
                    warn_renamed(cls.__name__, old, new)
                    kw[new] = kw.pop(old)
            init(self, *args, **kw)

        cls.__init__ = __init__
        for old, new in old_to_new.items():
            setattr(cls, old, property(functools.partial(_read_renamed, name=cls.__name__, old=old, new=new)))
        return cls

    return decorate


def warn_renamed(owner: str, old: str, new: str, stacklevel: int = 2) -> None:
    """The FutureWarning of an old name, pointed `stacklevel` frames above the caller's (2: the caller's caller)."""
    warnings.warn(
        f"{owner}: {old} is deprecated, use {new} (removed in uebench {REMOVED_IN})",
        FutureWarning,
        stacklevel=stacklevel + 1,
    )


def _read_renamed(self, *, name: str, old: str, new: str) -> Any:
    warn_renamed(name, old, new)
    return getattr(self, new)


__all__ = [
    "REMOVED_IN",
    "DataSettings",
    "RunSettings",
    "check_run_numbers",
    "check_data_settings",
    "check_settings",
    "check_subset",
    "from_record",
    "renamed",
    "to_record",
]
