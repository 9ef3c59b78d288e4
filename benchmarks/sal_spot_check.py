"""One snapshot, three SAL estimates side by side: fast as a bench records it now, fast with the old crop+flip probe
(`augment="once"`), and faithful (10 rounds over the whole training set, augmented as the run trained). Seven layers
of a ResNet-18, the eval origin, one torch thread.

    python benchmarks/sal_spot_check.py runs/cpu-s0 em 10 [--out benchmarks/results/spot_em_cpu_e10.json]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from uebench.core.runtime import resolve_device
from uebench.experiments.sweep import _Loaded
from uebench.metrics import ProbeData, SALConfig
from uebench.training.bench_folder import read_bench
from uebench.training.records import load_weights, read_metrics
from uebench.training.trainer import build_model, place_model, training_set

LAYERS = [
    "conv1",
    "layer1.0.conv1",
    "layer2.0.conv2",
    "layer3.0.shortcut.0",
    "layer3.1.conv2",
    "layer4.1.conv2",
    "linear",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path)
    ap.add_argument("attack")
    ap.add_argument("epoch", type=int)
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    saved, plan = read_bench(args.bench)
    sal = saved["config"]["sal"]
    run = next(r for r in plan.runs if r.attack == args.attack and r.defense == "none")
    poison = str(args.bench / run.poison) if run.poison else None
    tc = replace(run.train_config(), data_dir=args.data_dir, poison=poison)
    train_set = training_set(tc, _Loaded(args.data_dir).clean(tc))
    model = place_model(build_model(tc, train_set), tc, resolve_device("cpu")).eval()
    model.load_state_dict(load_weights(args.bench / run.dir, args.epoch))
    record = {int(r["epoch"]): r for r in read_metrics(args.bench / run.dir)}[args.epoch]
    recipe = tc.resolved_recipe()
    data = ProbeData.from_dataset(train_set, "cpu", augment=recipe.augment, batch_size=recipe.batch_size)
    fast = SALConfig(mode="fast", rounds=sal["rounds"], subset=sal["subset"])
    out = {"bench": str(args.bench), "attack": args.attack, "epoch": args.epoch, "train_loss": record["train_loss"]}
    for name, config in (
        ("fast", fast),
        ("fast_once", replace(fast, augment="once")),
        ("faithful", SALConfig("faithful")),
    ):
        start = time.perf_counter()
        result = config.measure(model, data, seed=0, layers=LAYERS, origin="eval")
        out[name] = {"sal": result.to_record()["sal"], "l0": result.loss0, "seconds": time.perf_counter() - start}
        print(name, {k: round(v, 5) for k, v in out[name]["sal"].items()}, f"{out[name]['seconds']:.0f} s", flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
