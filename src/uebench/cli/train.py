"""`uebench train`: one victim run, clean or on a poison file."""

from __future__ import annotations

import json

from . import add_common, parse_sets


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model on clean or poisoned data, with per-epoch probes")
    add_common(p)
    p.add_argument("--poison", default=None, help="a poison file (uebench craft / import)")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    p.add_argument("--recipe", default="paper", help="named recipe (uebench train --list-recipes)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--train-subset", type=int, default=None, help="train on a seeded subset of N images")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", help="auto | fp32 | bf16 (auto: bf16 only with hardware bf16)")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="dataset option, e.g. n_train=2000")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train import TrainConfig, train

    config = TrainConfig(
        dataset=args.dataset, data_dir=args.data_dir, poison=args.poison, model=args.model, width=args.width,
        recipe=args.recipe, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        train_subset=args.train_subset, device=args.device, precision=args.precision,
        channels_last=not args.no_channels_last, dataset_options=parse_sets(args.set),
    )
    result = train(config, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    s = result.summary
    print(json.dumps({k: s[k] for k in ("final_test_acc", "peak_test_acc", "peak_epoch", "final_train_acc", "epochs_done") if k in s}))
    print(f"run written to {result.out}")
    return 0
