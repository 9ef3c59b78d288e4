"""Unlearnable-example attacks: one file per method, one protocol (base.Attack), one registry.

poison = uebench.attacks.craft("em", train_set, preset="fast", seed=0)
poison.save("em.safetensors")
"""

from __future__ import annotations

import importlib
import pkgutil

from ..poisons.poison import register_budget_rule
from .base import (
    ATTACK_PRESETS,
    ATTACKS,
    Attack,
    Perturbation,
    make_config,
    method_budget,
    objective_attacks,
    register_attack,
)
from .craft import craft

# every module in this package registers its attack on import
for _m in pkgutil.iter_modules(__path__):
    if _m.name not in ("base", "craft") and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")
register_budget_rule(method_budget)  # Poison.check holds a uebench-crafted file to its method's own budget

__all__ = [
    "ATTACKS",
    "ATTACK_PRESETS",
    "Attack",
    "Perturbation",
    "craft",
    "make_config",
    "method_budget",
    "objective_attacks",
    "register_attack",
]
