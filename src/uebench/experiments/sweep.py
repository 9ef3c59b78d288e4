"""How much do SAL, #LP and UD depend on SAL's own settings? `uebench sal-sweep DIR` measures it on a finished bench.

The paper fixes eps = 0.05 (the ball's radius relative to ||W0||) and 10 search rounds; its reviewers asked how the
results move with eps in {0.01, 0.05, 0.1} and rounds in {5, 10, 20}. A bench run with `--keep-weights` (the `cpu`
preset keeps them) saved its model at every SAL epoch, so the sweep measures SAL again on exactly those weights,
with the run's own probe data and seed, under each setting, without training anything:

    uebench bench --preset cpu --data-dir ~/data --out runs/c10
    uebench sal-sweep runs/c10 --eps 0.01,0.05,0.1 --rounds 5,10,20 --modes fast,faithful

The grid varies one axis at a time around the bench's own setting (the reference): eps at the reference's rounds,
rounds at the reference's eps, for each mode. Each (setting, run) is cached in DIR/sweep/ as soon as it is measured,
so an interrupted sweep continues where it stopped. The summary (sweep.json, sweep.md) gives per setting and origin:
the cost, UD per attack (mean over seeds), Kendall tau of the attacks' UD ranking against the reference, the largest
|UD - UD_ref|, and the mean per-snapshot Spearman rho of the layers' SAL against the reference. The reference itself
is measured again too, and its largest difference from the SAL the bench recorded says whether the remeasurement is
exact (on CPU at the bench's thread count it is 0).

`beta_from`: benches of other datasets whose clean run's beta replaces this bench's own (the paper takes beta from
each dataset's clean run; does it transfer?), reported as UD under the foreign beta beside UD under its own.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..core.errors import UserError
from ..core.io import atomic_write_json, atomic_write_text, read_json
from ..core.lock import FolderLock
from ..core.options import MAX_REPEATS, check_count
from ..metrics.ranking import kendall_tau, spearman_rho  # noqa: F401  (sweep's public names)
from ..metrics.sal import ORIGINS
from ..metrics.sal_config import SALConfig
from ..metrics.threshold import learnable_threshold
from ..metrics.ud import sal_matrix, ud_if_defined
from ..training.bench_folder import CLEAN, NO_DEFENSE, RunSpec, read_bench
from ..training.records import SUMMARY, kept_weights, load_weights, read_metrics, weights_file

SWEEP_DIR, SWEEP_JSON, SWEEP_MD = "sweep", "sweep.json", "sweep.md"
FAITHFUL_ROUNDS = 10  # the paper's
PASS_SEED_STRIDE = 1_000_003  # pass k draws its probe with the run's seed + k * stride: apart from every run's seed


@dataclass(frozen=True)
class Setting:
    """One SAL setting of the sweep. `subset`: fast mode's probe images (None: the bench's). `repeat`: 0 for the
    first pass; k > 0 measures the same setting again with the probe's draws seeded afresh (faithful: another data
    order and augmentation; fast: another subset), so a setting's agreement with itself can be measured."""

    mode: str
    eps: float
    rounds: int
    subset: int | None = None
    repeat: int = 0

    def __post_init__(self) -> None:
        if self.rounds is None:  # a setting of the sweep names its rounds (the reference's default made explicit)
            raise UserError("a sal-sweep setting needs its rounds")
        self.applied_to(SALConfig())  # mode, eps, rounds and subset: SALConfig's one validation
        check_count(self.repeat, "a setting's repeat", MAX_REPEATS - 1, low=0)

    def applied_to(self, base: SALConfig) -> SALConfig:
        """`base` (a bench's SAL settings) measured under this setting: its mode, eps, rounds and subset."""
        subset = base.subset if self.subset is None else self.subset
        return replace(base, mode=self.mode, eps=self.eps, rounds=self.rounds, subset=subset)

    @property
    def label(self) -> str:
        size = f"-n{self.subset}" if self.mode == "fast" and self.subset is not None else ""
        again = f"-pass{self.repeat + 1}" if self.repeat else ""
        return f"{self.mode}-eps{self.eps:g}-r{self.rounds}{size}{again}"

    @property
    def first_pass(self) -> Setting:
        return replace(self, repeat=0)


def reference_setting(sal: dict[str, Any]) -> Setting:
    """The bench's own SAL setting (its `sal` entry in bench.json, as `bench_record` checked it)."""
    mode = sal["mode"]
    rounds = sal.get("rounds") or default_rounds(mode)
    return Setting(mode, float(sal["eps"]), int(rounds), int(sal["subset"]) if mode == "fast" else None)


def default_rounds(mode: str) -> int:
    """The rounds a SAL probe runs when none are given (SALProbe: 10 faithful, the fast config's own)."""
    from ..metrics import FastSALConfig

    return FAITHFUL_ROUNDS if mode == "faithful" else FastSALConfig().rounds


def grid(
    reference: Setting,
    eps: Sequence[float] = (),
    rounds: Sequence[int] = (),
    modes: Sequence[str] = (),
    repeats: int = 1,
) -> list[Setting]:
    """One axis at a time around the reference, for each mode (the reference first). In the other mode the
    reference's rounds become that mode's own default (faithful: the paper's 10), and its eps stays. `repeats` N
    measures every setting N times (passes 2..N seeded afresh, listed after all first passes)."""
    check_count(repeats, "--repeats", MAX_REPEATS)
    out = [reference]
    for mode in modes or (reference.mode,):
        base_rounds = reference.rounds if mode == reference.mode else default_rounds(mode)
        subset = reference.subset if mode == "fast" else None
        base = Setting(mode, reference.eps, base_rounds, subset)
        candidates = [
            base,
            *(Setting(mode, float(e), base_rounds, subset) for e in eps),
            *(Setting(mode, reference.eps, int(r), subset) for r in rounds),
        ]
        out += [c for i, c in enumerate(candidates) if c not in out and c not in candidates[:i]]
    return out + [replace(s, repeat=k) for k in range(1, repeats) for s in out]


def bench_record(bench_dir: Path) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """(bench.json, its plan, its SAL settings), every part the sweep uses checked first: a hand-edited record (a
    missing or mistyped SAL setting, a run whose settings name no model) is one line, before anything is measured."""
    from ..training.trainer import check_config

    saved, plan = read_bench(bench_dir)
    where = bench_dir / "bench.json"
    config = saved.get("config")
    sal = config.get("sal") if isinstance(config, dict) else None
    try:
        sal = asdict(SALConfig.from_record(sal)) if isinstance(sal, dict) else None  # names, types, bounds
    except TypeError as e:
        raise UserError(f"{where} is malformed: its SAL settings do not read ({e})") from None
    if sal is None:
        raise UserError(f"{where} is malformed: no SAL settings (config.sal)")
    if not isinstance(config.get("data_dir"), (str, type(None))):
        raise UserError(f"{where} is malformed: data_dir is {config.get('data_dir')!r:.40}, not a folder name")
    for run in plan.runs:
        try:
            tc = run.train_config()
        except TypeError as e:
            raise UserError(f"{where} is malformed: run {run.dir} has settings that do not read ({e})") from None
        if not (isinstance(tc.dataset, str) and isinstance(tc.dataset_options, dict)):
            raise UserError(f"{where} is malformed: run {run.dir} names no dataset")
        check_config(tc)
    return saved, plan, sal


def check_labels(settings: Sequence[Setting]) -> None:
    """Each setting's results are cached and reported under its label: two settings of one label (eps 0.05 and
    0.0500000001 both read eps0.05) would share a cache and a row, so they are refused."""
    labels = [s.label for s in settings]
    same = sorted({label for label in labels if labels.count(label) > 1})
    if same:
        raise UserError(
            f"two settings would share the label {same[0]}; give values that differ in their first 6 digits"
        )


# ---- measuring ------------------------------------------------------------------------------------------------
@dataclass
class _Loaded:
    """Clean training splits loaded once per dataset, shared by every run of the bench."""

    data_dir: str | None
    cache: dict[str, Any] = field(default_factory=dict)

    def clean(self, tc):
        from ..data import load

        key = json.dumps([tc.dataset, tc.dataset_options], sort_keys=True, default=str)
        if key not in self.cache:
            self.cache[key] = load(tc.dataset, self.data_dir, "train", **tc.dataset_options)
        return self.cache[key]


def snapshots(
    bench_dir: Path,
    run: RunSpec,
    setting: Setting,
    sal: dict[str, Any],
    loaded: _Loaded,
    device: str = "auto",
    epochs: Sequence[int] | None = None,
    estimator: dict[str, Any] | None = None,
) -> Iterator[tuple[int, Callable[[], dict[str, Any]]]]:
    """Each kept snapshot of one run (or those of `epochs`) as (epoch, measure): `measure()` loads the snapshot's
    weights and returns its SAL record under `setting`, with the run's own probe data and seed. Nothing is measured
    until it is called, so a caller can skip the snapshots it has cached. `estimator`: other fast-mode options of
    the SALConfig (step_rule, crossfit, anchor, augment, rescore) than the bench's."""
    from ..core.runtime import resolve_device
    from ..training.trainer import EpochContext, build_defense, build_model, place_model, training_set
    from .bench.run import SALSettings, sal_probe_for

    folder = bench_dir / run.dir
    kept = kept_weights(folder)
    if not kept:
        raise UserError(
            f"{folder} kept no weights; run the bench with --keep-weights (into a new folder, or with "
            "--overwrite: cached runs are not trained again)"
        )
    try:
        history = {int(r["epoch"]): r for r in read_metrics(folder)}
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{folder}/metrics.jsonl is damaged: a record without a whole-number epoch") from None
    tc = run.train_config()
    tc = replace(tc, data_dir=loaded.data_dir, poison=str(bench_dir / run.poison) if run.poison else None)
    train_set = training_set(tc, loaded.clean(tc))
    defense = build_defense(tc)
    if defense is not None:
        train_set = defense.prepare(train_set)
    dev = resolve_device(device)
    model = place_model(build_model(tc, train_set), tc, dev).eval()
    recipe = tc.resolved_recipe()
    # the bench's own probe, with this setting's mode, radius, rounds and subset (every kept epoch is probed)
    bench_sal = SALSettings.from_record(sal)
    changed = replace(setting.applied_to(bench_sal), every=1, **(estimator or {}))
    probe = sal_probe_for(changed, recipe.augment)

    def measure(epoch: int) -> dict[str, Any]:
        try:  # copied into the placed model's own tensors
            model.load_state_dict(load_weights(folder, epoch))
        except RuntimeError as e:  # missing, unexpected or wrongly shaped tensors: not this run's model
            detail = " ".join(str(e).split())[:160]
            raise UserError(
                f"{weights_file(folder, epoch)} does not fit the run's model ({detail}); remove it"
            ) from None
        ctx = EpochContext(
            epoch,
            model,
            train_set,
            train_set,
            dev,
            contextlib.nullcontext,
            history[epoch],
            tc.seed + setting.repeat * PASS_SEED_STRIDE,
            recipe.batch_size,
            defense,
        )
        return probe(ctx)

    for epoch in kept if epochs is None else epochs:
        if epoch not in history or epoch not in kept:
            raise UserError(f"{folder} kept no weights or no record for epoch {epoch}")
        yield epoch, lambda epoch=epoch: measure(epoch)


def measure_run(
    bench_dir: Path,
    run: RunSpec,
    setting: Setting,
    sal: dict[str, Any],
    loaded: _Loaded,
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """SAL of one run's kept weights under one setting: {"epochs": {epoch: SAL record}, "seconds": ...}."""
    out: dict[str, Any] = {}
    start = time.perf_counter()
    for epoch, measure in snapshots(bench_dir, run, setting, sal, loaded, device):
        out[str(epoch)] = measure()
        if progress:
            progress(f"{run.dir} epoch {epoch}")
    return {"setting": asdict(setting), "run": run.dir, "epochs": out, "seconds": time.perf_counter() - start}


def finished_runs(bench_dir: Path, runs: Sequence[RunSpec]) -> list[RunSpec]:
    return [r for r in runs if (bench_dir / r.dir / SUMMARY).exists()]


def run_sweep(
    bench_dir: str | Path,
    settings: Sequence[Setting] | None = None,
    *,
    eps: Sequence[float] = (),
    rounds: Sequence[int] = (),
    modes: Sequence[str] = (),
    repeats: int = 1,
    beta_from: Sequence[str | Path] = (),
    data_dir: str | None = None,
    device: str = "auto",
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Measure every finished run of the bench under every setting (cached), then summarise; writes sweep.json
    and sweep.md into the bench folder and returns the summary."""
    bench_dir = Path(bench_dir)
    saved, plan, sal = bench_record(bench_dir)
    reference = reference_setting(sal)
    settings = list(settings) if settings is not None else grid(reference, eps, rounds, modes, repeats)
    settings = [reference, *(s for s in settings if s != reference)]  # the summary compares with settings[0]
    settings += [s.first_pass for s in settings if s.first_pass not in settings]  # a repeat is read against it
    check_labels(settings)
    foreign = [_foreign_betas(Path(b)) for b in beta_from]  # unreadable benches fail before any measuring
    runs = finished_runs(bench_dir, plan.runs)
    if not any(r.attack == CLEAN for r in runs):
        raise UserError(f"{bench_dir} has no finished clean run: UD needs one")
    say = log or (lambda _m: None)
    loaded = _Loaded(data_dir if data_dir is not None else saved["config"].get("data_dir"))
    measured: dict[str, dict[str, Any]] = {}
    with FolderLock(bench_dir):
        for s in settings:
            measured[s.label] = {}
            for run in runs:
                path = bench_dir / SWEEP_DIR / s.label / f"{Path(run.dir).name}.json"
                if path.exists():
                    measured[s.label][run.dir] = read_json(path)
                    continue
                say(f"sal-sweep {s.label}: {run.dir}")
                result = measure_run(bench_dir, run, s, sal, loaded, device)
                atomic_write_json(path, result)
                measured[s.label][run.dir] = result
        summary = summarise(bench_dir, runs, settings, measured, foreign)
        atomic_write_json(bench_dir / SWEEP_JSON, summary)
        atomic_write_text(bench_dir / SWEEP_MD, sweep_markdown(summary))
    return summary


# ---- summarising ----------------------------------------------------------------------------------------------
def _records(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"epoch": int(e), **rec} for e, rec in sorted(result["epochs"].items(), key=lambda kv: int(kv[0]))]


def _groups(runs: Sequence[RunSpec]) -> dict[tuple[str, int], tuple[RunSpec, list[RunSpec]]]:
    """(defense, seed) -> (its clean run, its poisoned runs)."""
    out: dict[tuple[str, int], tuple[RunSpec, list[RunSpec]]] = {}
    for r in runs:
        if r.attack == CLEAN:
            out[(r.defense, r.seed)] = (
                r,
                [p for p in runs if p.attack != CLEAN and (p.defense, p.seed) == (r.defense, r.seed)],
            )
    return out


def _uds(
    matrices: dict[str, np.ndarray], groups, beta: dict[tuple[str, int], float] | None = None
) -> dict[str, float | None]:
    """UD of every poisoned run against its (defense, seed)'s clean run."""
    out = {}
    for key, (clean, poisoned) in groups.items():
        for p in poisoned:
            out[p.dir] = ud_if_defined(matrices[p.dir], matrices[clean.dir], None if beta is None else beta.get(key))
    return out


def _attack_means(uds: dict[str, float | None], runs: Sequence[RunSpec]) -> dict[str, float]:
    """Mean UD per attack over seeds, without defense (the rows a ranking compares)."""
    per: dict[str, list[float]] = {}
    for r in runs:
        if r.attack != CLEAN and r.defense == NO_DEFENSE and uds.get(r.dir) is not None:
            per.setdefault(r.attack, []).append(uds[r.dir])
    return {a: float(np.mean(v)) for a, v in per.items()}


def summarise(
    bench_dir: Path, runs: Sequence[RunSpec], settings: Sequence[Setting], measured, foreign
) -> dict[str, Any]:
    reference = settings[0]
    groups = _groups(runs)
    layers = None
    table: dict[str, Any] = {"reference": reference.label, "settings": {}}
    matrices: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for s in settings:
        for origin in ORIGINS:
            m = {}
            for r in runs:
                recs = _records(measured[s.label][r.dir])
                a, names, _ = sal_matrix(recs, layers, where=f"sweep {s.label} {r.dir}", key=f"sal_{origin}")
                layers = layers or names
                m[r.dir] = a
            matrices[(s.label, origin)] = m
    recorded = {r.dir: read_metrics(bench_dir / r.dir) for r in runs}
    for s in settings:
        entry: dict[str, Any] = {
            "setting": asdict(s),
            "seconds": sum(measured[s.label][r.dir]["seconds"] for r in runs),
            "origins": {},
        }
        for origin in ORIGINS:
            m, ref = matrices[(s.label, origin)], matrices[(reference.label, origin)]
            uds, ref_uds = _uds(m, groups), _uds(ref, groups)
            means, ref_means = _attack_means(uds, runs), _attack_means(ref_uds, runs)
            common = sorted(set(means) & set(ref_means))
            o = {
                "ud": uds,
                "ud_by_attack": means,
                "tau_vs_reference": kendall_tau([means[a] for a in common], [ref_means[a] for a in common]),
                **_agreement(m, ref, uds, ref_uds, "reference"),
            }
            if s.repeat:  # the same setting's first pass: how far does the setting agree with itself?
                first = matrices[(s.first_pass.label, origin)]
                o.update(_agreement(m, first, uds, _uds(first, groups), "first_pass"))
            entry["origins"][origin] = o
        table["settings"][s.label] = entry
    # the reference measured again against what the bench recorded: is the remeasurement exact?
    gaps = []
    for r in runs:
        rec = {int(h["epoch"]): h for h in recorded[r.dir] if isinstance(h.get("sal"), dict)}
        for e, again in measured[reference.label][r.dir]["epochs"].items():
            if int(e) in rec:
                gaps += [abs(again["sal"][k] - rec[int(e)]["sal"][k]) for k in again["sal"] if k in rec[int(e)]["sal"]]
    table["reference_max_abs_diff_from_recorded"] = max(gaps) if gaps else None
    table["beta_transfer"] = _beta_transfer(runs, groups, matrices, reference, foreign)
    return table


def _agreement(m, ref, uds, ref_uds, against: str) -> dict[str, float | None]:
    """How two measurements of the same snapshots agree: the largest |UD difference| of a poisoned run, and the
    per-snapshot Spearman rho of the layers' SAL (mean and worst), and the ratio of their mean SAL (a level bias:
    above 1, `m` reads higher than `ref`; a ratio of means, so that cells near 0 do not dominate it)."""
    diffs = [abs(uds[k] - ref_uds[k]) for k in uds if uds[k] is not None and ref_uds.get(k) is not None]
    snapshots = [(m[r][i], ref[r][i]) for r in m for i in range(min(len(m[r]), len(ref[r])))]  # (layers, layers)
    rhos = [x for a, b in snapshots if (x := spearman_rho(list(a), list(b))) is not None]
    level = np.array([(np.sum(a), np.sum(b)) for a, b in snapshots]).reshape(-1, 2).sum(axis=0)
    return {
        f"max_abs_ud_change_vs_{against}": max(diffs) if diffs else None,
        f"layer_rho_vs_{against}": float(np.mean(rhos)) if rhos else None,
        f"layer_rho_min_vs_{against}": float(np.min(rhos)) if rhos else None,
        f"sal_ratio_vs_{against}": float(level[0] / level[1]) if level[1] > 0 else None,
    }


def _foreign_betas(bench: Path) -> dict[str, Any]:
    """beta of another bench's clean runs (seed by seed, no defense), from the SAL its runs recorded."""
    saved, plan = read_bench(bench)
    out: dict[str, Any] = {
        "bench": str(bench),
        "dataset": saved["config"].get("dataset"),
        "sal": saved["config"]["sal"],
        "beta": {},
    }
    for r in finished_runs(bench, plan.runs):
        if r.attack == CLEAN and r.defense == NO_DEFENSE:
            recs = read_metrics(bench / r.dir)
            out["beta"][str(r.seed)] = {
                o: learnable_threshold(sal_matrix(recs, key=f"sal_{o}", where=str(bench / r.dir))[0]) for o in ORIGINS
            }
    if not out["beta"]:
        raise UserError(f"{bench} has no finished clean run to take beta from")
    return out


def _beta_transfer(
    runs, groups, matrices, reference: Setting, foreign: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """UD of this bench's runs (at the reference setting) under each foreign clean run's beta (its mean over seeds)."""
    out = []
    for f in foreign:
        entry = {"bench": f["bench"], "dataset": f["dataset"], "origins": {}}
        for origin in ORIGINS:
            beta = float(np.mean([b[origin] for b in f["beta"].values()]))
            m = matrices[(reference.label, origin)]
            own = _attack_means(_uds(m, groups), runs)
            moved = _attack_means(_uds(m, groups, {k: beta for k in groups}), runs)
            own_beta = float(np.mean([learnable_threshold(m[c.dir]) for c, _ in groups.values()]))
            entry["origins"][origin] = {
                "beta": beta,
                "own_beta": own_beta,
                "ud_own": own,
                "ud_transferred": moved,
                "tau": kendall_tau(
                    [own[a] for a in sorted(set(own) & set(moved))], [moved[a] for a in sorted(set(own) & set(moved))]
                ),
            }
        out.append(entry)
    return out


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def sweep_markdown(summary: dict[str, Any]) -> str:
    settings = summary["settings"]
    attacks = sorted({a for s in settings.values() for o in s["origins"].values() for a in o["ud_by_attack"]})
    lines = [
        f"# SAL sweep (reference {summary['reference']})",
        "",
        "Reference measured again vs recorded: largest |SAL difference| "
        f"{_fmt(summary['reference_max_abs_diff_from_recorded'], 3)}",
        "",
    ]
    for origin in ORIGINS:
        lines += [
            f"## origin {origin}",
            "",
            "| setting | seconds | "
            + " | ".join(f"UD {a}" for a in attacks)
            + (
                " | tau vs ref | max abs dUD | layer rho (min) | SAL / ref"
                " | rho vs pass 1 (min) | max abs dUD vs pass 1 |"
            ),
            "|---|---|" + "---|" * len(attacks) + "---|---|---|---|---|---|",
        ]
        for label, s in settings.items():
            o = s["origins"][origin]
            lines.append(
                f"| {label} | {s['seconds']:.0f} | "
                + " | ".join(_fmt(o["ud_by_attack"].get(a)) for a in attacks)
                + f" | {_fmt(o['tau_vs_reference'])} | {_fmt(o['max_abs_ud_change_vs_reference'])}"
                + f" | {_fmt(o['layer_rho_vs_reference'])} ({_fmt(o['layer_rho_min_vs_reference'])})"
                + f" | {_fmt(o['sal_ratio_vs_reference'])}"
                + f" | {_fmt(o.get('layer_rho_vs_first_pass'))} ({_fmt(o.get('layer_rho_min_vs_first_pass'))})"
                + f" | {_fmt(o.get('max_abs_ud_change_vs_first_pass'))} |"
            )
        lines.append("")
    for t in summary["beta_transfer"]:
        lines += [
            f"## beta from {t['bench']} ({t['dataset']})",
            "",
            "| origin | beta (own) | " + " | ".join(f"UD {a}" for a in attacks) + " | tau |",
            "|---|---|" + "---|" * len(attacks) + "---|",
        ]
        for origin, o in t["origins"].items():
            cells = [f"{_fmt(o['ud_own'].get(a))} -> {_fmt(o['ud_transferred'].get(a))}" for a in attacks]
            lines.append(
                f"| {origin} | {o['beta']:.3f} ({o['own_beta']:.3f}) | " + " | ".join(cells) + f" | {_fmt(o['tau'])} |"
            )
        lines.append("")
    return "\n".join(lines)
