"""A bench folder's layout and its plan: bench.json, the poison and run specs keyed by what makes them, and reading
them back. The bench (uebench.experiments.bench) writes it; the report and `uebench sal-sweep` read it (neither needs
the bench's machinery). It lives here, on the floor of the run folders it plans (records), below the report.

    bench.json                                     identity (the settings every run shares) + the matrix asked last
    poisons/<attack>-s<seed>-<key>.safetensors     crafted (or copied user) poisons, key = hash of what made them
    runs/<attack>-<defense>-s<seed>-<key>/         run folders (records.RunFolder), key = hash of the run's settings
    samples.safetensors                            a few clean training images, for the sample grid of the report
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from ..core.io import read_json

CLEAN = "clean"
NO_DEFENSE = "none"
BENCH_FILE = "bench.json"
SAMPLES_FILE = "samples.safetensors"
POISONS_DIR, RUNS_DIR = "poisons", "runs"
SCHEMA = 1


# ---- the plan: poisons and runs, keyed by what makes them ------------------------------------------------------
@dataclass(frozen=True)
class PoisonSpec:
    label: str  # attack name, or the user file's attack name
    seed: int
    file: str  # relative to the bench folder
    attack: str | None = None  # crafted: the attack; None: a user file copied to `file`
    params: dict[str, Any] = field(default_factory=dict)  # crafted: the resolved attack config
    source: str | None = None  # user file: where it came from

    def __post_init__(self) -> None:  # read back from a bench.json a hand may have edited: read_bench names it
        if not (_typed(self.label, self.file, self.seed) and isinstance(self.params, dict)):
            raise TypeError(f"poison {self.file!r:.60} has fields of the wrong types")


def _typed(label: Any, path: Any, seed: Any) -> bool:
    return isinstance(label, str) and isinstance(path, str) and isinstance(seed, int) and not isinstance(seed, bool)


@dataclass(frozen=True)
class RunSpec:
    attack: str  # "clean", an attack name, or a user poison's label
    defense: str  # "none" or a defense name
    seed: int
    dir: str  # relative to the bench folder
    poison: str | None  # relative poison file, None for the clean run
    train: dict[str, Any]  # TrainConfig as a dict

    def __post_init__(self) -> None:  # read back from a bench.json a hand may have edited: read_bench names it
        fine = _typed(self.attack, self.dir, self.seed) and isinstance(self.defense, str)
        if not (fine and isinstance(self.poison, (str, type(None))) and isinstance(self.train, dict)):
            raise TypeError(f"run {self.dir!r:.60} has fields of the wrong types")

    def train_config(self):
        from .trainer import TrainConfig

        return TrainConfig.from_record(self.train)


def digest(obj: Any, n: int = 10) -> str:
    return hashlib.sha256(json.dumps(plain_json(obj), sort_keys=True).encode()).hexdigest()[:n]


def plain_json(obj: Any) -> Any:
    """A JSON-normal copy (tuples as lists, anything else JSON lacks as its str): what a key is hashed from."""
    return json.loads(json.dumps(obj, sort_keys=True, default=lambda x: list(x) if isinstance(x, tuple) else str(x)))


@dataclass
class Plan:
    poisons: list[PoisonSpec]
    runs: list[RunSpec]

    def to_dict(self) -> dict[str, Any]:
        return {
            "poisons": [plain_json(dataclasses.asdict(p)) for p in self.poisons],
            "runs": [plain_json(dataclasses.asdict(r)) for r in self.runs],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Plan":
        return cls([PoisonSpec(**p) for p in d["poisons"]], [RunSpec(**r) for r in d["runs"]])


def read_bench(out: str | Path) -> tuple[dict[str, Any], Plan]:
    path = Path(out) / BENCH_FILE
    if not path.is_file():
        raise UserError(f"{out} holds no bench (no {BENCH_FILE}); run uebench bench --out {out} first")
    try:
        saved = read_json(path)
        return saved, Plan.from_dict(saved["plan"])
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path} is malformed ({type(e).__name__}: {e})") from None
