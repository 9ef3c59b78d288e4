"""What a crosstask report says (uebench crosstask's results.json), as typed records: one TaskRow per task (its
metric, trivial predictor, beta) holding one TaskCell per data version (clean, then each poison); one PoisonInfo per
poison; one Similarity per data version.

    results = CrossTaskResults.from_dict(read_json("out/crosstask/results.json"))
    results.per_task["edges"].versions["ops"].retained
    results.to_dict()                        # what results.json holds

to_dict writes the keys results.json has always had, in the same order; a cell's drop and retained margin are
absent (not null) where nothing was compared (the clean version, or a task the clean model did not learn), its #LP,
UD and mean SAL absent where no SAL was probed against a beta; a row's note is absent where the clean model learned
the task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.errors import UserError


@dataclass
class TaskCell:
    """One task trained on one data version: its test metric and, where defined, what the poison took away."""

    final: float
    best: float
    all: dict[str, Any]  # every metric of the task at the last epoch
    curve: list[float]
    compared: bool = False  # a poisoned version of a task the clean model learned: drop and retained were measured
    drop: float | None = None  # relative drop against clean (None where not finite)
    retained: float | None = None  # share of the clean margin over the trivial predictor that survives
    probed: bool = False  # SAL probed on this version and a beta from the clean run: lp, ud and sal_mean measured
    lp: float | None = None
    ud: float | None = None
    sal_mean: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"final": self.final, "best": self.best, "all": self.all, "curve": self.curve}
        if self.compared:
            d["drop"] = self.drop
            d["retained"] = self.retained
        if self.probed:
            d["lp"] = self.lp
            d["ud"] = self.ud
            d["sal_mean"] = self.sal_mean
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskCell:
        return cls(
            final=d["final"],
            best=d["best"],
            all=d["all"],
            curve=d["curve"],
            compared="drop" in d or "retained" in d,
            drop=d.get("drop"),
            retained=d.get("retained"),
            probed="lp" in d or "ud" in d or "sal_mean" in d,
            lp=d.get("lp"),
            ud=d.get("ud"),
            sal_mean=d.get("sal_mean"),
        )


@dataclass
class TaskRow:
    """One task over every data version."""

    metric: str
    higher_is_better: bool
    trivial: float  # the trivial predictor's score
    source: str  # where the targets come from (always the clean images)
    clean_learned: bool  # does the clean model beat the trivial predictor by a margin?
    note: str | None = None  # why nothing was compared (absent from results.json where the clean model learned)
    beta: float | None = None  # the learnable threshold of the task's clean SAL
    versions: dict[str, TaskCell] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "trivial": self.trivial,
            "source": self.source,
            "versions": {v: c.to_dict() for v, c in self.versions.items()},
            "clean_learned": self.clean_learned,
        }
        if self.note is not None:
            d["note"] = self.note
        d["beta"] = self.beta
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskRow:
        return cls(
            metric=d["metric"],
            higher_is_better=d["higher_is_better"],
            trivial=d["trivial"],
            source=d["source"],
            clean_learned=d.get("clean_learned", True),
            note=d.get("note"),
            beta=d.get("beta"),
            versions={v: TaskCell.from_dict(c) for v, c in d["versions"].items()},
        )


@dataclass
class DatasetInfo:
    name: str
    train: int
    test: int
    classes: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "train": self.train, "test": self.test, "classes": self.classes}


@dataclass
class PoisonInfo:
    """One poison as its header describes it, and its measured perturbation (max over images, in its norm)."""

    attack: str
    variant: str | None
    norm: str
    budget: float | None
    craft_seconds: float | None
    epoch_equivalents: float | None
    measured: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "variant": self.variant,
            "norm": self.norm,
            "budget": self.budget,
            "craft_seconds": self.craft_seconds,
            "epoch_equivalents": self.epoch_equivalents,
            "measured": self.measured,
        }


@dataclass
class Similarity:
    """One data version: the cosine similarity of the tasks' SAL vectors (None where undefined)."""

    tasks: list[str]
    matrix: list[list[float | None]]

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "matrix": self.matrix}


@dataclass
class CrossTaskResults:
    config: dict[str, Any]  # the CrossTaskConfig as a dict
    dataset: DatasetInfo
    tasks: list[str]
    versions: list[str]  # "clean", then each poison's label
    poisons: dict[str, PoisonInfo]
    per_task: dict[str, TaskRow]
    learned: dict[str, str]  # per poison: was it learned at all (the class head's shortcut probe)?
    learned_rule: str
    sal_similarity: dict[str, Similarity]
    sal_layers: list[str] | None
    sal_mode: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "dataset": self.dataset.to_dict(),
            "tasks": self.tasks,
            "versions": self.versions,
            "poisons": {k: p.to_dict() for k, p in self.poisons.items()},
            "per_task": {k: r.to_dict() for k, r in self.per_task.items()},
            "learned": self.learned,
            "learned_rule": self.learned_rule,
            "sal_similarity": {v: s.to_dict() for v, s in self.sal_similarity.items()},
            "sal_layers": self.sal_layers,
            "sal_mode": self.sal_mode,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CrossTaskResults:
        """Read results.json back (for the report or analyses made without the run folders)."""
        try:
            return cls(
                config=d["config"],
                dataset=DatasetInfo(**d["dataset"]),
                tasks=list(d["tasks"]),
                versions=list(d["versions"]),
                poisons={k: PoisonInfo(**p) for k, p in d["poisons"].items()},
                per_task={k: TaskRow.from_dict(r) for k, r in d["per_task"].items()},
                learned=dict(d.get("learned", {})),
                learned_rule=d.get("learned_rule", ""),
                sal_similarity={v: Similarity(**s) for v, s in d["sal_similarity"].items()},
                sal_layers=d.get("sal_layers"),
                sal_mode=d.get("sal_mode"),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise UserError(f"results.json is malformed ({type(e).__name__}: {e})") from None
