"""`uebench ud`: the learnable threshold from a clean run, then #LP and UD of each run (the paper's Table 1)."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "ud", help="#LP and Unlearnable Distance of poisoned runs against a clean run (runs trained with --sal)"
    )
    p.add_argument("--clean", required=True, metavar="RUN", help="run folder of the clean model (gives beta)")
    p.add_argument("--poisoned", required=True, nargs="+", metavar="RUN", help="run folders of poisoned models")
    p.add_argument(
        "--out", default="ud", metavar="FILE_PREFIX", help="writes FILE_PREFIX.json and FILE_PREFIX.csv (default: ud)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace FILE_PREFIX.json/.csv if they exist")
    p.add_argument(
        "--origin", default=None, help="L0 of SAL: the runs' own (default), eval or running (both are recorded)"
    )
    p.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N", help="replicates of UD's interval (default 1000)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="compare runs that differ in data, model, recipe, precision or SAL settings, or against a clean run at "
        "chance (refused otherwise); the output then names what differed",
    )
    p.set_defaults(func=ud_cmd)


COLUMNS = ("run", "final_test_acc", "peak_test_acc", "learned", "lp", "ud", "ud_ci_low", "ud_ci_high", "epochs")


def run_verdict(run_dir: str, reference: float | None = None) -> tuple[str, int | None, int | None]:
    """(learned, classes, test images) of a run folder, from its summary and manifest (metrics.verdict);
    `reference`: the clean run's final test accuracy."""
    from ..core.io import read_json
    from ..metrics.verdict import poison_learned

    folder = Path(run_dir)
    summary = read_json(folder / "summary.json") if (folder / "summary.json").is_file() else {}
    manifest = read_json(folder / "manifest.json") if (folder / "manifest.json").is_file() else {}
    classes = (manifest.get("train_set") or {}).get("num_classes")
    n_test = (manifest.get("test_set") or {}).get("size")
    learned = poison_learned(
        summary.get("final_shortcut_acc"),
        summary.get("final_clean_train_acc"),
        classes or 0,
        summary.get("final_shortcut_n"),
        reference,
    )
    return learned, classes, n_test


def ud_cmd(args) -> int:
    from ..core.errors import UserError
    from ..core.io import atomic_write_json, atomic_write_text
    from ..core.options import MAX_BOOTSTRAP, check_count
    from ..metrics import ud_table
    from ..training.records import load_run_sal

    existing = [f for f in (Path(f"{args.out}.json"), Path(f"{args.out}.csv")) if f.exists()]
    if existing and not args.overwrite:  # checked before any work: a user's file is never replaced silently
        raise UserError(f"{', '.join(map(str, existing))} already exist(s); pass --overwrite or another --out")
    check_count(args.bootstrap, "--bootstrap", MAX_BOOTSTRAP)  # before any run is read: 10**12 would run for weeks
    from ..metrics.verdict import baseline_learned, baseline_reason
    from ..training.comparable import check_comparable

    clean = load_run_sal(args.clean, origin=args.origin)
    poisoned = [load_run_sal(run, layers=clean.layers, origin=args.origin) for run in args.poisoned]
    forced = check_comparable(args.clean, args.poisoned, force=args.force)
    _, classes, n_test = run_verdict(args.clean)
    if classes and n_test and not baseline_learned(clean.final_test_acc, classes, n_test):
        if not args.force:
            raise UserError(f"{args.clean}: {baseline_reason(clean.final_test_acc, classes, n_test)} (--force: anyway)")
        forced.append(f"{args.clean}: {baseline_reason(clean.final_test_acc, classes, n_test)}")
    beta, rows = ud_table(clean, poisoned, bootstrap=args.bootstrap)
    learned = [None, *(run_verdict(run, clean.final_test_acc)[0] for run in args.poisoned)]

    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    width = max(len(r.run) for r in rows)
    print(
        f"beta = {beta:.6g} (from {clean.path}: {len(clean.epochs)} probed epochs "
        f"x {len(clean.layers)} layers; SAL {clean.mode}, origin {clean.origin})"
    )
    for line in forced:
        print(f"compared with --force although {line}")
    print(
        f"{'run':{width}s}  {'final acc':>9s}  {'peak acc':>8s}  "
        f"{'learned':>7s}  {'#LP':>6s}  {'UD':>6s}  UD 90% interval"
    )
    for r, verdict in zip(rows, learned):
        ci = "" if r.ud_ci_low is None else f"{r.ud_ci_low:.3f} - {r.ud_ci_high:.3f}"
        lp, ud = f"{r.lp:6.2f}", f"{r.ud:6.3f}"
        if verdict == "no":  # the model ignored the poison: its UD measures nothing (the JSON keeps it)
            lp, ud, ci = f"{'-':>6s}", f"{'-':>6s}", "not learned: no UD"
        elif verdict in ("partly", "unknown"):
            ci += f"  ({verdict})"
        print(
            f"{r.run:{width}s}  {fmt(r.final_test_acc, '9.2f')}  {fmt(r.peak_test_acc, '8.2f')}  {verdict or '-':>7s}  "
            f"{lp}  {ud}  {ci}"
        )
    print("learned: was the poison picked up at all (the shortcut probe; uebench.metrics.verdict)")

    summary = {
        "beta": beta,
        "clean": clean.path,
        "sal_mode": clean.mode,
        "sal_origin": clean.origin,
        "layers": clean.layers,
        "rows": [{**asdict(r), "learned": v} for r, v in zip(rows, learned)],
        "forced": forced,
    }
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for r in summary["rows"]:
        writer.writerow([r.get(c) if r.get(c) is not None else "" for c in COLUMNS])
    try:
        atomic_write_json(f"{args.out}.json", summary)
        atomic_write_text(f"{args.out}.csv", buf.getvalue())
    except OSError as e:
        raise UserError(f"cannot write {args.out}.json/.csv: {e.strerror or e}") from None
    print(f"written: {args.out}.json, {args.out}.csv")
    return 0
