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
    p.set_defaults(func=ud_cmd)


COLUMNS = ("run", "final_test_acc", "peak_test_acc", "lp", "ud", "ud_ci_low", "ud_ci_high", "epochs")


def ud_cmd(args) -> int:
    from ..errors import UserError
    from ..io import atomic_write_json, atomic_write_text
    from ..metrics import load_run_sal, ud_table

    existing = [f for f in (Path(f"{args.out}.json"), Path(f"{args.out}.csv")) if f.exists()]
    if existing and not args.overwrite:  # checked before any work: a user's file is never replaced silently
        raise UserError(f"{', '.join(map(str, existing))} already exist(s); pass --overwrite or another --out")
    if args.bootstrap < 1:
        raise UserError(f"--bootstrap must be >= 1, got {args.bootstrap}")
    clean = load_run_sal(args.clean, origin=args.origin)
    poisoned = [load_run_sal(run, layers=clean.layers, origin=args.origin) for run in args.poisoned]
    beta, rows = ud_table(clean, poisoned, bootstrap=args.bootstrap)

    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    width = max(len(r.run) for r in rows)
    print(
        f"beta = {beta:.6g} (from {clean.path}: {len(clean.epochs)} probed epochs x {len(clean.layers)} layers; SAL {clean.mode}, origin {clean.origin})"
    )
    print(f"{'run':{width}s}  {'final acc':>9s}  {'peak acc':>8s}  {'#LP':>6s}  {'UD':>6s}  UD 90% interval")
    for r in rows:
        ci = "" if r.ud_ci_low is None else f"{r.ud_ci_low:.3f} - {r.ud_ci_high:.3f}"
        print(
            f"{r.run:{width}s}  {fmt(r.final_test_acc, '9.2f')}  {fmt(r.peak_test_acc, '8.2f')}  {r.lp:6.2f}  {r.ud:6.3f}  {ci}"
        )

    summary = {
        "beta": beta,
        "clean": clean.path,
        "sal_mode": clean.mode,
        "sal_origin": clean.origin,
        "layers": clean.layers,
        "rows": [asdict(r) for r in rows],
    }
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([getattr(r, c) if getattr(r, c) is not None else "" for c in COLUMNS])
    try:
        atomic_write_json(f"{args.out}.json", summary)
        atomic_write_text(f"{args.out}.csv", buf.getvalue())
    except OSError as e:
        raise UserError(f"cannot write {args.out}.json/.csv: {e.strerror or e}") from None
    print(f"written: {args.out}.json, {args.out}.csv")
    return 0
