"""A bench's settings: `BenchConfig` (everything that determines a bench, and its identity) and the named presets.

    config = preset("quick")                            # a BenchConfig value
    config = replace(preset("cpu"), seeds=(0, 1, 2))    # frozen: change it with dataclasses.replace

`uebench bench --config FILE` reads one from a TOML file (config_file.py); every bench writes its own as bench.toml.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...core.errors import unknown_name
from ...core.io import recorded
from ...data import recorded_options
from ...metrics.sal_config import SALConfig
from ...training.bench_folder import NO_DEFENSE, plain_json
from ...training.settings import RunSettings

ALL_ATTACKS = ("em", "rem", "dc", "tap", "lsp", "ops", "ar")  # the paper's Table 1 order, then AR


# The SAL probe every run of a bench carries (the same for all, or UD would compare unlike things): uebench's one SAL
# settings object, under the name bench.json has always used for it
SALSettings = SALConfig


# settings added after benches existed, with their unset values: absent from a bench's identity while unset
ADDED_LATER = {"subset_seed": 0, "init": None, "init_head": "auto", "freeze": ()}
INIT_DIR = "init"  # the bench's copy of its --init-from weights, named by their hash


@dataclass(frozen=True)
class BenchConfig(RunSettings):
    """Everything that determines a bench. Presets (PRESETS) are values of this type. The data, model and recipe
    settings are uebench.training.settings.RunSettings; the bench poisons and trains on its `subset`."""

    subset_seed: int = 0  # which subset (and poisoned fraction): the bench's own seed, the same for every run
    width: float = 0.25
    recipe: str = "quick"
    preset: str = "custom"
    attacks: tuple[str, ...] = ALL_ATTACKS
    attack_preset: str = "fast"
    attack_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # per attack, over the preset
    poisons: tuple[str, ...] = ()  # user poison files, benched beside the crafted ones
    # the user confirms that some of `poisons` are unpaired (no index mapping: each replaces the whole training set,
    # its budget unchecked); refused without it. Not part of any key: those runs' own configs say `unpaired`
    unpaired: bool = False
    # partial poisoning: each poison is also benched with only this share of its images poisoned (per class, seeded
    # by the subset seed); 1.0 is the whole poison. A run of a share below 1 is labelled "<attack>@<share>"
    poison_fractions: tuple[float, ...] = (1.0,)
    defenses: tuple[str, ...] = (NO_DEFENSE,)
    defense_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    sal: SALSettings = field(default_factory=SALSettings)
    # save each run's model at every SAL epoch (for `uebench sal-sweep`). Not part of any key: it changes no result,
    # and a run cached without weights keeps none (sal-sweep names it)
    keep_weights: bool = False
    channels_last: bool = True
    # every run (clean included, so that comparisons stay fair) starts from these weights, its head and frozen modules
    # as `uebench train --init-from/--init-head/--freeze` take them; the bench keeps a copy in its folder (INIT_DIR)
    # and its identity holds the file's name and sha256, not where it lay
    init_from: str | None = None
    init_head: str = "auto"
    freeze: tuple[str, ...] = ()
    description: str = ""

    def init_source(self) -> dict[str, str] | None:
        """The --init-from file as the bench's identity holds it ({"name", "sha256"}; hashed once per file version), and
        where the bench keeps its copy (`file`, relative to its folder); None without one."""
        if self.init_from is None:
            return None
        from ...core.io import file_sha256
        from ...training.records import safe_label

        path = Path(self.init_from)
        sha = file_sha256(path)
        file = f"{INIT_DIR}/{safe_label(path.stem)}-{sha[:10]}.safetensors"
        return {"name": path.name, "sha256": sha, "file": file}

    def identity(self) -> dict[str, Any]:
        """The settings every run shares: a folder holding a bench with other values here is another bench.
        The matrix (attacks, poisons, defenses, seeds) and per-attack/defense parameters may grow between calls:
        they only add cached entries."""
        return plain_json(
            recorded(
                {
                    "dataset": self.dataset,
                    # scenes' difficulty written out unless `standard`, which a bench made before leaves out
                    "dataset_options": recorded_options(self.dataset, self.dataset_options),
                    "subset": self.subset,
                    "subset_seed": self.subset_seed,
                    "attack_preset": self.attack_preset,
                    "model": self.model,
                    "width": self.width,
                    "recipe": self.resolved_recipe().to_dict(),
                    "sal": self.sal.record(),
                    "device": self.device,
                    "precision": self.precision,
                    "channels_last": self.channels_last,
                    "init": self._init_identity(),
                    "init_head": self.init_head,
                    "freeze": self.freeze,
                },
                ADDED_LATER,
            )
        )

    def _init_identity(self) -> dict[str, str] | None:
        source = self.init_source()
        return None if source is None else {"name": source["name"], "sha256": source["sha256"]}

    def with_dataset(self, name: str) -> "BenchConfig":
        """The preset on another dataset: its dataset options belong to its own dataset, so they are dropped, and a
        generated training-set size becomes a subset of the same size (a CPU preset stays CPU-sized)."""
        if name == self.dataset:
            return self
        size = self.subset if self.subset is not None else self.dataset_options.get("n_train")
        return replace(self, dataset=name, dataset_options={}, subset=size)

    def to_dict(self) -> dict[str, Any]:
        return plain_json({**dataclasses.asdict(self), "sal": self.sal.record()})


# The README's main job: a few minutes on 2 CPU cores (sized and measured: docs/results/benchmark.md).
QUICK = BenchConfig(
    preset="quick",
    dataset="scenes",
    dataset_options={"n_train": 2000, "n_test": 500, "difficulty": "natural"},
    model="resnet18",
    width=0.125,
    recipe="cpu",
    epochs=10,
    attack_preset="fast",
    # EM at its fast preset (shortened further it stops working). The others are shortened to fit the 10-minute
    # budget: on `scenes` none of them is picked up even at its full fast preset, crafted in bf16 or fp32
    # (docs/results/benchmark.md), so the crafting budget goes where it pays
    attack_params={
        "rem": {"train_steps": 32, "lr_decay_every": 24, "steps": 2, "adv_steps": 1},
        "tap": {"clean_epochs": 3, "iterations": 10},
        "dc": {"trials": 1, "cls_epochs": 1},
    },
    sal=SALSettings(mode="fast", every=3, rounds=2, subset=128),
    description="CPU, minutes: scenes 'natural' (2,000 train / 500 test), ResNet-18 width 0.125, 10 epochs without "
    "augmentation, EM at its fast preset and the others shortened, fast SAL every 3rd epoch",
)

# The paper's configuration: CIFAR-10, ResNet-18 (width 1), the paper's recipe (50 epochs, constant lr), the
# attacks' paper settings and the faithful SAL probe. A GPU job (docs/guides/benchmark.md gives its cost).
PAPER = BenchConfig(
    preset="paper",
    dataset="cifar10",
    model="resnet18",
    width=1.0,
    recipe="paper",
    attack_preset="paper",
    sal=SALSettings(mode="faithful", every=1, rounds=10, origin="running"),
    description="GPU: CIFAR-10, ResNet-18, the paper's 50-epoch recipe, paper attack settings, faithful SAL",
)

# Real CIFAR-10 on 2 CPU cores, the regime where the published efficacy holds at CPU scale (docs/results/efficacy.md,
# benchmarks/efficacy_study.py): a 5,000-image subset, an eighth-width ResNet-18, 10 epochs without augmentation.
# With crop+flip this victim learns the content before LSP's and OPS's shortcuts.
CPU = BenchConfig(
    preset="cpu",
    dataset="cifar10",
    subset=5000,
    model="resnet18",
    width=0.125,
    recipe="cpu",
    attack_preset="fast",
    # REM at its paper's ablation radius rho_a = 2/255 with 4x the fast preset's crafting-model training: at 4/255
    # and 160 steps its noise is not picked up at this scale (docs/results/efficacy.md)
    attack_params={"rem": {"adv_eps": 2 / 255, "adv_step": 1 / 255, "train_steps": 640, "lr_decay_every": 480}},
    sal=SALSettings(mode="fast", every=2, rounds=3, subset=256),
    keep_weights=True,  # 0.7 MB per probed epoch: `uebench sal-sweep` can measure SAL again with other settings
    description=(
        "CPU, about 40 minutes: CIFAR-10 5,000-image subset, ResNet-18 width 0.125, 10 epochs without augmentation, "
        "fast attacks, fast SAL every 2nd epoch"
    ),
)

# APBench's ImageNet-100 setting (imagenet_train.py, util.py): an imagefolder tree of ImageNet-100 (train/ and val/),
# 20% of each class's training images at 224 px, torchvision's ResNet-18 and APBench's recipe; the three attacks its
# ImageNet script names, with an ImageNet-stem crafting model and LSP's 32-px patches (its imagenet100 branch).
# A GPU job: the subset is 26,000 images; EM and REM keep it on the host where it is over a quarter of the device's
# memory as float (uebench.attacks._crafting.keep_on_host).
IMAGENET100 = BenchConfig(
    preset="imagenet100",
    dataset="imagefolder",
    dataset_options={"image_size": 224, "fraction": 0.2},
    attacks=("em", "rem", "lsp"),
    attack_preset="paper",
    attack_params={
        "em": {"model": "resnet18_imagenet"},
        "rem": {"model": "resnet18_imagenet"},
        "lsp": {"patch_size": 32},
    },
    model="resnet18_imagenet",
    width=1.0,
    recipe="apbench-imagenet",
    sal=SALSettings(mode="fast", every=10, rounds=3, subset=256),
    description="GPU: ImageNet-100 (--data-dir with train/ and val/ class folders), 20% per class at 224 px, "
    "ResNet-18 with the ImageNet stem, APBench's 200-epoch ImageNet recipe, EM/REM/LSP, fast SAL every 10th epoch",
)

PRESETS: dict[str, BenchConfig] = {c.preset: c for c in (QUICK, CPU, PAPER, IMAGENET100)}


def preset(name: str) -> BenchConfig:
    if name not in PRESETS:
        raise unknown_name("bench preset", name, PRESETS)
    return PRESETS[name]
