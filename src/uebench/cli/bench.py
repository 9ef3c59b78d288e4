"""`uebench bench` (craft, train, probe, report; resumable and cached) and `uebench report DIR` (rebuild the report)."""

from __future__ import annotations

from dataclasses import replace

from ..core.errors import UserError
from . import add_renamed, parse_list, parse_nested_sets, parse_sets


class NotGiven(str):
    """A flag's default that the user did not give: shown as its value (in --help and the CLI reference), but never
    overriding a --config file."""


NOT_GIVEN_PRESET = NotGiven("quick")


def register(sub) -> None:
    p = sub.add_parser(
        "bench", help="the clean run plus one run per attack (x defense x seed) with SAL, then #LP, UD and a report"
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="a TOML file of bench settings (every bench writes its own as bench.toml: --config runs/x/bench.toml "
        "--out runs/y replays it); the flags given beside it override it",
    )
    p.add_argument(
        "--preset",
        default=NOT_GIVEN_PRESET,
        help="quick (CPU, minutes; default) | cpu (CIFAR-10 subset, about 40 minutes) | paper (GPU); with --config, "
        "replaces the file's preset",
    )
    p.add_argument("--dataset", default=None, help="dataset (default: the preset's; quick uses the embedded scenes)")
    p.add_argument("--data-dir", default=None, help="data folder (else $UEBENCH_DATA, else ~/.cache/uebench/data)")
    p.add_argument("--data-option", action="append", metavar="KEY=VALUE", help="dataset option, e.g. n_train=2000")
    p.add_argument("--subset", type=int, default=None, help="poison and train on a seeded subset of N training images")
    p.add_argument(
        "--poison-fraction",
        default=None,
        metavar="F,F,...",
        help="partial poisoning: bench each poison with only these shares of its images poisoned, per class "
        "(e.g. 0.2,0.4,0.6,0.8,1.0; default 1.0); a share below 1 is its own row, <attack>@<share>",
    )
    p.add_argument(
        "--executor",
        default="serial",
        choices=("serial", "ray"),
        help="serial: one run after another in this process (default); ray: every craft and run a Ray task "
        '(pip install -e ".[ray]")',
    )
    p.add_argument(
        "--address", default=None, help="ray: the cluster to join (auto, or HOST:PORT; default: a new local one)"
    )
    p.add_argument("--cpus-per-run", type=float, default=1, metavar="N", help="ray: CPUs each task holds (default 1)")
    p.add_argument("--gpus-per-run", type=float, default=0, metavar="F", help="ray: GPUs (or a share) per task")
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="train only runs I, I+N, I+2N, ... of the plan (e.g. a SLURM array task; I from 0). Shards may run at "
        "once on one folder; the last to finish writes the report, `uebench report DIR` assembles what has finished",
    )
    p.add_argument(
        "--subset-seed",
        type=int,
        default=None,
        metavar="S",
        help="the seed that draws --subset (default 0: every training seed trains on the same images)",
    )
    p.add_argument(
        "--attacks", default=None, help="comma-separated attacks (default: the preset's, all seven); '' for none"
    )
    add_renamed(
        p,
        "--attack-option",
        "--attack-set",
        action="append",
        metavar="ATTACK.KEY=VALUE",
        help="attack parameter, e.g. em.max_rounds=4 (repeatable)",
    )
    p.add_argument("--poison", action="append", metavar="FILE", help="bench a poison file of your own (repeatable)")
    p.add_argument(
        "--unpaired",
        action="store_true",
        help="bench unpaired --poison files (no index mapping, e.g. APBench's ImageNet layout): each replaces the "
        "whole training set, its budget unchecked, its verdict unknown; refused without this flag",
    )
    p.add_argument(
        "--defenses", default=None, help="comma-separated training-time defenses, 'none' = standard (default: none)"
    )
    add_renamed(
        p,
        "--defense-option",
        "--defense-set",
        action="append",
        metavar="DEFENSE.KEY=VALUE",
        help="defense parameter, e.g. jpeg.quality=20 (repeatable)",
    )
    p.add_argument("--model", default=None, help="model (default: the preset's; uebench models lists them)")
    p.add_argument("--width", type=float, default=None, help="channel width multiplier")
    p.add_argument("--recipe", default=None, help="training recipe (default: the preset's; uebench recipes)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the preset's)")
    p.add_argument(
        "--seeds",
        default=None,
        metavar="N|S,S,...",
        help="N: seeds 0..N-1; a comma list (0,3,7 or 5,) names them; tables show mean and std (default: seed 0)",
    )
    p.add_argument("--sal-mode", default=None, help="fast | faithful (default: the preset's)")
    p.add_argument(
        "--sal-every",
        type=int,
        default=None,
        metavar="K",
        help=(
            "probe SAL at epochs K, 2K, ... (default: the preset's); "
            "a K above the epochs, which probes none, is refused"
        ),
    )
    p.add_argument("--sal-rounds", type=int, default=None, help="SAL search rounds (default: the preset's)")
    p.add_argument(
        "--sal-subset", type=int, default=None, metavar="N", help="fast SAL: probe images (default: the preset's)"
    )
    p.add_argument(
        "--keep-weights",
        action="store_true",
        default=None,
        help="save each run's model at every SAL epoch, for uebench sal-sweep (the cpu preset does)",
    )
    p.add_argument(
        "--init-from",
        default=None,
        metavar="WEIGHTS",
        help="every run, clean included, starts from these weights (a .safetensors file of the bench's model and "
        "width, e.g. from uebench train --save-weights); the bench keeps a copy and its identity holds the file's "
        "sha256 (default: from scratch)",
    )
    p.add_argument(
        "--init-head",
        default=None,
        choices=("auto", "reset"),
        help="--init-from's classifier head: auto (loaded where the classes match in number, else re-initialised from "
        "each run's seed) | reset (always re-initialised) (default: auto)",
    )
    p.add_argument(
        "--freeze",
        default=None,
        metavar="MODULES",
        help="comma-separated modules kept as --init-from loads them in every run, e.g. conv1,bn1,layer1",
    )
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--precision", default=None, help="auto | fp32 | bf16 | fp16 (fp16: CUDA, with a gradient scaler)")
    p.add_argument(
        "--out",
        default=None,
        help="bench folder, needed except with --plan or --list-presets; rerun the same command to resume or extend it",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a bench of another configuration in --out")
    p.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    p.add_argument(
        "--plan",
        "--dry-run",
        dest="plan",
        action="store_true",
        help="check everything as the bench would, then print its poisons and runs, which are cached in --out, and a "
        "rough time estimate; crafts, trains and writes nothing (--out may be left out)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    p.set_defaults(
        func=bench_cmd,
        interrupted="interrupted: finished poisons and epochs are saved; rerun the same command to continue",
    )

    r = sub.add_parser("report", help="rebuild a bench's report (tables, figures, report.html) from its folder alone")
    r.add_argument("dir", metavar="DIR", help="a bench folder (uebench bench --out DIR)")
    r.add_argument(
        "--force",
        action="store_true",
        help="compare runs that differ from their clean run in data, model, recipe, precision or SAL settings "
        "(refused otherwise); the page then names what differed",
    )
    r.set_defaults(func=report_cmd)


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def parse_seeds(text: str) -> tuple[int, ...]:
    """'3' -> (0, 1, 2) (a count, as before); '0,3,7' or '5,' -> those seeds, in order, each once."""
    from ..core.options import MAX_SEEDS, check_seed

    numbers = parse_list(text, int, "--seeds")
    if not numbers:
        raise UserError(f"--seeds expects a count N or a comma list of seeds, got '{text}'")
    if "," not in str(text):
        if numbers[0] < 1:
            raise UserError(f"--seeds must be >= 1, got {numbers[0]}")
        if numbers[0] > MAX_SEEDS:  # one bench trains every seed: 10000000 would be a plan nobody can run
            raise UserError(f"--seeds asks for {numbers[0]:,} seeds; at most {MAX_SEEDS:,} are run in one bench")
        return tuple(range(numbers[0]))
    if len(set(numbers)) != len(numbers):
        raise UserError(f"--seeds lists each seed once, got '{text}'")
    for seed in numbers:
        check_seed(seed)
    return tuple(numbers)


def config_from_args(args):
    """The bench's settings: the --config file (or the --preset; default quick), then every flag the user gave (a
    flag left out is None here, so it never overrides the file)."""
    from ..experiments.bench.run import SALSettings, preset

    given = None if isinstance(args.preset, NotGiven) else args.preset
    if args.config is not None:
        from ..experiments.bench.config_file import read_config

        c = read_config(args.config, given)
    else:
        c = preset(args.preset)
    if args.dataset:
        c = c.with_dataset(args.dataset)
    changes = {}
    if args.data_dir is not None:
        changes["data_dir"] = args.data_dir
    if args.data_option:
        changes["dataset_options"] = {**c.dataset_options, **parse_sets(args.data_option, "--data-option")}
    if args.subset is not None:
        changes["subset"] = args.subset
    if args.subset_seed is not None:
        changes["subset_seed"] = args.subset_seed
    if args.poison_fraction is not None:
        changes["poison_fractions"] = tuple(parse_list(args.poison_fraction, float, "--poison-fraction"))
    if args.attacks is not None:
        changes["attacks"] = _names(args.attacks)
    elif args.poison:
        changes["attacks"] = ()  # --poison alone benches the given files only
    if args.attack_option:
        merged = {k: dict(v) for k, v in c.attack_params.items()}
        for name, kv in parse_nested_sets(args.attack_option, "--attack-option").items():
            merged.setdefault(name, {}).update(kv)
        changes["attack_params"] = merged
    if args.poison:
        changes["poisons"] = tuple(args.poison)
    if args.unpaired:
        changes["unpaired"] = True
    if args.defenses is not None:
        changes["defenses"] = _names(args.defenses)
    if args.defense_option:
        changes["defense_params"] = parse_nested_sets(args.defense_option, "--defense-option")
    if args.freeze is not None:
        changes["freeze"] = _names(args.freeze)
    for name in ("model", "width", "recipe", "epochs", "device", "precision", "keep_weights", "init_from", "init_head"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.seeds is not None:
        changes["seeds"] = parse_seeds(args.seeds)
    sal = c.sal
    if args.sal_mode is not None and args.sal_mode != sal.mode:
        sal = SALSettings(mode=args.sal_mode)  # the other mode's defaults, not this preset's tuning of its own mode
    for name in ("every", "rounds", "subset"):
        if getattr(args, f"sal_{name}") is not None:
            sal = replace(sal, **{name: getattr(args, f"sal_{name}")})
    if sal != c.sal:
        changes["sal"] = sal
    return replace(c, **changes)


def bench_cmd(args) -> int:
    from ..experiments.bench.run import PRESETS, run_bench

    if args.list_presets:
        for name, c in PRESETS.items():
            print(f"{name:14s} {c.description}")
        return 0
    if not args.out and not args.plan:
        raise UserError("bench: --out DIR is required (the bench folder)")
    if args.out:
        from ..core.io import refuse_unsafe_folder

        refuse_unsafe_folder(args.out, example="bench")
    config = config_from_args(args)
    shard = parse_shard(args.shard) if args.shard is not None else None
    ray_only = [f for f, given in (("--address", args.address is not None), ("--gpus-per-run", args.gpus_per_run != 0),
                                   ("--cpus-per-run", args.cpus_per_run != 1)) if given]  # fmt: skip
    if args.executor != "ray" and ray_only:
        raise UserError(f"{', '.join(ray_only)} only apply with --executor ray")
    if args.executor == "ray" and shard is not None:
        raise UserError("--shard splits the plan between processes by hand; with --executor ray, Ray does: drop one")
    if args.plan:
        from ..experiments.bench.plan import plan_bench

        print(plan_bench(config, args.out, overwrite=args.overwrite, shard=shard).text())
        return 0
    try:
        if args.executor == "ray":
            from ..experiments.bench.ray_executor import run_bench_on_ray

            result = run_bench_on_ray(
                config,
                args.out,
                address=args.address,
                cpus_per_run=args.cpus_per_run,
                gpus_per_run=args.gpus_per_run,
                overwrite=args.overwrite,
                log=None if args.quiet else print,
            )
        else:
            result = run_bench(
                config,
                args.out,
                overwrite=args.overwrite,
                progress=not args.quiet,
                log=None if args.quiet else print,
                shard=shard,
            )
    except KeyboardInterrupt:
        import sys

        print("interrupted: finished poisons and epochs are saved; rerun the same command to continue", file=sys.stderr)
        return 130
    if result.complete:
        print((result.out / "table.md").read_text())
        print(f"report: {result.out / 'report.html'}")
    return 0


def parse_shard(text: str) -> tuple[int, int]:
    """'1/4' -> (1, 4): the second of four shards."""
    i, slash, n = text.partition("/")
    try:
        shard = (int(i), int(n))
    except ValueError:
        shard = None
    if not slash or shard is None or not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise UserError(f"--shard is I/N with 0 <= I < N (e.g. 0/4), got '{text}'")
    return shard


def report_cmd(args) -> int:
    from ..report.bench_report import write_bench_report

    paths = write_bench_report(args.dir, force=args.force)
    print(f"{len(paths)} files written to {args.dir}: " + ", ".join(p.name for p in paths))
    return 0
