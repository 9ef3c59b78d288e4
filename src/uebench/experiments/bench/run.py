"""`uebench bench`: the clean run plus one run per attack (x defense x seed), SAL-probed; then beta, #LP, UD and
the report. Resumable and cached.

    config = PRESETS["quick"]                      # a BenchConfig value
    result = run_bench(config, "runs/quick")       # crafts, trains, probes, writes the report
    run_bench(replace(config, attacks=(*config.attacks, "rem")), "runs/quick")   # computes only what is new

A bench folder:

    bench.json                                     identity (the settings every run shares) + the matrix asked last
    bench.toml                                     the settings of the last call: `uebench bench --config` replays it
    poisons/<attack>-s<seed>-<key>.safetensors     crafted (or copied user) poisons, key = hash of what made them
    runs/<attack>-<defense>-s<seed>-<key>/         run folders (records.RunFolder), key = hash of the run's settings
    samples.safetensors                            a few clean training images, for the sample grid of the report
    results.json results.csv table.md *.png report.html   the report (uebench.report.bench_report)

Every file is written atomically, a poison only once it is complete and checked, a run after every epoch. Killed
at any moment, the same call continues: finished poisons and runs are read back, an unfinished run resumes from its
last finished epoch (train(..., resume=True)), and on CPU the result equals that of an uninterrupted bench.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ...core.errors import UserError, unknown_name
from ...core.io import atomic_write_bytes
from ...core.lock import FolderLock, LockBusy, is_scratch, lock_beside
from ...core.options import MAX_RUNS, MAX_SEEDS
from ...core.progress import Tally
from ...data import recorded_options
from ...metrics.sal_config import SALConfig
from ...training.bench_folder import (  # noqa: F401  (re-exported: bench's public names)
    BENCH_FILE,
    CLEAN,
    NO_DEFENSE,
    POISONS_DIR,
    RUNS_DIR,
    SAMPLES_FILE,
    SCHEMA,
    Plan,
    PoisonSpec,
    RunSpec,
    digest,
    plain_json,
    read_bench,
)
from ...training.records import safe_label
from ...training.sal_probe import SALProbe
from ...training.settings import check_settings
from ...training.shortcut import shortcut_probes
from ..workspace import Workspace
from .config import (  # noqa: F401  (re-exported: bench's public names)
    ADDED_LATER,
    ALL_ATTACKS,
    CPU,
    IMAGENET100,
    INIT_DIR,
    PAPER,
    PRESETS,
    QUICK,
    BenchConfig,
    SALSettings,
    preset,
)
from .config_file import config_text

CONFIG_FILE = "bench.toml"  # the bench's settings as `uebench bench --config FILE` reads them (config_file.py)


# ---- configuration: experiments/bench/config.py ---------------------------------------------------------------
def sal_probe_for(sal: SALConfig, augment: str, keep_weights: bool = False) -> SALProbe:
    """The probe of a bench run: the bench's SAL settings, the data augmented as the run's recipe trains."""
    return SALProbe(sal, augment=augment, keep_weights=keep_weights)


def validate(config: BenchConfig) -> None:
    """Every name and parameter checked before anything is computed (one UserError line each)."""
    from ...attacks import ATTACKS, make_config
    from ...core.runtime import resolve_device, resolve_precision
    from ...defenses import DEFENSES, create_defense

    if len(config.seeds) > MAX_SEEDS:  # before each seed is checked, or a plan of millions of runs is made
        raise UserError(f"--seeds asks for {len(config.seeds):,} seeds; at most {MAX_SEEDS:,} are run in one bench")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise UserError(f"seeds must be distinct, got {list(config.seeds)}")
    check_settings(config, seeds=config.seeds)  # the names, the width, the seeds, the subset and the recipe
    fr = config.poison_fractions
    if (
        not fr
        or len(set(fr)) != len(fr)
        or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1 for f in fr)
    ):
        raise UserError(f"--poison-fraction takes distinct shares in (0, 1], got {', '.join(map(str, fr)) or 'none'}")
    labels = [fraction_label("", f) for f in fr]
    same = [(str(f), label) for f, label in zip(fr, labels) if labels.count(label) > 1]
    if same:  # a run's label shows its share to 6 digits: two shares of one label would make one row vanish
        raise UserError(
            f"--poison-fraction {' and '.join(f for f, _ in same)} would label their runs alike ({same[0][1]}); give "
            "shares that differ in their first 6 digits"
        )
    if config.subset_seed != 0 and config.subset is None and set(config.poison_fractions) == {1.0}:
        raise UserError("--subset-seed draws a --subset or a --poison-fraction; give one of them too")
    resolve_precision(config.precision, resolve_device(config.device))
    if not config.attacks and not config.poisons:
        raise UserError("nothing to bench: give at least one attack or poison file")
    if not isinstance(config.unpaired, bool):
        raise UserError(f"unpaired is true or false, got {config.unpaired!r}")
    if len(set(config.attacks)) != len(config.attacks):
        raise UserError(f"attack listed twice: {', '.join(config.attacks)}")
    for name in config.attacks:
        make_config(ATTACKS.get(name), config.attack_preset, **config.attack_params.get(name, {}))
    for name in config.attack_params:
        if name not in ATTACKS:
            raise unknown_name("attack", name, ATTACKS.names())
    if not config.defenses:
        raise UserError("--defenses is empty; use 'none' for standard training")
    if len(set(config.defenses)) != len(config.defenses):
        raise UserError(f"defense listed twice: {', '.join(config.defenses)}")
    for name in config.defenses:
        if name != NO_DEFENSE and name not in DEFENSES:  # 'none' is a valid name here: the suggestion may be it
            raise unknown_name("defense", name, [NO_DEFENSE, *DEFENSES.names()])
        if name != NO_DEFENSE:
            create_defense(name, **config.defense_params.get(name, {}))
    poisoned = (len(config.attacks) + len(config.poisons)) * len(config.poison_fractions)
    runs = len(config.seeds) * len(config.defenses) * (1 + poisoned)
    if runs > MAX_RUNS:  # refused before the plan is made (and before weeks of training)
        raise UserError(f"the bench would train {runs:,} runs; at most {MAX_RUNS:,} are planned in one bench folder")
    if not isinstance(config.sal, SALConfig):
        raise UserError(f"the bench's SAL settings must be a SALConfig, got {type(config.sal).__name__}")
    config.sal.check_schedule(config.resolved_recipe().epochs)
    from ...training.trainer import check_init_settings

    check_init_settings(config.init_from, config.init_head, config.freeze)
    if config.init_from is not None and not Path(config.init_from).is_file():
        raise UserError(f"--init-from {config.init_from}: no such file")


def validate_on(config: BenchConfig, train_set) -> None:
    """The checks that need the data: each attack's budget and fit to these images, the subset's size."""
    from ...attacks import ATTACKS, make_config

    for name in config.attacks:
        cls = ATTACKS.get(name)
        cls(make_config(cls, config.attack_preset, **config.attack_params.get(name, {}))).validate(train_set)
    if config.subset is not None and config.subset > len(train_set):
        raise UserError(f"subset of {config.subset} asked, but {train_set.name}/train has only {len(train_set)} images")


def poison_spec(config: BenchConfig, attack: str, seed: int) -> PoisonSpec:
    from ...attacks import ATTACKS, make_config
    from ...attacks._crafting import recorded_params

    # a bf16 craft is another poison; an fp32 one records no precision and keeps the key it had before
    params = recorded_params(
        make_config(ATTACKS.get(attack), config.attack_preset, **config.attack_params.get(attack, {}))
    )
    key = digest(
        {
            "attack": attack,
            "preset": config.attack_preset,
            "params": params,
            "seed": seed,
            "dataset": config.dataset,
            "dataset_options": config.dataset_options,
            "subset": config.subset,
            **subset_seed_key(config, seed),
        }
    )
    return PoisonSpec(
        attack, seed, f"{POISONS_DIR}/{attack}-s{seed}-{key}.safetensors", attack=attack, params=plain_json(params)
    )


def own_subset_seed(config: BenchConfig, seed: int, fraction: float = 1.0) -> int | None:
    """The subset seed as a run or a craft of this seed takes it (it draws the subset and a poisoned fraction): None
    where nothing is drawn, or where it equals the seed (the only case that existed before the subset had its own
    seed; such runs and poisons keep their keys)."""
    drawn = config.subset is not None or fraction != 1
    return None if not drawn or config.subset_seed == seed else config.subset_seed


def subset_seed_key(config: BenchConfig, seed: int) -> dict[str, Any]:
    own = own_subset_seed(config, seed)
    return {} if own is None else {"subset_seed": own}


def user_poison_spec(path: str | Path, by_name: bool = False) -> PoisonSpec:
    """A user's poison file, keyed by its bytes (the same file under another name is the same poison), labelled by
    its attack, or by its file name (`by_name`: several files of one attack, e.g. a budget sweep)."""
    from ...core.io import file_sha256
    from ...poisons.poison import Poison

    path = Path(path)
    poison = Poison.load(path)  # UserError if missing or not a poison file
    label = safe_label(path.stem if by_name or not poison.meta.attack else poison.meta.attack)
    return PoisonSpec(
        label, poison.meta.seed, f"{POISONS_DIR}/user-{label}-{file_sha256(path)[:10]}.safetensors", source=str(path)
    )


def fraction_label(label: str, fraction: float) -> str:
    return label if fraction == 1 else f"{label}@{fraction:g}"


def run_spec(
    config: BenchConfig,
    attack: str,
    defense: str,
    seed: int,
    poison: PoisonSpec | None,
    fraction: float = 1.0,
    unpaired: bool = False,
) -> RunSpec:
    from ...training.trainer import TrainConfig

    tc = TrainConfig(
        dataset=config.dataset,
        data_dir=None,
        poison=poison.file if poison else None,
        model=config.model,
        width=config.width,
        recipe=config.recipe,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=seed,
        subset=config.subset,
        subset_seed=own_subset_seed(config, seed, fraction),
        poison_fraction=None if fraction == 1 else float(fraction),
        unpaired=unpaired,  # the poison file's own structure (poison.is_paired_file), confirmed in prepare_bench
        device=config.device,
        precision=config.precision,
        channels_last=config.channels_last,
        dataset_options=dict(config.dataset_options),
        defense=None if defense == NO_DEFENSE else defense,
        defense_params=dict(config.defense_params.get(defense, {})) if defense != NO_DEFENSE else {},
        **init_settings(config),
    )
    # the poison file name carries the poison's own key, so the run key covers what made the poison too; a defense
    # enters with all its settings, defaults included, as an attack's poison does: a default that changes between
    # versions (UEraser's plasma and TrivialAugment, CutMix's box) then makes another run, not a mixed one
    what = {"train": tc.to_dict(), "sal": config.sal.record()}
    if tc.defense is not None:
        from ...defenses import create_defense

        what["defense"] = create_defense(tc.defense, **tc.defense_params).params()
    key = digest(what)
    attack = fraction_label(attack, fraction)
    name = f"{safe_label(attack)}-{safe_label(defense)}-s{seed}-{key}"
    return RunSpec(
        attack, defense, seed, f"{RUNS_DIR}/{name}", poison.file if poison else None, plain_json(tc.fields())
    )


def init_settings(config: BenchConfig) -> dict[str, Any]:
    """A run's pretrained-start settings: the bench's copy of its --init-from file (relative to the folder, named by
    its hash) with the file's sha256, the head rule and the frozen modules; nothing for a bench from scratch (its runs
    keep their keys)."""
    source = config.init_source()
    if source is None:
        return {}
    return {
        "init_from": source["file"],
        "init_sha256": source["sha256"],
        "init_head": config.init_head,
        "freeze": tuple(config.freeze),
    }


def make_plan(config: BenchConfig) -> Plan:
    """Per seed: the clean run under every defense, then each attack's poison and its runs under every defense."""
    user = [user_poison_spec(p) for p in config.poisons]
    shared = [u.label for u in user]
    # files of one attack (a budget sweep) or of a crafted attack's name are told apart by their file names
    user = [
        user_poison_spec(p, by_name=True) if shared.count(u.label) > 1 or u.label in config.attacks else u
        for p, u in zip(config.poisons, user)
    ]
    labels = [*config.attacks, *(u.label for u in user)]
    dupes = sorted({x for x in labels if labels.count(x) > 1} | ({CLEAN} & set(labels)))
    if dupes:
        raise UserError(f"two poisons would share the label {', '.join(dupes)} (rename one; 'clean' is reserved)")
    from ...poisons.poison import is_paired_file

    unpaired = {u.file for p, u in zip(config.poisons, user) if not is_paired_file(p)}
    poisons: list[PoisonSpec] = []
    runs: list[RunSpec] = []
    for seed in config.seeds:
        for defense in config.defenses:
            runs.append(run_spec(config, CLEAN, defense, seed, None))
        for p in [*(poison_spec(config, a, seed) for a in config.attacks), *user]:
            if p not in poisons:
                poisons.append(p)
            for fraction in config.poison_fractions:
                for defense in config.defenses:
                    runs.append(run_spec(config, p.label, defense, seed, p, fraction, p.file in unpaired))
    check_labels(runs)
    return Plan(poisons, runs)


def check_labels(runs: list[RunSpec]) -> None:
    """A run's label (attack@share, defense, seed) is its row in every table and figure: two runs of one label would
    make one of them disappear from the report (shares 0.3 and 0.30000000000000004 both read "@0.3"; a file named
    ops@0.5 beside --poison-fraction 0.5), so a collision is refused wherever it comes from."""
    seen: dict[tuple[str, str, int], RunSpec] = {}
    for r in runs:
        if seen.setdefault((r.attack, r.defense, r.seed), r) is not r:
            raise UserError(
                f"two runs would share the label {r.attack} (defense {r.defense}, seed {r.seed}), and one would vanish "
                "from the tables; give --poison-fraction shares that differ in their first 6 digits, or rename a file"
            )


# ---- the bench folder -------------------------------------------------------------------------------------------
def open_bench(ws: Workspace, config: BenchConfig, plan: Plan, overwrite: bool) -> None:
    """Refuse a folder holding another bench (or other files) unless overwrite; then record this bench."""
    record = {
        "schema": SCHEMA,
        "identity": config.identity(),
        # the dataset options as a record holds them (uebench.data.recorded_options): a scenes bench says its difficulty
        "config": {**config.to_dict(), "dataset_options": recorded_options(config.dataset, config.dataset_options)},
        "plan": plan.to_dict(),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = replay_text(config)
    ws.open(config.identity(), record, overwrite=overwrite, **_folder_terms(ws))
    if text is not None:
        atomic_write_bytes(ws.path(CONFIG_FILE), text.encode())  # `uebench bench --config` replays it
    else:  # no replay file is better than a stale one
        ws.path(CONFIG_FILE).unlink(missing_ok=True)


def replay_text(config: BenchConfig) -> str | None:
    """bench.toml's text, or None (with one warning line) where a setting cannot be written as TOML: a path that is
    not valid UTF-8 (a folder named in Latin-1) is a good bench that no text file can replay."""
    try:
        return config_text(config)
    except UserError as e:
        warnings.warn(f"{e}; the bench runs, without a bench.toml to replay it", stacklevel=2)
        return None


def folder_state(ws: Workspace, config: BenchConfig, overwrite: bool) -> tuple[bool, bytes | None]:
    """What open_bench would do with the folder, touching nothing: (fresh, the record it holds now); refuses as it
    would. Fresh with a record: another bench's folder, which --overwrite replaces (nothing in it is reused)."""
    return ws.opening(config.identity(), overwrite=overwrite, **_folder_terms(ws))


def _folder_terms(ws: Workspace) -> dict[str, Any]:
    return {"owned": lambda: bench_files(ws.root), "identity_of": _identity}


def _identity(saved: dict[str, Any]) -> Any:
    return saved["identity"]


def bench_files(out: Path) -> list[str]:
    """What a bench writes (poisons, runs, report): all a new bench in its folder deletes."""
    from ...report.bench_report import REPORT_FILES, written_figures

    made = [POISONS_DIR, RUNS_DIR, INIT_DIR, *written_figures(out)]
    return [*made, BENCH_FILE, CONFIG_FILE, SAMPLES_FILE, *REPORT_FILES]


# ---- running it -------------------------------------------------------------------------------------------------
@dataclass
class BenchResult:
    out: Path
    complete: bool  # every run finished and the report written
    crafted: list[str] = field(default_factory=list)  # poison files crafted (or copied) by this call
    trained: list[str] = field(default_factory=list)  # run folders that trained at least one epoch in this call
    epochs_trained: int = 0
    report: list[Path] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)  # executors: per run, the epochs before and after


class _Data:
    """The clean splits, loaded once; poisoned training sets made on demand (poison checked against the data)."""

    def __init__(self, config: BenchConfig):
        from ...data import load

        self.config = config
        self.train = load(config.dataset, config.data_dir, "train", **config.dataset_options)
        self.test = load(config.dataset, config.data_dir, "test", **config.dataset_options)

    def subset_for(self, ds, seed: int):
        from ...data import seeded_subset

        # exactly as train.load_data: poison the full split, then take the run's seeded subset
        own = own_subset_seed(self.config, seed)
        return (
            ds
            if self.config.subset is None
            else seeded_subset(ds, self.config.subset, seed=seed if own is None else own)
        )

    def crafting_set(self):
        return self.train


def run_bench(
    config: BenchConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    max_epochs: int | None = None,
    report: bool = True,
    shard: tuple[int, int] | None = None,
    lock_wait: float | None = 120.0,
) -> BenchResult:
    """Craft, train and probe everything the config asks that is not already in `out`, then write the report.

    `max_epochs` stops after training that many epochs in this call (an interruption on purpose: the same call
    again continues). The result says what was computed, so a caller can tell a cached rerun from a fresh one.

    Several processes may work on one folder at once (`shard=(i, n)`: the runs i, i + n, i + 2n, ... of the plan;
    or the whole plan each): a run another process trains is left to it, a poison another process crafts is waited
    for, and whichever process finds every run finished writes the report. The folder's own files (bench.json, the
    samples, the report) are written under the bench's lock, waited for up to `lock_wait` seconds.
    """
    check_shard(shard)
    ws, plan, data = prepare_bench(config, out, overwrite=overwrite, lock_wait=lock_wait)
    return _run(config, ws, plan, data, progress, log, max_epochs, report, shard, lock_wait)


def prepare_bench(
    config: BenchConfig, out: str | Path, *, overwrite: bool = False, lock_wait: float | None = 120.0
) -> tuple[Workspace, Plan, "_Data"]:
    """Everything checked (names, numbers, the data, users' poisons), then the folder taken: bench.json and the
    samples written under the bench's lock. What every executor does first, in the driver."""
    plan, data = check_bench(config)
    ws = Workspace(Path(out), BENCH_FILE, "bench")
    with ws.locked(wait=lock_wait):  # held briefly: the record and the samples are shared by every process here
        open_bench(ws, config, plan, overwrite)
        _write_samples(ws.root, data)
        if (source := config.init_source()) is not None:  # every run reads the bench's own copy of the weights
            ws.copy_in(source["file"], config.init_from)
    return ws, plan, data


def check_bench(config: BenchConfig) -> tuple[Plan, "_Data"]:
    """Every check the bench makes before it takes its folder (names, numbers, the data, users' poisons, the settings
    file it writes); the plan and the loaded data. Reads no folder, writes nothing."""
    validate(config)
    plan = make_plan(config)
    data = _Data(config)  # missing data fails here, before the folder is touched
    validate_on(config, data.train)
    if config.init_from is not None:  # the weights must fit the bench's model before the folder is touched
        from ...training.pretrained import check_freeze, check_init_file
        from ...training.trainer import model_for

        model = model_for(plan.runs[0].train_config(), data.train.shape, data.train.num_classes)
        check_init_file(config.init_from, model, data.train.num_classes, config.init_head)
        check_freeze(model, config.freeze)
    from ...poisons.poison import Poison

    confirmed = False
    for p in plan.poisons:
        if p.source is not None:  # a user's poison must belong to this data (one clear line if not)
            poison = Poison.load(p.source)
            poison.check(data.train, unpaired=config.unpaired)
            if not poison.paired and set(config.poison_fractions) != {1.0}:
                poison.require_paired("--poison-fraction below 1 (a share of the poison mixed with clean images)")
            confirmed |= not poison.paired
    if config.unpaired and not confirmed:
        raise UserError("--unpaired confirms an unpaired --poison file; none of those given is unpaired")
    return plan, data


def check_shard(shard: tuple[int, int] | None) -> None:
    if shard is None:
        return
    i, n = shard
    if not (isinstance(i, int) and isinstance(n, int) and n >= 1 and 0 <= i < n):
        raise UserError(f"a shard is I/N with 0 <= I < N, got {i}/{n}")


def shard_runs(plan: Plan, shard: tuple[int, int] | None) -> list[RunSpec]:
    """The runs one shard trains: every n-th of the plan, from the i-th (the plan's order is deterministic)."""
    return list(plan.runs) if shard is None else list(plan.runs[shard[0] :: shard[1]])


def _finished(out: Path, run: RunSpec) -> bool:
    """A run the bench reads back instead of training (also what `bench --plan` marks cached)."""
    return (out / run.dir / "summary.json").exists()


def poison_made(out: Path, spec: PoisonSpec) -> bool:
    """A poison the bench reads back instead of crafting or copying it (also what `bench --plan` marks cached)."""
    return (out / spec.file).exists()


def run_label(run: RunSpec) -> str:
    return f"{run.attack} / {run.defense} / seed {run.seed}"


def _run(
    config: BenchConfig,
    ws: Workspace,
    plan: Plan,
    data: "_Data",
    progress: bool,
    log: Callable[[str], None] | None,
    max_epochs: int | None,
    report: bool,
    shard: tuple[int, int] | None,
    lock_wait: float | None,
) -> BenchResult:

    out = ws.root
    say = log or (lambda _m: None)
    result = BenchResult(out, complete=False)
    by_file = {p.file: p for p in plan.poisons}
    budget = max_epochs
    t_start = time.perf_counter()
    mine = shard_runs(plan, shard)
    # lines on stderr for a person (and a cluster job's log): run k of N, poison k of M, the time left
    runs = Tally("run", len(mine), progress)
    needed = list(dict.fromkeys(r.poison for r in mine if r.poison is not None))
    poisons, counted = Tally("poison", len(needed), progress, start=runs.start), set()
    pending = [not _finished(out, r) for r in mine]  # what is left to train, as this call found it
    for i, run in enumerate(mine, 1):
        where = f"[{i}/{len(mine)}] {run_label(run)}"
        if _finished(out, run):
            if not progress:  # else the tally's line says it, once
                say(f"{where}: finished earlier ({run.dir})")
            runs.cached(f"{run_label(run)} -> {run.dir}")
            if run.poison is not None and run.poison not in counted:
                counted.add(run.poison)
                poisons.cached(by_file[run.poison].label)
            continue
        if budget is not None and budget <= 0:
            say(f"stopped after {max_epochs} epoch(s) as asked; rerun to continue")
            return result
        runs.begin(f"{run_label(run)} -> {run.dir}", left=sum(pending[i - 1 :]))
        if run.poison is not None:
            spec = by_file[run.poison]
            if run.poison not in counted:
                counted.add(run.poison)
                if poison_made(out, spec):
                    poisons.cached(spec.label)
                else:
                    poisons.begin(spec.label, estimate=False)
            ensure_poison(ws, spec, data, config, progress, say, result.crafted)
        try:
            done, done_after = train_run(ws, run, data, config, progress, say, where, budget)
        except LockBusy:
            say(f"{where}: another process is training it; left to that process")
            continue
        result.trained.append(run.dir)
        result.epochs_trained += done_after - done
        if budget is not None:
            budget -= done_after - done
        if not _finished(out, run):
            say(f"stopped after {max_epochs} epoch(s) as asked; rerun to continue")
            return result
        runs.done()
    finish_bench(ws, plan, result, report, say, lock_wait, t_start)
    return result


def finish_bench(
    ws: Workspace,
    plan: Plan,
    result: BenchResult,
    report: bool,
    say: Callable[[str], None],
    lock_wait: float | None,
    t_start: float,
) -> None:
    """Once every run of the plan is finished (here or by other processes): the report, under the bench's lock."""
    waiting = [r.dir for r in plan.runs if not _finished(ws.root, r)]
    if waiting:
        say(
            f"{len(waiting)} run(s) of this bench are not finished here (other shards or processes): the last process "
            f"to finish writes the report; `uebench report {ws.root}` assembles what has finished"
        )
        return
    result.complete = True
    if report:
        from ...report.bench_report import write_bench_report

        with ws.locked(wait=lock_wait):
            result.report = write_bench_report(ws.root)
        say(f"report written to {ws.root / 'report.html'} ({time.perf_counter() - t_start:.0f} s in this call)")


def train_run(
    ws: Workspace,
    run: RunSpec,
    data: "_Data",
    config: BenchConfig,
    progress: bool,
    say: Callable[[str], None],
    where: str,
    budget: int | None = None,
) -> tuple[int, int]:
    """Train (or resume) one run of the plan under its folder's lock (LockBusy if another process holds it).
    Returns the epochs done before and after."""

    folder = ws.path(run.dir)
    # the trainer holds it too (re-entrant); here it also covers the epoch count
    with ws.holding(FolderLock(folder), config.identity(), _identity):
        done = epochs_done(folder)
        if not progress:  # else the tally's line (run k of N: ... -> folder) says it, once
            say(f"{where}: training" + (f" (resuming after epoch {done})" if done else "") + f" -> {run.dir}")
        elif done:
            say(f"{where}: resuming after epoch {done}")
        return done, _train_one(ws.root, run, data, config, progress, None if budget is None else done + budget)


def epochs_done(folder: Path) -> int:
    from ...training.records import read_run

    return read_run(folder).epochs_done


def ensure_poison(
    ws: Workspace, spec: PoisonSpec, data: _Data, config: BenchConfig, progress: bool, say, crafted: list[str]
) -> None:
    """The poison file of `spec` in the folder: crafted (or copied) here once, under a lock beside it, so a process
    needing it while another makes it waits and then reuses it."""

    with ws.holding(lock_beside(ws.path(spec.file), wait=None), config.identity(), _identity):
        _ensure_poison(ws, spec, data, config, progress, say, crafted)


def _ensure_poison(
    ws: Workspace, spec: PoisonSpec, data: _Data, config: BenchConfig, progress: bool, say, crafted: list[str]
) -> None:
    if poison_made(ws.root, spec):
        return
    if spec.attack is None:  # a user file (checked against this dataset in run_bench): a copy beside the runs
        from ...poisons.poison import Poison

        user = Poison.load(spec.source)
        if user.paired:  # with its PSNR and SSIM measured here, whatever the file says (the same content hash)
            ws.poison(spec.file, lambda: user.with_imperceptibility(data.train))
        else:  # unpaired: no clean originals to measure against
            ws.copy_in(spec.file, spec.source)
        crafted.append(spec.file)
        say(f"poison {spec.label}: copied from {spec.source}")
        return
    from ...attacks import craft

    say(f"crafting {spec.label} (preset {config.attack_preset}, seed {spec.seed}) -> {spec.file}")
    poison, _ = ws.poison(
        spec.file,
        lambda: craft(
            spec.attack,
            data.crafting_set(),
            preset=config.attack_preset,
            seed=spec.seed,
            subset=config.subset,
            subset_seed=own_subset_seed(config, spec.seed),
            progress=progress,
            **config.attack_params.get(spec.attack, {}),
        ),
    )
    crafted.append(spec.file)
    say(
        f"crafted {spec.label} in {poison.meta.craft_seconds:.1f} s "
        f"({poison.meta.epoch_equivalents:.3g} epoch-equivalents)"
    )


def _train_one(
    out: Path, run: RunSpec, data: _Data, config: BenchConfig, progress: bool, stop_after: int | None
) -> int:
    from ...training.trainer import train, training_set

    tc = run.train_config()
    folder = out / run.dir
    # what `uebench train` would train on: the poison (or its poisoned fraction) on the full split, then the subset
    train_set = training_set(replace(tc, poison=str(out / run.poison) if run.poison else None), data.train)
    probes = [sal_probe_for(config.sal, tc.resolved_recipe().augment, config.keep_weights)]
    if run.poison:  # does the model follow the poison or the content? (uebench.training.shortcut)
        clean = training_set(replace(tc, poison=None, poison_fraction=None), data.train)
        probes += shortcut_probes(train_set, clean, seed=run.seed)
    resume = folder.exists() and any(not is_scratch(f) for f in folder.iterdir())
    res = train(
        tc,
        folder,
        train_set=train_set,
        test_set=data.test,
        probes=probes,
        resume=resume,
        progress=progress,
        stop_after=stop_after,
        init_file=out / tc.init_from if tc.init_from else None,  # the bench's copy (prepare_bench)
    )
    return len(res.history)


def _write_samples(out: Path, data: _Data, n: int = 4) -> None:
    """A few clean training images (one per class where possible) for the report's sample grid: the report is
    rebuilt from the folder alone, without the dataset."""
    path = out / SAMPLES_FILE
    if path.exists():
        return
    import torch
    from safetensors.torch import save

    from ...core.io import atomic_write_bytes

    ds = data.subset_for(data.train, data.config.seeds[0])
    picks: list[int] = []
    for c in range(ds.num_classes):
        hit = (ds.labels == c).nonzero().flatten()
        if len(hit):
            picks.append(int(hit[0]))
        if len(picks) == n:
            break
    idx = torch.tensor(picks, dtype=torch.int64)
    atomic_write_bytes(
        path,
        save(
            {
                "images": ds.images[idx].contiguous(),
                "labels": ds.labels[idx].contiguous(),
                "indices": ds.indices[idx].contiguous(),
            },
            metadata={"classes": json.dumps(ds.classes)},
        ),
    )
