"""What a bench report says, as typed records: one RunRow per planned run, one MeanRow per (attack, defense) over
seeds, one BetaRow per (defense, seed) threshold, one PoisonRow per poison file, one Curve per run.

    results = collect("runs/quick")          # BenchResults, read from the bench folder alone
    results.rows[0].final_test_acc, results.mean("em", "none").mean("ud")
    results.to_json()                        # what results.json holds

Every number comes from the run folders (records.read_run), the poison files' headers and uebench.metrics (beta,
#LP and UD through ud_table); nothing here re-derives a metric. beta comes from the clean run trained under the same
defense and seed as the poisoned runs it measures (a defense changes the clean run's SAL too).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from ..core.io import utf8_path
from ..metrics.verdict import RANKED, baseline_learned, baseline_reason, poison_learned
from ..training.bench_folder import CLEAN, read_bench
from ..training.shortcut import SHORTCUT_KEYS

REPORTED_METRICS = ("final_test_acc", "peak_test_acc", "lp", "ud", "ud_eval", *SHORTCUT_KEYS)
MEAN_METRICS = (*REPORTED_METRICS, "craft_seconds", "train_seconds")  # what MeanRow averages over seeds


@dataclass
class RunRow:
    """One run of the plan as its folder holds it; the metrics are None until the run (or its clean run) is done."""

    attack: str
    defense: str
    seed: int
    status: str  # finished | unfinished | not started
    epochs_done: int
    epochs: int | None
    final_test_acc: float | None
    peak_test_acc: float | None
    peak_epoch: int | None
    final_train_acc: float | None
    shortcut_acc: float | None  # the shortcut probe (poisoned runs only): does the model follow the poison?
    clean_train_acc: float | None
    sal_offset: float | None  # mean over probed epochs of L0(eval) - L0(running)
    craft_seconds: float | None
    craft_epoch_equivalents: float | None
    train_seconds: float
    sal_seconds: float
    model: str
    width: float
    recipe: str
    recipe_settings: dict[str, Any]
    precision: str | None
    device: str | None
    poison_norm: str | None
    poison_budget: float | None
    run: str
    poison: str | None
    lp: float | None = None  # filled by the threshold pass (against this defense's clean run)
    ud: float | None = None
    beta: float | None = None
    ud_ci_low: float | None = None
    ud_ci_high: float | None = None
    lp_eval: float | None = None
    ud_eval: float | None = None
    beta_eval: float | None = None
    shortcut_n: int | None = None  # images the shortcut probe read
    learned: str | None = None  # was the poison learned (metrics.verdict): yes | partly | no | unknown; None: clean
    # trained on an unpaired poison (its images the whole training set, its budget unchecked; the user confirmed it):
    # no probe compares it with clean originals, so its verdict is unknown
    unpaired: bool = False
    # the poison's PSNR (dB) and SSIM against its clean images, per-image mean and worst image (its file's metadata,
    # uebench.poisons.imperceptibility); None: a clean run, an unpaired poison, a file of an earlier uebench
    poison_psnr_mean: float | None = None
    poison_psnr_worst: float | None = None
    poison_ssim_mean: float | None = None
    poison_ssim_worst: float | None = None

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def ranked(self) -> bool:
        """Does this run's UD say something about protection (a poison the model learned)?"""
        return self.learned in RANKED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MeanRow:
    """Mean and sample standard deviation over the finished seeds of one (attack, defense)."""

    attack: str
    defense: str
    seeds: list[int]
    stats: dict[str, tuple[float | None, float | None]]  # metric -> (mean, std)
    verdicts: list[str] = field(default_factory=list)  # each finished seed's `learned` (poisoned runs only)

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def learned(self) -> str | None:
        """The seeds' verdict: theirs where they agree; "partly" where some learned the poison and some did not;
        "unknown" where they mix "no" and "unknown"."""
        kinds = set(self.verdicts)
        if not kinds:
            return None
        if len(kinds) == 1:
            return kinds.pop()
        return "partly" if kinds & set(RANKED) else "unknown"

    @property
    def ranked(self) -> bool:
        return self.learned in RANKED

    def mean(self, metric: str) -> float | None:
        return self.stats.get(metric, (None, None))[0]

    def std(self, metric: str) -> float | None:
        return self.stats.get(metric, (None, None))[1]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attack": self.attack,
            "defense": self.defense,
            "seeds": self.seeds,
            "n": self.n,
            "learned": self.learned,
            "verdicts": list(self.verdicts),
        }
        for m, (mean, std) in self.stats.items():
            out[f"{m}_mean"], out[f"{m}_std"] = mean, std
        return out


@dataclass
class BetaRow:
    """The learnable threshold of one (defense, seed), from that clean run's SAL."""

    defense: str
    seed: int
    beta: float
    clean_lp: float
    clean_run: str
    sal_mode: str
    sal_origin: str
    layers: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PoisonRow:
    """One poison file of the plan; meta is its header (None while the file is missing or unreadable)."""

    label: str
    seed: int
    file: str
    attack: str
    source: str
    meta: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Curve:
    epoch: list[int] = field(default_factory=list)
    test_acc: list[float | None] = field(default_factory=list)
    train_acc: list[float | None] = field(default_factory=list)
    train_loss: list[float | None] = field(default_factory=list)


@dataclass
class BenchHeader:
    preset: str
    config: dict[str, Any]  # the bench config as bench.json records it
    identity: dict[str, Any]
    updated: str | None
    num_classes: int | None
    n_test: int | None = None  # test images: how far above chance a clean run must be (metrics.verdict)


@dataclass
class BenchResults:
    bench: BenchHeader
    rows: list[RunRow]
    aggregate: list[MeanRow]
    betas: list[BetaRow]
    poisons: list[PoisonRow]
    curves: dict[str, Curve]
    notes: list[str]

    @property
    def config(self) -> dict[str, Any]:
        return self.bench.config

    def mean(self, attack: str, defense: str) -> MeanRow | None:
        return next((a for a in self.aggregate if (a.attack, a.defense) == (attack, defense)), None)

    def attacks(self) -> list[str]:
        """The attacks in plan order (clean first)."""
        return list(dict.fromkeys(r.attack for r in self.rows))

    def to_json(self) -> dict[str, Any]:
        return {
            "bench": asdict(self.bench),
            "rows": [r.to_dict() for r in self.rows],
            "aggregate": [a.to_dict() for a in self.aggregate],
            "betas": [b.to_dict() for b in self.betas],
            "poisons": [p.to_dict() for p in self.poisons],
            "curves": {k: asdict(c) for k, c in self.curves.items()},
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BenchResults:
        """Read results.json back (for figures or analyses made without the run folders)."""
        try:
            run_fields = {f.name for f in fields(RunRow)}
            return cls(
                bench=BenchHeader(**d["bench"]),
                rows=[RunRow(**{k: v for k, v in r.items() if k in run_fields}) for r in d["rows"]],
                aggregate=[
                    MeanRow(
                        a["attack"],
                        a["defense"],
                        list(a["seeds"]),
                        {m: (a.get(f"{m}_mean"), a.get(f"{m}_std")) for m in MEAN_METRICS if f"{m}_mean" in a},
                        list(a.get("verdicts", [])),
                    )
                    for a in d["aggregate"]
                ],
                betas=[BetaRow(**b) for b in d["betas"]],
                poisons=[PoisonRow(**p) for p in d["poisons"]],
                curves={k: Curve(**c) for k, c in d["curves"].items()},
                notes=list(d["notes"]),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise UserError(f"results.json is malformed ({type(e).__name__}: {e})") from None


def poison_meta(path: Path) -> dict[str, Any] | None:
    """The metadata of a poison file, read from its header only (no image bytes)."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with utf8_path(path) as name, safe_open(name, framework="pt") as f:
            return json.loads((f.metadata() or {})["uebench_poison"])
    except Exception:
        return None


def poison_quality(meta: dict[str, Any] | None) -> dict[str, float | None]:
    """The RunRow fields of a poison's PSNR and SSIM, read from its metadata where it holds them (as numbers)."""
    from ..poisons.imperceptibility import is_valid

    stats = (meta or {}).get("imperceptibility")
    stats = stats if is_valid(stats) else {}
    return {f"poison_{k}": stats.get(k) for k in ("psnr_mean", "psnr_worst", "ssim_mean", "ssim_worst")}


def _mean_offset(history: list[dict[str, Any]]) -> float | None:
    """Mean over probed epochs of L0(eval) - L0(running): the part of every layer's running-origin SAL that is the
    same for all layers of an epoch (BatchNorm's train/eval gap, augmentation, weights moving during the epoch)."""
    offsets = [h["sal_offset"] for h in history if isinstance(h.get("sal_offset"), (int, float))]
    return sum(offsets) / len(offsets) if offsets else None


def _run_row(out: Path, spec, poison: PoisonRow | None) -> tuple[RunRow, Curve]:
    from ..training.records import read_run
    from ..training.trainer import TrainConfig

    got = read_run(out / spec.dir)
    s, hist = got.summary, got.history
    epochs = (s or {}).get("epochs") or (hist[0].get("epochs") if hist else None)
    meta = poison.meta if poison else None
    recipe = TrainConfig.from_record(spec.train).resolved_recipe().to_dict()
    recipe.pop("description", None)  # prose, not a setting
    clean = spec.poison is None
    row = RunRow(
        attack=spec.attack,
        defense=spec.defense,
        seed=spec.seed,
        status="finished" if s else ("unfinished" if hist else "not started"),
        epochs_done=len(hist),
        epochs=recipe["epochs"] if epochs is None else epochs,
        final_test_acc=s["final_test_acc"] if s else None,
        peak_test_acc=s["peak_test_acc"] if s else None,
        peak_epoch=s["peak_epoch"] if s else None,
        final_train_acc=s["final_train_acc"] if s else None,
        shortcut_acc=(s or {}).get("final_shortcut_acc"),
        clean_train_acc=(s or {}).get("final_clean_train_acc"),
        shortcut_n=(s or {}).get("final_shortcut_n"),
        sal_offset=_mean_offset(hist),
        craft_seconds=meta["craft_seconds"] if meta else (0.0 if clean else None),
        craft_epoch_equivalents=meta["epoch_equivalents"] if meta else (0.0 if clean else None),
        train_seconds=sum(h.get("train_seconds", 0.0) for h in hist),
        sal_seconds=sum(h.get("sal_seconds", 0.0) for h in hist),
        model=spec.train["model"],
        width=spec.train["width"],
        recipe=recipe["name"],
        recipe_settings=recipe,
        precision=(s or {}).get("precision"),
        device=(s or {}).get("device"),
        poison_norm=meta["norm"] if meta else None,
        poison_budget=meta["budget"] if meta else None,
        run=spec.dir,
        poison=spec.poison,
        unpaired=spec.train.get("unpaired") is True,  # the run's own config, set from the file's structure
        **poison_quality(meta),
    )
    curve = Curve(
        epoch=[h["epoch"] for h in hist],
        test_acc=[h.get("test_acc") for h in hist],
        train_acc=[h.get("train_acc") for h in hist],
        train_loss=[h.get("train_loss") for h in hist],
    )
    return row, curve


def _thresholds(
    out: Path,
    rows: list[RunRow],
    defenses: list[str],
    notes: list[str],
    num_classes: int | None,
    n_test: int | None,
    force: bool = False,
) -> list[BetaRow]:
    """beta, #LP and UD per (defense, seed), against that defense's clean run; fills the rows in place. A clean run
    whose accuracy is not clearly above chance is no baseline: its group gets no beta, #LP or UD, and a note."""
    from ..metrics import ud_table
    from ..training.comparable import check_comparable
    from ..training.records import load_run_sal

    betas: list[BetaRow] = []
    order = {d: i for i, d in enumerate(defenses)}
    for key in sorted({(r.defense, r.seed) for r in rows}, key=lambda k: (order.get(k[0], 99), k[1])):
        group = [r for r in rows if (r.defense, r.seed) == key and r.finished]
        clean = next((r for r in group if r.attack == CLEAN), None)
        if clean is None:
            notes.append(f"defense {key[0]}, seed {key[1]}: the clean run is not finished, so no beta, #LP or UD")
            continue
        others = [r for r in group if r is not clean]
        if num_classes and n_test and not baseline_learned(clean.final_test_acc, num_classes, n_test):
            notes.append(
                f"defense {key[0]}, seed {key[1]}: {baseline_reason(clean.final_test_acc, num_classes, n_test)}"
            )
            continue
        for line in check_comparable(out / clean.run, [out / r.run for r in others], force=force):
            notes.append(f"compared with --force although {line}")
        try:
            clean_sal = load_run_sal(out / clean.run)
            beta, ud_rows = ud_table(clean_sal, [load_run_sal(out / r.run, layers=clean_sal.layers) for r in others])
        except UserError as e:
            notes.append(f"defense {key[0]}, seed {key[1]}: {e}")
            continue
        for r, u in zip([clean, *others], ud_rows):
            r.lp, r.ud, r.beta, r.ud_ci_low, r.ud_ci_high = u.lp, u.ud, beta, u.ud_ci_low, u.ud_ci_high
        try:  # the same search read with the other origin's L0 (the eval loss of W0 on the probe data)
            clean_eval = load_run_sal(out / clean.run, origin="eval")
            beta_eval, eval_rows = ud_table(
                clean_eval,
                [load_run_sal(out / r.run, layers=clean_eval.layers, origin="eval") for r in others],
                bootstrap=0,
            )
            for r, u in zip([clean, *others], eval_rows):
                r.lp_eval, r.ud_eval, r.beta_eval = u.lp, u.ud, beta_eval
        except UserError as e:
            notes.append(f"defense {key[0]}, seed {key[1]}, eval origin: {e}")
        betas.append(
            BetaRow(key[0], key[1], beta, ud_rows[0].lp, clean.run, clean_sal.mode, clean_sal.origin, clean_sal.layers)
        )
    return betas


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return None, None
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0  # sample std over seeds
    return m, sd


def aggregate(rows: list[RunRow]) -> list[MeanRow]:
    """Mean and standard deviation over seeds per (attack, defense), in plan order."""
    keys = list(dict.fromkeys((r.attack, r.defense) for r in rows))
    out = []
    for attack, defense in keys:
        done = [r for r in rows if (r.attack, r.defense) == (attack, defense) and r.finished]
        stats = {m: _mean_std([getattr(r, m) for r in done]) for m in MEAN_METRICS}
        verdicts = [r.learned for r in done if r.learned is not None]
        out.append(MeanRow(attack, defense, [r.seed for r in done], stats, verdicts))
    return out


def _data_sizes(out: Path, plan) -> tuple[int | None, int | None]:
    """(classes, test images) as the runs saw the data (manifest.json of any started run)."""
    from ..core.io import read_json

    for spec in plan.runs:
        m = out / spec.dir / "manifest.json"
        if m.is_file():
            got = read_json(m) or {}
            return got.get("train_set", {}).get("num_classes"), got.get("test_set", {}).get("size")
    return None, None


def collect(out: str | Path, force: bool = False) -> BenchResults:
    """Every number of the report, read from the bench folder. Runs measured unlike their clean run are refused
    (metrics.comparable) unless `force`, which notes what differed."""
    out = Path(out)
    saved, plan = read_bench(out)
    config = saved["config"]
    poisons = {
        p.file: PoisonRow(p.label, p.seed, p.file, p.attack, p.source, poison_meta(out / p.file)) for p in plan.poisons
    }
    rows: list[RunRow] = []
    curves: dict[str, Curve] = {}
    for spec in plan.runs:
        row, curves[spec.dir] = _run_row(out, spec, poisons[spec.poison] if spec.poison else None)
        rows.append(row)
    num_classes, n_test = _data_sizes(out, plan)
    # each poisoned run against the clean run of its defense and seed: how well this content is learned from clean data
    reference = {(r.defense, r.seed): r.final_test_acc for r in rows if r.attack == CLEAN and r.finished}
    for r in rows:
        if r.attack != CLEAN and r.finished:
            ref = reference.get((r.defense, r.seed))
            learned = poison_learned(r.shortcut_acc, r.clean_train_acc, num_classes or 0, r.shortcut_n, ref)
            r.learned = "unknown" if r.unpaired else learned
    if force and not any(r.attack != CLEAN and r.finished for r in rows):
        raise UserError(f"--force: {out} has no finished poisoned run to compare with a clean run")
    notes: list[str] = []
    betas = _thresholds(out, rows, list(config["defenses"]), notes, num_classes, n_test, force)
    unfinished = [r.run for r in rows if not r.finished]
    if unfinished:
        notes.append(
            f"{len(unfinished)} of {len(rows)} runs are not finished: rerun the bench command to complete them"
        )
    header = BenchHeader(config["preset"], config, saved["identity"], saved.get("updated"), num_classes, n_test)
    return BenchResults(header, rows, aggregate(rows), betas, list(poisons.values()), curves, notes)
