"""`uebench train`: one victim run, clean or on a poison file."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from ..training.settings import RunSettings  # TrainConfig's defaults (the settings module loads no torch)
from . import add_common, add_renamed, parse_sets

# SALConfig's defaults, which `--sal` probes with unless told (tests/test_train.py checks that they agree; the SAL
# modules are not imported to build the parser). `--sal-origin`: model_sal's rule (running where a running loss is
# given, else eval) as a training run meets it: every epoch has its running loss
SAL_DEFAULTS = {"mode": "fast", "every": 1, "origin": "running", "eps": 0.05, "lr": 0.1, "subset": 1024}


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on clean or poisoned data, with per-epoch probes",
        description="Train one victim. The defaults are a first run on a laptop CPU (scenes natural, ResNet-18 width "
        "0.125, recipe cpu: minutes); the paper's victim is --width 1 --recipe paper.",
    )
    add_common(p)
    p.add_argument("--poison", default=None, help="a poison file (uebench craft / import; default: train clean)")
    p.add_argument(
        "--poison-fraction",
        type=float,
        default=None,
        metavar="F",
        help="poison only this share of the poison's images, the same share per class (seeded by --subset-seed, "
        "else --seed); the rest train clean (default: all of them)",
    )
    p.add_argument(
        "--unpaired",
        action="store_true",
        help="train on an unpaired --poison (no index mapping, e.g. APBench's ImageNet layout): its images replace "
        "the whole training set and its budget is unchecked; refused without this flag",
    )
    p.add_argument(
        "--model", default=RunSettings.model, help="model name (uebench models lists them; default: %(default)s)"
    )
    p.add_argument(
        "--width",
        type=float,
        default=RunSettings.width,
        help="channel width multiplier (default: %(default)s, CPU-sized; the paper's: 1)",
    )
    p.add_argument(
        "--recipe",
        default=RunSettings.recipe,
        help="named recipe (uebench recipes lists them; default: %(default)s, 10 epochs without augmentation; the "
        "paper's: paper)",
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: the recipe's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    add_renamed(
        p,
        "--subset",
        "--train-subset",
        type=int,
        default=None,
        metavar="N",
        help="train on a seeded random subset of N training images (default: all of them)",
    )
    p.add_argument(
        "--subset-seed", type=int, default=None, metavar="S", help="the seed that draws --subset (default: --seed)"
    )
    p.add_argument("--device", default=RunSettings.device, help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    p.add_argument(
        "--precision",
        default=RunSettings.precision,
        help="auto | fp32 | bf16 | fp16 (default: %(default)s: bf16 with hardware bf16, fp16 with a gradient scaler on "
        "other GPUs, else fp32)",
    )
    p.add_argument(
        "--eval-batch-size",
        type=int,
        default=None,
        metavar="N",
        help="test evaluation batch (memory only; default: 1024)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward (a GPU speed option)")
    p.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help='log every epoch record and per-layer SAL to TensorBoard in DIR (pip install -e ".[tensorboard]"; '
        "default: no log)",
    )
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW tensors (channels-last is faster on CPU)")
    add_renamed(
        p,
        "--data-option",
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="dataset option, e.g. n_train=2000 (repeatable; default: the dataset's, scenes: n_train=5000 "
        "n_test=1000 difficulty=natural)",
    )
    p.add_argument(
        "--defense",
        default=None,
        metavar="NAME",
        help="training-time defense (uebench defenses lists them; default: none)",
    )
    add_renamed(
        p,
        "--defense-option",
        "--defense-set",
        action="append",
        metavar="[NAME.]KEY=VALUE",
        help="defense parameter, e.g. jpeg.quality=20 or quality=20 (repeatable)",
    )
    w = p.add_argument_group("pretrained start (BAIT: does fine-tuning a pretrained backbone learn the poison away?)")
    w.add_argument(
        "--init-from",
        default=None,
        metavar="WEIGHTS",
        help="start from these weights (a .safetensors file of this --model and --width, e.g. a run's "
        "weights/epoch-NNNN.safetensors from --save-weights); its sha256 is recorded (default: from scratch)",
    )
    w.add_argument(
        "--init-head",
        default="auto",
        choices=("auto", "reset"),
        help="the classifier head of --init-from: auto loads it where the classes match in number and re-initialises "
        "it from --seed where they differ; reset always re-initialises it (default: %(default)s)",
    )
    w.add_argument(
        "--freeze",
        default=None,
        metavar="MODULES",
        help="comma-separated modules whose weights and BatchNorm statistics stay as loaded, e.g. conv1,bn1,layer1 "
        "(needs --init-from; default: none)",
    )
    w.add_argument(
        "--save-weights",
        action="store_true",
        help="write the finished model as OUT/weights/epoch-NNNN.safetensors, for --init-from (on a finished run with "
        "--resume: written from its checkpoint)",
    )
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out with the settings it recorded (its config.json); a flag given beside it must "
        "agree with them",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    s = p.add_argument_group("SAL probing (the paper's per-layer Sharpness-Aware Learnability, for uebench ud)")
    s.add_argument("--sal", action="store_true", help="record the SAL of every Conv2d/Linear layer")
    s.add_argument(
        "--sal-mode",
        default=SAL_DEFAULTS["mode"],
        help="fast (subset, cached prefix) | faithful (the paper's: the public code's procedure) (default: "
        "%(default)s)",
    )
    s.add_argument(
        "--sal-every",
        type=int,
        default=SAL_DEFAULTS["every"],
        metavar="K",
        help="probe epochs K, 2K, ... (default: %(default)s); a K above the run's epochs, which probes none, is "
        "refused",
    )
    s.add_argument(
        "--sal-origin",
        default=SAL_DEFAULTS["origin"],
        help="L0: running (the epoch's training loss, as the public code) | eval (default: %(default)s, as model_sal "
        "takes it where a running loss is given; after a mixup/cutmix epoch the eval loss stands in)",
    )
    s.add_argument(
        "--sal-eps",
        type=float,
        default=SAL_DEFAULTS["eps"],
        help="ball radius relative to ||W0|| (default: %(default)s)",
    )
    s.add_argument("--sal-rounds", type=int, default=None, help="rounds (default: 10 faithful, 5 fast)")
    s.add_argument(
        "--sal-lr",
        type=float,
        default=SAL_DEFAULTS["lr"],
        help="SAL search step size (default: %(default)s, the paper's)",
    )
    s.add_argument("--sal-layers", default=None, help="comma-separated layer names (default: all)")
    s.add_argument(
        "--sal-subset",
        type=int,
        default=SAL_DEFAULTS["subset"],
        help="fast mode: probe images (default: %(default)s)",
    )
    track_given(p, {*CONFIG_FLAGS.values(), *SAL_OPTIONS})
    p.set_defaults(
        func=run, interrupted="interrupted: finished epochs are saved; rerun with --resume --out DIR to continue"
    )


# the TrainConfig field each option sets (the dest of the option; --resume compares the given ones with the record)
CONFIG_FLAGS = {
    "dataset": "dataset",
    "data_dir": "data_dir",
    "poison": "poison",
    "poison_fraction": "poison_fraction",
    "unpaired": "unpaired",
    "model": "model",
    "width": "width",
    "recipe": "recipe",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "seed": "seed",
    "subset": "subset",
    "subset_seed": "subset_seed",
    "eval_batch_size": "eval_batch_size",
    "compile": "compile",
    "device": "device",
    "precision": "precision",
    "channels_last": "no_channels_last",
    "dataset_options": "data_option",
    "defense": "defense",
    "defense_params": "defense_option",
    "init_from": "init_from",
    "init_head": "init_head",
    "freeze": "freeze",
}


def track_given(p: argparse.ArgumentParser, dests: set[str]) -> None:
    """The options among `dests` that the command line gives end up in `args.given` (a default is not given, even
    where a user could type the same value: --resume tells the two apart)."""
    p.set_defaults(given=frozenset())
    for action in p._actions:
        if action.dest in dests:
            action.__class__ = _given_class(type(action))


def _given_class(cls: type) -> type:
    class Given(cls):
        def __call__(self, parser, namespace, values, option_string=None):
            namespace.given = frozenset({*getattr(namespace, "given", ()), self.dest})
            super().__call__(parser, namespace, values, option_string)

    return Given


def sal_probes(args, config=None) -> list:
    """The SAL probe the options ask for (none without --sal); layer names are checked before any training, against
    the model of `config` (the run's: a resumed run's model is its record's), else of the options."""
    from ..core.errors import UserError
    from ..metrics import SALConfig
    from ..models import create_model, probed_layers
    from ..training.sal_probe import SALProbe

    if not args.sal:
        return []
    model, width, recipe = (
        (config.model, config.width, config.recipe) if config else (args.model, args.width, args.recipe)
    )
    layers = None
    if args.sal_layers:
        layers = tuple(name.strip() for name in args.sal_layers.split(",") if name.strip())
        valid = probed_layers(create_model(model, width=width))  # names do not depend on classes or channels
        for name in layers:
            if name not in valid:
                raise UserError(f"unknown layer '{name}' for --sal-layers; valid: {', '.join(valid)}")
    from ..training.recipes import RECIPES

    augment = RECIPES.get(recipe).augment  # probe with the transforms the model trains with
    return [
        SALProbe(
            SALConfig(
                mode=args.sal_mode,
                every=args.sal_every,
                origin=args.sal_origin,
                eps=args.sal_eps,
                rounds=args.sal_rounds,
                lr=args.sal_lr,
                subset=args.sal_subset,
            ),
            layers=layers,
            augment=augment,
        )
    ]


SAL_OPTIONS = ("sal_mode", "sal_every", "sal_origin", "sal_eps", "sal_rounds", "sal_lr", "sal_layers", "sal_subset")


def check_flags(args) -> None:
    """Options that contradict each other or do nothing are refused, not silently ignored."""
    from ..core.errors import UserError

    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other: continue the run in --out, or replace it")
    from ..core.io import refuse_unsafe_folder
    from ..training.records import run_started

    refuse_unsafe_folder(args.out)
    if args.resume and not run_started(args.out):
        where = "does not exist" if not os.path.lexists(args.out) else "holds no run"
        raise UserError(f"nothing to resume: {args.out} {where}; drop --resume to start the run there")
    given = [f"--{k.replace('_', '-')}" for k in SAL_OPTIONS if k in args.given]  # typed, even at its default
    if given and not args.sal:
        raise UserError(f"{', '.join(given)} given without --sal, which would ignore them; add --sal")


def defense_options(items: list[str] | None, defense: str | None) -> dict:
    """KEY=VALUE, or NAME.KEY=VALUE as the bench spells it (NAME must be the run's --defense)."""
    from ..core.errors import UserError

    out = {}
    for key, value in parse_sets(items, "--defense-option").items():
        name, dot, k = key.partition(".")
        if dot and name != defense:
            raise UserError(f"--defense-option {key}: this run's defense is {defense or 'none'}, not {name}")
        out[k if dot else key] = value
    return out


def config_from_flags(args):
    """The TrainConfig the options ask for (the defaults where not given)."""
    from ..training.trainer import TrainConfig

    return TrainConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        poison=args.poison,
        model=args.model,
        width=args.width,
        recipe=args.recipe,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        subset=args.subset,
        subset_seed=args.subset_seed,
        poison_fraction=args.poison_fraction,
        unpaired=args.unpaired,
        eval_batch_size=args.eval_batch_size,
        compile=args.compile,
        device=args.device,
        precision=args.precision,
        channels_last=not args.no_channels_last,
        dataset_options=parse_sets(args.data_option, "--data-option"),
        defense=args.defense,
        defense_params=defense_options(args.defense_option, args.defense),
        init_from=args.init_from,
        init_head=args.init_head,
        freeze=tuple(m.strip() for m in (args.freeze or "").split(",") if m.strip()),
    )


def resumed_config(args):
    """--resume: the run's settings as its config.json records them, so `--resume --out DIR` alone continues it. An
    option given beside --resume must agree with the record (the whole original command line resumes, as before);
    one that differs is refused in one line naming it. A folder whose run was killed before it recorded its settings
    resumes with the options' settings."""
    from ..core.errors import UserError
    from ..core.io import read_json
    from ..training.trainer import TrainConfig

    path = os.path.join(args.out, "config.json")
    if not os.path.isfile(path):
        return config_from_flags(args)
    saved = read_json(path)
    if not isinstance(saved, dict):
        raise UserError(f"{path} is not a run's settings (a JSON object); use another --out or --overwrite")
    try:
        recorded = TrainConfig.from_record({k: v for k, v in saved.items() if k != "resolved_recipe"})
    except (TypeError, ValueError) as e:
        raise UserError(f"{path} does not read as a run's settings ({e}); use another --out or --overwrite") from None
    if not args.sal:  # config.json does not hold the SAL probe: dropping it silently would leave epochs unprobed
        from ..training.records import read_metrics

        try:
            history = read_metrics(args.out)
        except UserError:  # killed before its first epoch was recorded: nothing was probed yet
            history = []
        probed = [r for r in history if isinstance(r.get("sal"), dict) and r["sal"]]
        if probed:
            raise UserError(
                f"{args.out} probed SAL ({probed[-1].get('sal_mode')} mode) in {len(probed)} epoch(s); resume it with "
                "--sal and the SAL options it was started with, or the epochs still to train would have none"
            )
    given = [f for f, dest in CONFIG_FLAGS.items() if dest in getattr(args, "given", ())]
    if not given:
        return recorded
    flags = config_from_flags(args)
    combined = dataclasses.replace(recorded, **{f: getattr(flags, f) for f in given})
    differ = [f for f in given if getattr(combined, f) != getattr(recorded, f)]
    if differ:
        said = "; ".join(f"--{CONFIG_FLAGS[f].replace('_', '-')}: {getattr(recorded, f)!r} there" for f in differ)
        raise UserError(
            f"{args.out} holds a run of another configuration ({said}); drop these flags to resume it as recorded, "
            "or use another --out or --overwrite"
        )
    return recorded


def run(args) -> int:
    from ..training.trainer import check_config, splits_and_probes, train

    check_flags(args)
    config = resumed_config(args) if args.resume else config_from_flags(args)
    if config.defense not in (None, "", "none"):  # unknown names and parameters fail before any data is loaded
        from ..defenses import create_defense

        create_defense(config.defense, **config.defense_params)
    elif config.defense_params:
        from ..core.errors import UserError

        raise UserError("--defense-option given without --defense")
    check_config(config)  # the model's name and the run's numbers (width, seed, subset), before any work
    recipe = config.resolved_recipe()  # its numbers (epochs, batch size, lr) and their bounds, before any work
    probes = sal_probes(args, config)
    for p in probes:  # a schedule that probes no epoch is refused before any work
        p.config.check_schedule(recipe.epochs)
    train_set = test_set = None
    if config.poison:  # is the model reading the poison, or the content? the shortcut probe says, every epoch
        train_set, test_set, more = splits_and_probes(config)
        probes += more
    if args.tensorboard:  # last: it logs what the other probes added to the epoch's record
        from ..training.tensorboard import TensorBoardLog

        probes.append(TensorBoardLog(args.tensorboard))
    result = train(
        config,
        args.out,
        train_set=train_set,
        test_set=test_set,
        probes=probes,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
        save_final_weights=args.save_weights,
    )
    s = result.summary
    print(
        json.dumps(
            {
                k: s[k]
                for k in ("final_test_acc", "peak_test_acc", "peak_epoch", "final_train_acc", "epochs_done")
                if k in s
            }
        )
    )
    print(f"run written to {result.out}")
    if args.save_weights:
        from ..training.records import weights_file

        print(f"final weights: {weights_file(result.out, len(result.history))} (for --init-from)")
    return 0
