"""The attack protocol: a typed config, presets, and `perturb(dataset) -> float delta`.

An attack never writes uint8 itself: `craft()` (attacks/craft.py) bakes its delta (poison.bake), runs every safety
check on the baked bytes, and only then returns a Poison. Adding an attack is one new file with one registered class.
`method_budget` is registered with poisons.poison (below this package) as the rule a crafted file's claimed budget
meets.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..core.errors import UserError
from ..core.options import typed_params
from ..core.registry import Registry
from ..data.base import ImageDataset


@dataclass
class Perturbation:
    delta: torch.Tensor  # float (N, C, H, W), [0,1] pixel units, aligned with the dataset given to perturb()
    epoch_equivalents: float  # crafting compute, in forward+backward passes over the crafting set
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. stopping epoch, final crafting accuracy


class Attack(ABC):
    """Subclass, set the class attributes, implement perturb(); register with @register_attack."""

    name: ClassVar[str]
    norm: ClassVar[str]  # linf | l2 | l0
    description: ClassVar[str]
    Config: ClassVar[type]  # a dataclass whose defaults are the original paper's settings (the `paper` preset)
    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # other presets as overrides of the paper defaults, e.g. "fast"
    variant: ClassVar[str] = "paper"  # where public code differs from the paper, the config says which ran
    # True where the crafting model and its loss can be swapped for another objective (an _crafting.Objective: a
    # multi-task network and its summed loss, uebench.experiments.crosstask); model-free attacks are defined by labels
    # alone
    accepts_objective: ClassVar[bool] = False

    def __init__(self, config: Any, objective: Any = None):
        if objective is not None and not self.accepts_objective:
            raise UserError(
                f"attack '{self.name}' has no crafting model and loss to swap for another objective; "
                f"attacks that have one: {', '.join(objective_attacks()) or 'none'}"
            )
        self.config = config
        self.objective = objective  # None: the method's own classifier and cross-entropy

    @abstractmethod
    def budget(self) -> float:
        """The norm bound of this configuration ([0,1] pixel units; pixel count for l0)."""

    def validate(self, ds: ImageDataset) -> None:
        """Refuse configurations or datasets the method cannot handle (raise UserError saying why)."""
        b = self.budget()
        if self.norm in ("linf",) and not (0 < b <= MAX_LINF):
            # past a quarter of the pixel range a perturbation is no longer imperceptible: not an unlearnable example
            raise UserError(
                f"{self.name}: Linf budget {b:.6g} outside (0, 64/255] ([0,1] pixel units; the papers' 8/255 = 0.0314)"
            )
        if self.norm == "l2" and not (0 < b):
            raise UserError(f"{self.name}: L2 budget must be positive, got {b}")
        if self.norm == "l0" and not (b >= 1 and float(b).is_integer()):
            raise UserError(f"{self.name}: L0 budget must be a whole number of pixels >= 1, got {b}")

    @abstractmethod
    def perturb(self, ds: ImageDataset, *, seed: int, progress: bool) -> Perturbation:
        """The perturbation of every image of ds (same order), within budget in float."""

    def describe_variant(self) -> str:
        return getattr(self.config, "variant", self.variant)


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(cls: type[Attack]) -> type[Attack]:
    ATTACKS.register(cls.name)(cls)
    return cls


def objective_attacks() -> list[str]:
    """The attacks whose crafting model and loss can be swapped (`accepts_objective`)."""
    return [n for n in ATTACKS.names() if ATTACKS.get(n).accepts_objective]


ATTACK_PRESETS = ("paper", "fast")  # every attack has "paper"; "fast" where it defines one
MAX_LINF = 64 / 255  # the largest Linf budget an attack accepts


def make_config(cls: type[Attack], preset: str = "paper", **params: Any) -> Any:
    """The attack's config: paper defaults, then the preset's overrides, then the user's params."""
    if preset != "paper" and preset not in cls.presets:
        raise UserError(f"attack '{cls.name}' has no preset '{preset}'; valid: {', '.join(['paper', *cls.presets])}")
    params = typed_params(cls.Config, params, f"attack '{cls.name}'")
    values = {**cls.presets.get(preset, {}), **params}
    try:
        return cls.Config(**values)
    except (TypeError, ValueError) as e:
        raise UserError(f"attack '{cls.name}': bad parameters: {e}") from None


def method_budget(meta: Any, ds: Any = None) -> float | None:
    """The budget a uebench-crafted poison's own settings give on the dataset `ds` (an L2 budget that scales with
    the image, LSP's, reads its shape there), or None for anything else (a user's import): a file cannot claim more
    room than the method it names allows."""
    params = dict(meta.params)
    if meta.attack not in ATTACKS or "preset" not in params or ATTACKS.get(meta.attack).norm != meta.norm:
        return None
    cls = ATTACKS.get(meta.attack)
    params.pop("preset")
    try:
        attack = cls(make_config(cls, "paper", **params))
        if ds is not None:
            attack.validate(ds)
        return float(attack.budget())
    except (UserError, TypeError, ValueError):
        return None
