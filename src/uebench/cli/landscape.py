"""`uebench landscape`: the paper's Figure 2 (loss-landscape
trajectories, clean vs poisoned) and per-weight statistics."""

from __future__ import annotations

from ..core.errors import UserError
from . import add_renamed, parse_sets


def register(sub) -> None:
    p = sub.add_parser(
        "landscape",
        help=(
            "record weight trajectories of a small model, clean vs poisoned; loss contours, 1-D view, per-weight stats"
        ),
        description=(
            "Trains a linear model or LeNet-5 on clean and on poisoned data (plain SGD, same initial weights, same "
            "batch order) recording every weight every K steps, then draws training-loss contours over two "
            "coordinates with the trajectories overlaid (the paper's Figure 2), the loss along the straight line "
            "start -> end, and per-weight statistics. Writes PNG figures, landscape.json and report.html in --out."
        ),
    )
    p.add_argument(
        "--dataset",
        default="mnist",
        help="mnist (default; real files under --data-dir) or scenes (generated, made grey)",
    )
    p.add_argument("--data-dir", default=None, help="data folder (else $UEBENCH_DATA, else ~/.cache/uebench/data)")
    p.add_argument("--model", default="linear", help="linear (default) or lenet5")
    p.add_argument("--attack", default="em", help="attack to craft (default em; `uebench attacks` lists them)")
    p.add_argument("--poison", default=None, metavar="FILE", help="use this poison file instead of crafting one")
    add_renamed(
        p, "--attack-preset", "--preset", default="fast", help="attack preset: fast (default here: CPU-sized) or paper"
    )
    add_renamed(
        p,
        "--attack-option",
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="attack parameter, e.g. model=lenet5 (repeatable)",
    )
    p.add_argument("--out", required=True, help="output folder")
    add_renamed(
        p,
        "--subset",
        "--n-train",
        type=int,
        default=5000,
        help="train on a seeded random subset of N training images (0 = all; default 5000)",
    )
    p.add_argument("--image-size", type=int, default=28, help="scenes only: 28 (default) or 32")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=float, default=0.05, help="plain SGD learning rate (default 0.05)")
    p.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default 0: plain SGD)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="weight decay (default 0)")
    p.add_argument(
        "--record-every",
        type=int,
        default=None,
        metavar="K",
        help="record the weights every K optimizer steps (default: about 250 records per run)",
    )
    p.add_argument(
        "--grid", type=int, default=25, metavar="N", help="loss grid resolution, N x N per panel (default 25)"
    )
    p.add_argument(
        "--coords", default="movers,divergent,pca", help="coordinate choices, comma-separated: movers, divergent, pca"
    )
    p.add_argument(
        "--eval-size",
        type=int,
        default=1000,
        help="training images the landscape losses are measured on (default 1000)",
    )
    p.add_argument(
        "--tol", type=float, default=0.1, help="a weight ends 'near' the clean end point within this (default 0.1)"
    )
    p.add_argument(
        "--tol-mode", default="relative", help="relative (default: times the weight's clean displacement) or absolute"
    )
    p.add_argument(
        "--no-control", action="store_true", help="skip the second clean run (another batch order) used as yardstick"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--subset-seed",
        type=int,
        default=None,
        metavar="S",
        help="the seed that draws the --subset and --test-size images (default: --seed)",
    )
    p.add_argument("--overwrite", action="store_true", help="discard what --out holds from another configuration")
    p.add_argument("--quiet", action="store_true", help="no progress bars or logs")
    p.set_defaults(
        func=landscape_cmd,
        interrupted="interrupted: recorded trajectories are kept; rerun the same command to continue",
    )


def landscape_cmd(args) -> int:
    from ..core.io import refuse_unsafe_folder
    from ..experiments.landscape import LandscapeConfig, run_landscape

    refuse_unsafe_folder(args.out, example="landscape")

    if args.subset is not None and args.subset < 0:
        raise UserError(f"--subset must be >= 0, got {args.subset}")
    cfg = LandscapeConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        model=args.model,
        attack=args.attack,
        poison=args.poison,
        preset=args.attack_preset,
        attack_params=parse_sets(args.attack_option, "--attack-option"),
        subset=args.subset or None,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        seed=args.seed,
        subset_seed=args.subset_seed,
        record_every=args.record_every,
        control=not args.no_control,
        grid=args.grid,
        coords=tuple(c.strip() for c in args.coords.split(",") if c.strip()),
        eval_size=args.eval_size,
        tol=args.tol,
        tol_mode=args.tol_mode,
        device=args.device,
    )
    log = (lambda *a, **k: None) if args.quiet else print
    summary = run_landscape(cfg, args.out, progress=not args.quiet, overwrite=args.overwrite, log=log)
    if not args.quiet:
        st = summary["stats"]["runs"]
        p = st["poisoned"]
        print(
            f"poisoned run: {100 * p['within_tol']['all']:.1f}% of weights (top-1% clean movers: "
            f"{100 * p['within_tol']['top1%']:.1f}%) end near the clean end point"
            + (
                f"; control: {100 * st['control']['within_tol']['all']:.1f}% "
                f"({100 * st['control']['within_tol']['top1%']:.1f}%)"
                if "control" in st
                else ""
            )
        )
    print(f"figures, landscape.json and report.html written to {args.out}")
    return 0
