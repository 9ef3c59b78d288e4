"""Why does a poison fail? The race between its shortcut and the images' content, measured for poison files.

For each poison it trains the same victim twice with the trainer's shortcut probe on (uebench.training.shortcut):

1. on the poisoned training set, as a victim would: per epoch, test accuracy, accuracy on the clean originals of the
   poisoned images (clean-train) and on other-class images carrying the perturbations (shortcut);
2. on the perturbations alone, drawn on mid-grey (128 + poisoned - clean): can this victim learn the shortcut at
   all, and how many epochs does it take when nothing competes with it? (Read its train accuracy, measured on the
   perturbations alone.)

A poison whose perturbation alone is learnable but whose poisoned run keeps clean-train equal to the train accuracy
and shortcut near 0 lost the race: the content was learned first.

    python benchmarks/shortcut_race.py --data-dir ../shared/data --width 0.125 --epochs 10 \\
        runs/efficacy-cifar/ar.safetensors runs/efficacy-cifar/ops.safetensors
    python benchmarks/shortcut_race.py --data-dir ../shared/data --recipe cpu runs/efficacy-cifar/lsp.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from uebench.data import load
from uebench.poisons.poison import Poison
from uebench.training.shortcut import shortcut_probes, transplant
from uebench.training.trainer import TrainConfig, train


def race(poison_file: str, args) -> dict:
    poison = Poison.load(poison_file)
    meta = poison.meta
    clean = load(meta.dataset, args.data_dir, "train")
    test = load(meta.dataset, args.data_dir, "test")
    poisoned = poison.apply(clean)
    alone = clean.with_images(transplant(poisoned.images, clean.images, onto=torch.full_like(clean.images, 128)))
    config = TrainConfig(
        dataset=meta.dataset,
        model="resnet18",
        width=args.width,
        recipe=args.recipe,
        epochs=args.epochs,
        seed=args.seed,
        precision="fp32",
    )
    probes = shortcut_probes(poisoned, clean, seed=args.seed)  # the same probe images for both runs
    out = {}
    for name, train_set in (("poisoned", poisoned), ("perturbation alone", alone)):
        history = train(config, train_set=train_set, test_set=test, probes=probes, progress=False).history
        out[name] = [
            {k: round(h[k], 1) for k in ("epoch", "train_acc", "test_acc", "clean_train_acc", "shortcut_acc")}
            for h in history
        ]
        for h in out[name]:
            print(f"{meta.attack:>5} {name:<18} " + "  ".join(f"{k} {v}" for k, v in h.items()), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("poisons", nargs="+", help="poison files (uebench craft / import)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument(
        "--recipe", default="quick", help="quick (crop+flip) or cpu (no augmentation: is it the augmentation?)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the curves as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {p: race(p, args) for p in args.poisons}
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
