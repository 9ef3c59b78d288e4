"""uebench: how unlearnable are unlearnable examples, really?

The public API, one import (names load on first use, so `import uebench` stays cheap):

    import uebench
    train_set = uebench.load("cifar10", "~/data", "train")                  # ImageDataset: uint8 (N, C, H, W)
    poison = uebench.craft("em", train_set, preset="fast")                   # Poison (uebench.Poison.load(path))
    run = uebench.train(uebench.TrainConfig(dataset="cifar10", data_dir="~/data", poison="em.safetensors"), "runs/em")
    sal = uebench.model_sal(run.model, train_set, mode="fast")               # per-layer SAL
    beta = uebench.learnable_threshold(sal_clean)                            # (epochs, layers) arrays
    ud = uebench.unlearnable_distance(sal_poisoned, sal_clean)
    uebench.run_bench(uebench.bench_preset("quick"), "runs/quick")           # the whole benchmark
    uebench.list_models(), list_datasets(), list_attacks(), list_defenses(), list_recipes()   # registered names
    uebench.load_plugins(["mypkg.attacks"])      # your own registered names (plus entry points, $UEBENCH_PLUGINS)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# name -> (module, attribute)
_API = {
    "load": ("uebench.data", "load"),
    "ImageDataset": ("uebench.data", "ImageDataset"),
    "create_model": ("uebench.models", "create_model"),
    "craft": ("uebench.attacks", "craft"),
    "Poison": ("uebench.poisons.poison", "Poison"),
    "create_defense": ("uebench.defenses", "create_defense"),
    "TrainConfig": ("uebench.training.trainer", "TrainConfig"),
    "train": ("uebench.training.trainer", "train"),
    "model_sal": ("uebench.metrics", "model_sal"),
    "layer_sal": ("uebench.metrics", "layer_sal"),
    "SALProbe": ("uebench.training.sal_probe", "SALProbe"),
    "learnable_threshold": ("uebench.metrics", "learnable_threshold"),
    "learnable_count": ("uebench.metrics", "learnable_count"),
    "unlearnable_distance": ("uebench.metrics", "unlearnable_distance"),
    "bootstrap_ud": ("uebench.metrics", "bootstrap_ud"),
    "BenchConfig": ("uebench.experiments.bench.run", "BenchConfig"),
    "bench_preset": ("uebench.experiments.bench.run", "preset"),
    "run_bench": ("uebench.experiments.bench.run", "run_bench"),
    "run_sweep": ("uebench.experiments.sweep", "run_sweep"),
    "load_plugins": ("uebench.core.plugins", "load_plugins"),
}
# the registries' listings: uebench.list_models() -> ["lenet5", "linear", "resnet18", ...] (list_: uebench.models
# and the others are the subpackages themselves)
_LISTINGS = {
    "list_datasets": ("uebench.data", "DATASETS"),
    "list_models": ("uebench.models", "MODELS"),
    "list_attacks": ("uebench.attacks", "ATTACKS"),
    "list_defenses": ("uebench.defenses", "DEFENSES"),
    "list_recipes": ("uebench.training.recipes", "RECIPES"),
}

__all__ = ["__version__", *_API, *_LISTINGS]


# names that check a poison file: the attacks register the rule it is held to (poisons.poison.register_budget_rule)
_CHECKS_POISONS = {"Poison", "train", "TrainConfig", "craft", "run_bench", "BenchConfig", "bench_preset"}


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attr = _API[name]
        if name in _CHECKS_POISONS:
            importlib.import_module("uebench.attacks")
        value = getattr(importlib.import_module(module), attr)
    elif name in _LISTINGS:
        module, attr = _LISTINGS[name]
        registry = getattr(importlib.import_module(module), attr)

        def value() -> list[str]:
            return registry.names()

        value.__name__, value.__doc__ = name, f"The registered {name[5:]}' names (what their --option accepts)."
    else:
        raise AttributeError(f"module 'uebench' has no attribute '{name}'")
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
