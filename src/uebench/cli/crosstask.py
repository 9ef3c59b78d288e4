"""`uebench crosstask`: do classification UEs stop other tasks? (and `uebench tasks`: list the tasks)."""

from __future__ import annotations

import json

from ..core.errors import UserError
from . import add_renamed, parse_nested_sets, parse_sets


def _names(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise UserError("an empty list was given")
    return names


def register(sub) -> None:
    p = sub.add_parser(
        "crosstask", help="craft classification UEs, train every task on them, report per-task learnability"
    )
    p.add_argument("--dataset", default=None, help="dataset name (default: scenes; taskonomy reads a Taskonomy folder)")
    p.add_argument("--data-dir", default=None, help="data folder (else $UEBENCH_DATA, else ~/.cache/uebench/data)")
    p.add_argument(
        "--data-option",
        action="append",
        metavar="KEY=VALUE",
        help="dataset option, e.g. n_train=2000 (repeatable); on scenes crosstask keeps difficulty=standard, its "
        "folders' difficulty, unless given (difficulty=natural: the loader's default elsewhere)",
    )
    p.add_argument(
        "--tasks",
        default=None,
        help="comma-separated tasks (default: class,segment,depth,edges; uebench tasks lists them)",
    )
    p.add_argument("--attacks", default=None, help="comma-separated attack names or poison files (default: em,ops,ar)")
    p.add_argument("--attack-preset", default=None, help="paper | fast (default: the preset's, fast for quick)")
    add_renamed(
        p,
        "--attack-option",
        "--attack-set",
        action="append",
        metavar="ATTACK.KEY=VALUE",
        help="attack parameter, e.g. em.max_rounds=4 (repeatable)",
    )
    p.add_argument(
        "--multitask",
        action="store_true",
        help="train one multi-task model (shared encoder) instead of one model per task",
    )
    p.add_argument(
        "--multitask-attacks",
        action="store_true",
        help="also craft the model-based attacks against the multi-task loss",
    )
    p.add_argument(
        "--multitask-combine",
        default=None,
        metavar="LIST",
        help="with --multitask-attacks: how the noise step joins the tasks' gradients, sum (label <attack>+mt) "
        "and/or pcgrad (<attack>+pcgrad: conflicting components projected out first), e.g. sum,pcgrad",
    )
    p.add_argument(
        "--targets",
        default=None,
        help="missing (the dataset's own targets where it has them) | always (derive from RGB)",
    )
    p.add_argument("--preset", default="quick", help="quick (CPU-sized) | standard | paper (default quick)")
    p.add_argument("--width", type=float, default=None, help="encoder width multiplier")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the preset's)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the preset's)")
    p.add_argument("--recipe", default=None, help="training recipe (uebench train's recipes)")
    p.add_argument("--weight", action="append", metavar="TASK=W", help="multi-task loss weight (repeatable)")
    add_renamed(
        p,
        "--subset",
        "--train-subset",
        type=int,
        default=None,
        metavar="N",
        help="train on a seeded random subset of N training images",
    )
    p.add_argument("--test-subset", type=int, default=None, help="test on a seeded random subset of N images")
    p.add_argument("--no-sal", action="store_true", help="skip the per-task SAL (and UD, similarity)")
    p.add_argument("--sal-mode", default=None, help="fast | faithful")
    p.add_argument("--sal-every", type=int, default=None, help="probe SAL every K epochs (0: last epoch only)")
    p.add_argument("--sal-subset", type=int, default=None, help="fast SAL probe images")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--subset-seed",
        type=int,
        default=None,
        metavar="S",
        help="the seed that draws --subset and --test-subset (default: --seed); fix it to vary only the training noise",
    )
    p.add_argument("--out", required=True, help="output folder (rerun the same command to resume)")
    p.add_argument("--overwrite", action="store_true", help="replace an experiment of another configuration in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(
        func=run,
        interrupted="interrupted: finished poisons and runs are kept; rerun the same command to continue from them",
    )

    t = sub.add_parser("tasks", help="list the cross-task tasks with their metrics")
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t.set_defaults(func=tasks_cmd)


def weights(items: list[str] | None) -> dict[str, float] | None:
    if not items:
        return None
    out = {}
    for k, v in parse_sets(items, "--weight").items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise UserError(f"--weight {k}: a non-negative number is needed, got {v!r}")
        out[k] = float(v)
    return out


def run(args) -> int:
    from ..core.io import refuse_unsafe_folder
    from ..experiments.crosstask.experiment import run_experiment, with_preset

    refuse_unsafe_folder(args.out, example="crosstask")

    config = with_preset(
        args.preset,
        dataset=args.dataset,
        data_dir=args.data_dir,
        dataset_options=parse_sets(args.data_option, "--data-option") or None,
        tasks=_names(args.tasks),
        attacks=_names(args.attacks),
        attack_preset=args.attack_preset,
        attack_params=parse_nested_sets(args.attack_option, "--attack-option") or None,
        multitask=args.multitask or None,
        multitask_attacks=args.multitask_attacks or None,
        multitask_combine=_names(args.multitask_combine),
        targets=args.targets,
        width=args.width,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        recipe=args.recipe,
        weights=weights(args.weight),
        subset=args.subset,
        test_subset=args.test_subset,
        probe_sal=False if args.no_sal else None,
        sal={"mode": args.sal_mode, "subset": args.sal_subset},
        sal_every=args.sal_every,
        device=args.device,
        seed=args.seed,
        subset_seed=args.subset_seed,
    )
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    results = run_experiment(config, args.out, progress=not args.quiet, overwrite=args.overwrite, log=log)
    from ..experiments.crosstask.experiment import markdown_table

    print(markdown_table(results), end="")
    print(f"report written to {args.out}/report.html")
    return 0


def tasks_cmd(args) -> int:
    from ..experiments.crosstask import TASKS

    rows = [
        {
            "name": n,
            "kind": TASKS.get(n).kind,
            "metric": TASKS.get(n).metric,
            "higher_is_better": TASKS.get(n).higher_is_better,
            "description": TASKS.get(n).description,
        }
        for n in TASKS.names()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(
            f"{r['name']:11s} {r['kind']:6s} {r['metric']:9s} "
            f"{'higher' if r['higher_is_better'] else 'lower '} better  {r['description']}"
        )
    return 0
