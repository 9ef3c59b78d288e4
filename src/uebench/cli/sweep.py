"""`uebench sal-sweep DIR`: SAL, #LP and UD of a finished bench measured again under other SAL settings."""

from __future__ import annotations

import json


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


def _numbers(text: str, kind, option: str) -> list:
    from ..errors import UserError

    out = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        try:
            value = json.loads(item)
        except ValueError:
            value = item
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UserError(
                f"{option} expects comma-separated {'numbers' if kind is float else 'whole numbers'}, got '{item}'"
            )
        out.append(value)
    return out


def sweep_cmd(args) -> int:
    from ..sweep import SWEEP_MD, run_sweep

    eps = _numbers(args.eps, float, "--eps")
    rounds = _numbers(args.rounds, int, "--rounds")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    run_sweep(
        args.dir,
        eps=eps,
        rounds=rounds,
        modes=modes,
        beta_from=args.beta_from,
        data_dir=args.data_dir,
        device=args.device,
        log=None if args.quiet else print,
    )
    from pathlib import Path

    print((Path(args.dir) / SWEEP_MD).read_text())
    return 0
