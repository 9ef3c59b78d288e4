"""`uebench sal-sweep DIR`: SAL, #LP and UD of a finished bench measured again under other SAL settings."""

from __future__ import annotations

from . import parse_list


def register(sub) -> None:
    p = sub.add_parser(
        "sal-sweep",
        help="measure a bench's SAL again on its kept weights under other eps / rounds / modes: "
        "how stable are #LP, UD and the attacks' ranking?",
    )
    p.add_argument(
        "dir", metavar="DIR", help="a finished bench folder whose runs kept their weights (bench --keep-weights)"
    )
    p.add_argument(
        "--eps",
        default="",
        metavar="E,E,...",
        help="SAL radii to try, e.g. 0.01,0.05,0.1 (the bench's own is the reference)",
    )
    p.add_argument("--rounds", default="", metavar="R,R,...", help="search rounds to try, e.g. 5,10,20")
    p.add_argument("--modes", default="", metavar="M,M", help="fast and/or faithful (default: the bench's own mode)")
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        metavar="N",
        help="measure every setting N times, passes 2..N with the probe's draws seeded afresh: how well does a "
        "setting agree with itself (e.g. two faithful passes against fast)? default 1",
    )
    p.add_argument(
        "--beta-from",
        action="append",
        default=[],
        metavar="BENCH",
        help="another bench (another dataset) whose clean run's beta is applied to this one's runs (repeatable)",
    )
    p.add_argument("--data-dir", default=None, help="data folder (default: the bench's)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--quiet", action="store_true", help="no log lines")
    p.set_defaults(
        func=sweep_cmd,
        interrupted="interrupted: every finished (setting, run) is saved under DIR/sweep/; rerun to continue",
    )


def sweep_cmd(args) -> int:
    from ..experiments.sweep import SWEEP_MD, run_sweep

    eps = parse_list(args.eps, float, "--eps")
    rounds = parse_list(args.rounds, int, "--rounds")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    run_sweep(
        args.dir,
        eps=eps,
        rounds=rounds,
        modes=modes,
        repeats=args.repeats,
        beta_from=args.beta_from,
        data_dir=args.data_dir,
        device=args.device,
        log=None if args.quiet else print,
    )
    from pathlib import Path

    print((Path(args.dir) / SWEEP_MD).read_text())
    return 0
