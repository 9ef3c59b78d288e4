"""Fast SAL against the paper's (faithful) SAL on real poisons: does the affordable metric agree with the reference?

A `cpu`-regime bench (the clean run and the seven attacks at their `fast` presets) on a subset of the real CIFAR-10
in ../shared/data keeps the weights of every probed epoch. On every snapshot this script measures:
- faithful SAL twice (pass 1 and pass 2: the paper's procedure, 10 rounds, eps 0.05, the bench's whole training set
  augmented as it trained; pass 2 draws its data order afresh), so faithful's own noise floor is known;
- fast SAL at the bench's subset and rounds with today's estimator (its step rule and corrections, the defaults of
  uebench.metrics.SALConfig unless --fast-option says otherwise; recomputed each time: seconds per snapshot).

Per run and origin (running, eval) it writes `ud_fast`, `ud_faithful`, `ud_faithful_2` (each against the clean run
measured the same way), the per-snapshot layer Spearman rho of fast against faithful and of faithful against
faithful (mean, worst), the ratio of mean SAL levels (fast / faithful), and the cost of each, to
benchmarks/results/fast_vs_faithful.json, and checks the bar of issue 27:

    |UD_fast - UD_faithful| <= max(0.1, |UD_faithful_2 - UD_faithful|)   and   rho(fast, faithful) >= rho(f, f) - 0.1

Faithful costs minutes per snapshot, so each snapshot's result is cached as soon as it is measured, in a small
committed file under benchmarks/results/fast_vs_faithful/<bench>/, named by the snapshot's sha256: the study resumes
where it stopped on a fresh checkout whose bench reproduces the same weights (same machine kind and thread count:
the bench is retrained, which takes minutes). A snapshot the machine trains differently gets files of its own;
nothing measured is deleted or mixed. Workers started at any time share the faithful passes (each claims a pass
before measuring it); `--shard I/N` splits them by plan instead, e.g. between machines.

    python benchmarks/fast_vs_faithful.py --data-dir ../shared/data                 # everything, resumable
    python benchmarks/fast_vs_faithful.py --phase faithful --follow &   # more workers, as cores allow
    python benchmarks/fast_vs_faithful.py --data-dir ../shared/data --phase report   # the table from what is cached
    python benchmarks/fast_vs_faithful.py --phase report --fast-subset 512 --fast-rounds 5 --out /tmp/variant.json
                                                      # another fast setting against the same cached faithful passes
    bash benchmarks/fast_vs_faithful_gpu.sh                                          # the full size, on a GPU
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uebench.core.errors import UserError
from uebench.core.io import atomic_write_json, atomic_write_text, read_json
from uebench.experiments.bench.run import CLEAN, preset, run_bench
from uebench.experiments.sweep import FAITHFUL_ROUNDS, Setting, _Loaded, finished_runs, snapshots
from uebench.metrics.ranking import spearman_rho
from uebench.metrics.sal_config import SALConfig
from uebench.metrics.threshold import learnable_threshold
from uebench.metrics.ud import sal_matrix, ud_if_defined
from uebench.training.bench_folder import read_bench
from uebench.training.records import kept_weights, weights_file

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ORIGINS = ("running", "eval")
PASSES = (1, 2)  # the bar's two passes; --passes adds more (faithful's noise floor measured with more seeds)
MAX_PASSES = 9
# the fast estimator's options --fast-option sets
ESTIMATOR_OPTIONS = ("step_rule", "crossfit", "anchor", "augment", "rescore")


def bench_config(subset: int, data_dir: str, device: str):
    """The `cpu` preset on `subset` images, weights kept (the preset keeps them)."""
    return replace(preset("cpu"), subset=subset, data_dir=data_dir, device=device, keep_weights=True)


def snapshot_sha(run_dir: Path, epoch: int) -> str:
    return hashlib.sha256(weights_file(run_dir, epoch).read_bytes()).hexdigest()


def cache_dir(results: Path, subset: int) -> Path:
    return results / "fast_vs_faithful" / f"cpu-n{subset}"


def study_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """What decides the snapshots' weights and the faithful passes: the bench's identity without the device and
    without the fast estimator's options (its step rule and corrections change no weight and no faithful pass)."""
    out = json.loads(json.dumps({k: v for k, v in identity.items() if k != "device"}))
    out["sal"] = {k: v for k, v in out.get("sal", {}).items() if k not in ESTIMATOR_OPTIONS or k == "augment"}
    return out


def check_cache(folder: Path, identity: dict[str, Any]) -> None:
    """A cache belongs to one bench configuration: another one's cache is refused, not mixed."""
    path = folder / "study.json"
    if path.exists():
        saved = read_json(path)
        if study_identity(saved.get("identity") or {}) != study_identity(identity):
            raise UserError(
                f"{folder} caches another bench's snapshots (its study.json differs); use another --results"
            )
    else:
        atomic_write_json(path, {"identity": identity, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def run_label(run) -> str:
    return f"{run.attack}-s{run.seed}"


def faithful_setting(k: int) -> Setting:
    return Setting("faithful", 0.05, FAITHFUL_ROUNDS, repeat=k - 1)


def fast_setting(sal: dict[str, Any], subset: int | None = None, rounds: int | None = None, repeat: int = 0) -> Setting:
    """Fast SAL at the bench's settings, or with another subset, number of rounds or subset draw (the report's
    --fast-*)."""
    rounds = int(sal["rounds"]) if rounds is None else rounds
    return Setting("fast", float(sal["eps"]), rounds, int(sal["subset"]) if subset is None else subset, repeat)


def record_of(rec: dict[str, Any], seconds: float) -> dict[str, Any]:
    """What the study keeps of a SAL record: both origins' per-layer SAL and L0, the settings, the cost."""
    keep = ("sal_eval", "sal_running", "sal_l0_eval", "sal_l0_running", "sal_settings", "sal_mode")
    return {**{k: rec[k] for k in keep if k in rec}, "seconds": seconds}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__}


def claim(path: Path) -> bool:
    """Take a snapshot pass for this process (a `.claim` file holding its pid), unless a live process holds it:
    workers started at any time share the work without a plan, and a killed worker's claims are taken over."""
    mark = path.with_suffix(".claim")
    mark.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                os.kill(int(mark.read_text() or "0"), 0)
                return False  # a live worker has it
            except (ProcessLookupError, ValueError):
                mark.unlink(missing_ok=True)  # its worker is gone
                continue
            except (PermissionError, FileNotFoundError):
                return False
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def faithful_jobs(
    bench: Path, passes: tuple[int, ...] = PASSES, runs: tuple[str, ...] | None = None
) -> tuple[list[tuple[Any, int, int]], bool]:
    """Every (run, epoch, pass) of the finished runs (those labelled in `runs`, or all), and whether every run of
    the plan is finished."""
    _, plan = read_bench(bench)
    done = finished_runs(bench, plan.runs)
    bare = [run.dir for run in done if not kept_weights(bench / run.dir)]
    if bare:
        raise UserError(f"{bench / bare[0]} kept no weights: the study needs a bench run with --keep-weights")
    if runs is not None:
        unknown = sorted(set(runs) - {run_label(r) for r in plan.runs})
        if unknown:
            raise UserError(f"--runs names no run of this bench: {', '.join(unknown)}")
        done = [run for run in done if run_label(run) in runs]
    jobs = [(run, epoch, k) for run in done for epoch in kept_weights(bench / run.dir) for k in passes]
    return jobs, len(done) == len(plan.runs) or runs is not None


def faithful_phase(
    bench: Path,
    folder: Path,
    loaded: _Loaded,
    device: str,
    shard: tuple[int, int],
    follow: bool,
    passes: tuple[int, ...] = PASSES,
    runs: tuple[str, ...] | None = None,
):
    saved, _ = read_bench(bench)
    sal = saved["config"]["sal"]
    while True:
        jobs, complete = faithful_jobs(bench, passes, runs)
        mine = [j for i, j in enumerate(jobs) if i % shard[1] == shard[0]]
        print(f"faithful: {len(jobs)} snapshot passes so far, {len(mine)} in shard {shard[0]}/{shard[1]}", flush=True)
        for run, epoch, k in mine:
            sha = snapshot_sha(bench / run.dir, epoch)
            path = folder / run_label(run) / f"e{epoch:03d}-pass{k}-{sha[:16]}.json"
            if path.exists() or not claim(path):
                continue
            try:
                start = time.perf_counter()
                setting = faithful_setting(k)
                (_, measure), *_ = snapshots(bench, run, setting, sal, loaded, device, [epoch])
                rec = record_of(measure(), time.perf_counter() - start)
                # fast on the same snapshot in the same process, right after: the cost ratio under one load
                start = time.perf_counter()
                (_, fast), *_ = snapshots(bench, run, fast_setting(sal), sal, loaded, device, [epoch])
                fast()
                rec["fast_seconds_same_process"] = time.perf_counter() - start
                atomic_write_json(path, {**rec, "run": run.dir, "epoch": epoch, "pass": k, "sha256": sha, **machine()})
                print(f"  {run_label(run)} epoch {epoch} pass {k}: {rec['seconds']:.0f} s", flush=True)
            finally:
                path.with_suffix(".claim").unlink(missing_ok=True)
        if complete or not follow:
            return
        time.sleep(60)  # the bench is still training: its next runs join the list


def fast_records(
    bench: Path,
    run,
    sal: dict[str, Any],
    loaded: _Loaded,
    device: str,
    setting: Setting,
    estimator: dict[str, Any] | None = None,
) -> dict[int, dict[str, Any]]:
    out = {}
    for epoch, measure in snapshots(bench, run, setting, sal, loaded, device, estimator=estimator):
        start = time.perf_counter()
        out[epoch] = record_of(measure(), 0.0)
        out[epoch]["seconds"] = time.perf_counter() - start
    return out


def matrix(records: dict[int, dict[str, Any]], origin: str, layers=None) -> np.ndarray:
    recs = [{"epoch": e, **r} for e, r in sorted(records.items())]
    return sal_matrix(recs, layers, key=f"sal_{origin}", where="fast_vs_faithful")[0]


def rhos(a: np.ndarray, b: np.ndarray) -> list[float]:
    return [x for i in range(len(a)) if (x := spearman_rho(list(a[i]), list(b[i]))) is not None]


def report_phase(
    bench: Path,
    folder: Path,
    loaded: _Loaded,
    device: str,
    out_json: Path,
    fast: Setting | None = None,
    estimator: dict[str, Any] | None = None,
    only: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    saved, plan = read_bench(bench)
    sal = saved["config"]["sal"]
    fast = fast or fast_setting(sal)
    runs = finished_runs(bench, plan.runs)
    if only:  # a variant tried on a few runs; the clean run stays, every UD needs it
        runs = [r for r in runs if r.attack == CLEAN or run_label(r) in only]
    measured: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}  # run -> estimator -> epoch -> record
    missing = 0
    for run in runs:
        per: dict[str, dict[int, dict[str, Any]]] = {}
        epochs = kept_weights(bench / run.dir)
        for k in range(1, MAX_PASSES + 1):
            name = pass_name(k)
            per[name] = {}
            for epoch in epochs:
                sha = snapshot_sha(bench / run.dir, epoch)
                path = folder / run_label(run) / f"e{epoch:03d}-pass{k}-{sha[:16]}.json"
                if path.exists():
                    per[name][epoch] = read_json(path)
                elif k in PASSES:
                    missing += 1
            if k not in PASSES and len(per[name]) < len(epochs):
                del per[name]  # an extra pass counts only where it covers every snapshot
        done = all(len(per[pass_name(k)]) == len(epochs) for k in PASSES)
        # only where it can be read
        per["fast"] = fast_records(bench, run, sal, loaded, device, fast, estimator) if done else {}
        measured[run_label(run)] = per
    clean = next((run_label(r) for r in runs if r.attack == CLEAN), None)
    complete = missing == 0 and clean is not None
    table: dict[str, Any] = {
        "bench": saved["identity"],
        "complete": complete,
        "snapshot_passes_missing": missing,
        "fast_setting": {
            "subset": fast.subset,
            "rounds": fast.rounds,
            "eps": fast.eps,
            **({"draw": fast.repeat} if fast.repeat else {}),
            **(estimator or {}),
        },
        "bar": "|UD_fast - UD_faithful| <= max(0.1, |UD_faithful_2 - UD_faithful|) and "
        "rho_fast_faithful_mean >= rho_faithful_faithful_mean - 0.1, per run and origin",
        "runs": {},
    }
    estimators = ("fast", "faithful", "faithful_2")
    full = {
        label: bool(per["fast"]) and all(len(per[e]) == len(per["fast"]) for e in estimators)
        for label, per in measured.items()
    }  # every snapshot of the run measured by every estimator
    for label, per in measured.items():
        if not full[label]:
            continue
        entry: dict[str, Any] = {"snapshots": len(per["fast"]), "origins": {}}
        for e in estimators:
            entry[f"seconds_{e}_per_snapshot"] = float(np.mean([r["seconds"] for r in per[e].values()]))
        entry["speedup_fast"] = entry["seconds_faithful_per_snapshot"] / entry["seconds_fast_per_snapshot"]
        paired = [r["fast_seconds_same_process"] for r in per["faithful"].values() if "fast_seconds_same_process" in r]
        if len(paired) == len(per["faithful"]):  # both timed in one process under one load: the ratio to quote
            faithful_s = [r["seconds"] for r in per["faithful"].values()]
            entry["speedup_fast_same_process"] = float(np.sum(faithful_s) / np.sum(paired))
        else:
            entry["speedup_fast_same_process"] = None  # passes measured before the workers timed fast beside them
        for origin in ORIGINS:
            m = {e: matrix(per[e], origin) for e in estimators}
            o: dict[str, Any] = {
                "rho_fast_faithful_mean": _mean(rhos(m["fast"], m["faithful"])),
                "rho_fast_faithful_min": _min(rhos(m["fast"], m["faithful"])),
                "rho_faithful_faithful_mean": _mean(rhos(m["faithful_2"], m["faithful"])),
                "rho_faithful_faithful_min": _min(rhos(m["faithful_2"], m["faithful"])),
                "level_ratio": float(m["fast"].mean() / m["faithful"].mean()) if m["faithful"].mean() > 0 else None,
                "level_ratio_faithful_2": float(m["faithful_2"].mean() / m["faithful"].mean())
                if m["faithful"].mean() > 0
                else None,
            }
            if clean is not None and full.get(clean):
                c = {e: matrix(measured[clean][e], origin) for e in estimators}
                for e, key in zip(estimators, ("ud_fast", "ud_faithful", "ud_faithful_2")):
                    o[key] = ud_if_defined(m[e], c[e])
                    o[f"beta_{e}"] = learnable_threshold(c[e])
                o["meets_bar"] = _bar(o)
                # how fragile the UD is: the faithful cells within 5% of beta (one cell moves UD by 1 / clean's
                # count), and fast's UD with each run's mean level matched to faithful's (the shape kept, the level
                # error removed): a diagnostic of what fast gets wrong, which needs faithful, so never a product
                b = o["beta_faithful"]
                o["cells_near_beta_faithful"] = int((np.abs(m["faithful"] - b) < 0.05 * b).sum())
                o["lp_clean_faithful"] = int((c["faithful"] > b).sum())
                level_c = c["fast"].mean() / c["faithful"].mean() if c["faithful"].mean() > 0 else None
                if o["level_ratio"] and level_c:
                    o["ud_fast_level_matched"] = ud_if_defined(m["fast"] / o["level_ratio"], c["fast"] / level_c)
                    o["meets_bar_level_matched"] = _bar({**o, "ud_fast": o["ud_fast_level_matched"]})
                extra = [k for k in range(3, MAX_PASSES + 1) if pass_name(k) in per and pass_name(k) in measured[clean]]
                if extra:  # more seeds: faithful's own spread, and the bar with the widest of them as its noise term
                    uds = [o["ud_faithful"], o["ud_faithful_2"]]
                    for k in extra:
                        uds.append(
                            ud_if_defined(
                                matrix(per[pass_name(k)], origin), matrix(measured[clean][pass_name(k)], origin)
                            )
                        )
                    o["ud_faithful_passes"] = uds
                    o["meets_bar_all_passes"] = _bar(o, uds[1:])
            entry["origins"][origin] = o
        table["runs"][label] = entry
    table["all_meet_bar"] = (
        all(o.get("meets_bar") is True for r in table["runs"].values() for o in r["origins"].values())
        if complete
        else None
    )
    table["machine"] = machine()
    atomic_write_json(out_json, table)
    atomic_write_text(out_json.with_suffix(".md"), markdown(table))
    return table


def pass_name(k: int) -> str:
    return "faithful" if k == 1 else f"faithful_{k}"


def _bar(o: dict[str, Any], others: list[float | None] | None = None) -> bool | None:
    """The issue's bar; `others` (default: pass 2 alone) are the faithful passes whose widest distance from pass 1
    is faithful's noise term."""
    others = [o.get("ud_faithful_2")] if others is None else others
    if None in (o.get("ud_fast"), o.get("ud_faithful"), *others):
        return None
    noise = max(abs(u - o["ud_faithful"]) for u in others)
    ud_ok = abs(o["ud_fast"] - o["ud_faithful"]) <= max(0.1, noise)
    if o["rho_fast_faithful_mean"] is None or o["rho_faithful_faithful_mean"] is None:
        return ud_ok
    return ud_ok and o["rho_fast_faithful_mean"] >= o["rho_faithful_faithful_mean"] - 0.1


def _mean(x: list[float]) -> float | None:
    return float(np.mean(x)) if x else None


def _min(x: list[float]) -> float | None:
    return float(np.min(x)) if x else None


def _f(x, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(table: dict[str, Any]) -> str:
    lines = [
        "# Fast SAL against faithful SAL (benchmarks/fast_vs_faithful.py)",
        "",
        f"complete: {table['complete']} (snapshot passes missing: {table['snapshot_passes_missing']}); "
        f"every run meets the bar: {table['all_meet_bar']}",
        "",
        "| run | origin | UD fast | UD faithful | UD faithful 2 | rho fast-faithful (min) "
        "| rho faithful-faithful (min) | level fast/faithful | s fast | s faithful | speed-up (same process) | bar "
        "| UD faithful, every pass | bar, every pass | cells within 5% of beta / clean #LP | UD fast, level matched "
        "| bar, level matched |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in table["runs"].items():
        for origin, o in r["origins"].items():
            lines.append(
                f"| {label} | {origin} | {_f(o.get('ud_fast'))} | {_f(o.get('ud_faithful'))} "
                f"| {_f(o.get('ud_faithful_2'))} "
                f"| {_f(o['rho_fast_faithful_mean'])} ({_f(o['rho_fast_faithful_min'])}) "
                f"| {_f(o['rho_faithful_faithful_mean'])} ({_f(o['rho_faithful_faithful_min'])}) "
                f"| {_f(o['level_ratio'])} | {r['seconds_fast_per_snapshot']:.1f} "
                f"| {r['seconds_faithful_per_snapshot']:.0f} | {r['speedup_fast']:.0f}x "
                f"({_f(r['speedup_fast_same_process'], 0)}{'' if r['speedup_fast_same_process'] is None else 'x'}) "
                f"| {o.get('meets_bar')} "
                f"| {', '.join(_f(u) for u in o['ud_faithful_passes']) if 'ud_faithful_passes' in o else '-'} "
                f"| {o.get('meets_bar_all_passes', '-')} "
                f"| {o.get('cells_near_beta_faithful', '-')} / {o.get('lp_clean_faithful', '-')} "
                f"| {_f(o.get('ud_fast_level_matched'))} | {o.get('meets_bar_level_matched', '-')} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--subset", type=int, default=1000, help="training images of the bench (default 1000)")
    ap.add_argument("--bench", default=None, help="bench folder (default runs/fvf-n<subset>)")
    ap.add_argument("--results", default=str(RESULTS), help="where the cache and the outcome go")
    ap.add_argument("--phase", choices=("all", "bench", "faithful", "report"), default="all")
    ap.add_argument("--shard", default="0/1", help="I/N: this process's share of the faithful passes")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--follow", action="store_true", help="faithful: wait for the bench's runs still training")
    ap.add_argument("--passes", default="1,2", help="faithful: which passes to measure (default 1,2; 3.. = more seeds)")
    ap.add_argument(
        "--runs",
        default=None,
        help="faithful and report: only these runs, e.g. clean-s0,em-s0 (default all; the report keeps the clean run)",
    )
    ap.add_argument("--fast-subset", type=int, default=None, help="report: fast SAL's subset (default: the bench's)")
    ap.add_argument("--fast-rounds", type=int, default=None, help="report: fast SAL's rounds (default: the bench's)")
    ap.add_argument(
        "--fast-draw",
        type=int,
        default=0,
        help="report: another seeded draw of fast SAL's probe subset (default 0, the bench's): fast's own spread",
    )
    ap.add_argument("--out", default=None, help="report: the outcome file (default RESULTS/fast_vs_faithful.json)")
    ap.add_argument(
        "--fast-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="report: another fast-mode option than today's default "
        "(step_rule=full|steps, crossfit=true, anchor, augment, rescore)",
    )
    args = ap.parse_args(argv)
    try:
        i, n = (int(v) for v in args.shard.split("/"))
        if not 0 <= i < n:
            raise ValueError
    except ValueError:
        print(f"error: --shard takes I/N with 0 <= I < N, got {args.shard}", file=sys.stderr)
        return 2
    try:
        passes = tuple(sorted({int(v) for v in args.passes.split(",")}))
        if not passes or not all(1 <= k <= MAX_PASSES for k in passes):
            raise ValueError
    except ValueError:
        print(
            f"error: --passes takes pass numbers 1-{MAX_PASSES} separated by commas, got {args.passes}", file=sys.stderr
        )
        return 2
    runs = tuple(v for v in args.runs.split(",") if v) if args.runs else None
    if not 0 <= args.fast_draw < 100:
        print(f"error: --fast-draw takes 0-99, got {args.fast_draw}", file=sys.stderr)
        return 2
    estimator: dict[str, Any] = {}
    for item in args.fast_option:
        key, sep, value = item.partition("=")
        if not sep or key not in ESTIMATOR_OPTIONS:
            valid = ", ".join(ESTIMATOR_OPTIONS)
            print(f"error: --fast-option takes one of {valid}=VALUE, got {item}", file=sys.stderr)
            return 2
        estimator[key] = {"true": True, "false": False}.get(value.lower(), value)
    try:
        bench = Path(args.bench or ROOT / "runs" / f"fvf-n{args.subset}")
        config = bench_config(args.subset, args.data_dir, args.device)
        results = Path(args.results)
        folder = cache_dir(results, args.subset)
        check_cache(folder, {k: v for k, v in config.identity().items() if k != "device"})
        if args.phase in ("all", "bench"):
            run_bench(config, bench, progress=False)
        if not (bench / "bench.json").exists():
            raise UserError(f"{bench} holds no bench; run --phase bench first")
        saved, _ = read_bench(bench)
        if study_identity(saved["identity"]) != study_identity(config.identity()):
            raise UserError(f"{bench} holds another bench than this study's (--subset {args.subset}, the cpu preset)")
        loaded = _Loaded(args.data_dir)
        if args.phase in ("all", "faithful"):
            faithful_phase(bench, folder, loaded, args.device, (i, n), args.follow, passes, runs)
        if args.phase in ("all", "report"):
            fast = fast_setting(saved["config"]["sal"], args.fast_subset, args.fast_rounds, args.fast_draw)
            out = Path(args.out) if args.out else results / "fast_vs_faithful.json"
            # today's estimator unless --fast-option says otherwise, whatever the bench was probed with
            today = SALConfig()
            estimator = {**{k: getattr(today, k) for k in ESTIMATOR_OPTIONS}, **estimator}
            table = report_phase(bench, folder, loaded, args.device, out, fast, estimator, runs)
            print(markdown(table))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
