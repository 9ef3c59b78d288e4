"""Is `scenes` as hard as natural images for the quick victim? Its clean learning curve against CIFAR-10's.

Trains one victim (the quick bench's model and recipe) on `scenes` at each difficulty given, and on a seeded
seeded random subset of the real CIFAR-10 subset (../shared/data) of the same size, and prints the test accuracy per
epoch and the largest gap to CIFAR-10. The quick bench's poisons race the images' content: a dataset whose content
is learned much faster than natural images' makes every poison look weaker than it is, one learned much slower
makes it look stronger. The bar: within 10 points of CIFAR-10 at every epoch.

    python benchmarks/scenes_calibration.py --data-dir ../shared/data --difficulties standard,natural --seeds 0,1
"""

from __future__ import annotations

import argparse
import statistics

import torch

from uebench.data import load
from uebench.data.base import seeded_subset
from uebench.experiments.bench.run import preset
from uebench.training.trainer import TrainConfig, train


def curve(train_set, test_set, bench, seed: int) -> list[float]:
    config = TrainConfig(
        dataset=train_set.name,
        model=bench.model,
        width=bench.width,
        recipe=bench.recipe,
        epochs=bench.epochs,
        batch_size=bench.batch_size,
        lr=bench.lr,
        seed=seed,
    )
    return [h["test_acc"] for h in train(config, train_set=train_set, test_set=test_set, progress=False).history]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--difficulties", default="natural")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = preset("quick")
    n_train = bench.dataset_options["n_train"]
    seeds = [int(s) for s in args.seeds.split(",")]
    c_train = seeded_subset(load("cifar10", args.data_dir, "train"), n_train, seed=0)
    c_test = load("cifar10", args.data_dir, "test")
    ref = [statistics.mean(v) for v in zip(*(curve(c_train, c_test, bench, s) for s in seeds))]
    print(f"{'cifar10':>10}: " + " ".join(f"{a:5.1f}" for a in ref), flush=True)
    for difficulty in args.difficulties.split(","):
        options = {**bench.dataset_options, "difficulty": difficulty}
        s_train, s_test = (load("scenes", None, split, **options) for split in ("train", "test"))
        acc = [statistics.mean(v) for v in zip(*(curve(s_train, s_test, bench, s) for s in seeds))]
        gap = max(abs(a - b) for a, b in zip(acc, ref))
        print(f"{difficulty:>10}: " + " ".join(f"{a:5.1f}" for a in acc) + f"   largest gap {gap:.1f}", flush=True)


if __name__ == "__main__":
    main()
