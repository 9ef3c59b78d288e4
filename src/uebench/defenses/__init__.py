"""Training-time defenses against unlearnable examples: one file per defense, one protocol (base.Defense),
one registry.

    defense = uebench.defenses.create_defense("jpeg")            # ISS JPEG-10
    train(TrainConfig(..., defense="mixup", defense_params={"alpha": 1.0}))
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import DEFENSES, KINDS, Defense, PreprocessDefense, create_defense, make_config, register_defense

# every module in this package registers its defense on import
for _m in pkgutil.iter_modules(__path__):
    if _m.name not in ("base",) and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["DEFENSES", "KINDS", "Defense", "PreprocessDefense", "create_defense", "make_config", "register_defense"]
