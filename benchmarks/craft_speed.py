"""How much faster is crafting in bf16 than in fp32? Every model-based attack at its `fast` preset, shortened to a
fixed amount of work, on the same images, in both precisions, alternating (fp32, bf16, fp32, bf16, ...) so that a
change of load hits both alike; the ratio is of the medians.

The work of a craft can differ between precisions where a stopping rule ends it (EM stops when its crafting model
fits the noise): the table gives the wall-clock ratio and the ratio per epoch-equivalent (forward+backward passes
over the crafting set), which is the speed.

    python benchmarks/craft_speed.py [--images 512] [--repeats 2] [--threads 1] [--attacks em,rem,...] [--out F]

On a CPU without fast bf16 (AVX2 only) bf16 runs ~10x slower: crafting's `auto` picks fp32 there.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from uebench.attacks import craft
from uebench.core.io import atomic_write_json
from uebench.core.runtime import fast_bf16
from uebench.data import load

ROOT = Path(__file__).resolve().parents[1]
# the fast presets, cut to a few seconds of work each (the per-epoch-equivalent speed does not depend on the length)
SHORT = {
    "em": {"max_rounds": 2},
    "em-classwise": {"mode": "classwise", "max_rounds": 2},
    "rem": {"train_steps": 20, "lr_decay_every": 15},
    "tap": {"clean_epochs": 2, "iterations": 10},
    "dc": {"trials": 1, "cls_epochs": 1},
    "hypo": {"clean_epochs": 2, "steps": 5},
    "sep": {"clean_epochs": 2, "models": 2, "iterations": 5},
    "salmin": {"max_rounds": 1},
    "cp": {"rounds": 2, "train_steps": 5},
}


def data(images: int, data_dir: Path):
    """The training split and the subset crafted on (None: all of it)."""
    if (data_dir / "cifar-10-batches-py-subset").is_dir():
        return load("cifar10", data_dir, "train"), images, "cifar10"
    return load("scenes", None, "train", n_train=images, n_test=16, difficulty="natural"), None, "scenes"


def one(label: str, ds, subset: int | None, precision: str, width: float | None) -> tuple[float, float]:
    attack = label.split("-")[0]
    params = {**SHORT[label], **({} if width is None else {"cls_width" if attack == "dc" else "width": width})}
    start = time.perf_counter()
    poison = craft(attack, ds, preset="fast", seed=0, subset=subset, progress=False, precision=precision, **params)
    return time.perf_counter() - start, float(poison.meta.epoch_equivalents)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2, help="crafts per precision and attack (alternating)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=float, default=None, help="the crafting model's width (default: the fast preset's)")
    ap.add_argument("--attacks", default=",".join(SHORT))
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=None, help="also write the table as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    labels = [a for a in args.attacks.split(",") if a]
    unknown = sorted(set(labels) - set(SHORT))
    if unknown:
        ap.error(f"unknown attack(s) {', '.join(unknown)}; valid: {', '.join(SHORT)}")
    ds, subset, name = data(args.images, Path(args.data_dir))
    cpu = torch.device("cpu")
    print(
        f"{name}, {subset or len(ds)} images, width {args.width or 'of the fast preset'}, {args.threads} thread(s), "
        f"{platform.processor() or platform.machine()}, "
        f"fast bf16: {fast_bf16(cpu)}, torch {torch.__version__}"
    )
    print("| attack | s fp32 | s bf16 | wall fp32/bf16 | s/epoch-eq fp32 | s/epoch-eq bf16 | speed-up |")
    print("|---|---|---|---|---|---|---|")
    rows = {}
    for label in labels:
        got: dict[str, list[tuple[float, float]]] = {"fp32": [], "bf16": []}
        for _ in range(args.repeats):
            for precision in ("fp32", "bf16"):
                got[precision].append(one(label, ds, subset, precision, args.width))
        wall = {p: statistics.median(s for s, _ in v) for p, v in got.items()}
        per = {p: statistics.median(s / max(e, 1e-9) for s, e in v) for p, v in got.items()}
        rows[label] = {"seconds": wall, "seconds_per_epoch_equivalent": per, "speedup": per["fp32"] / per["bf16"]}
        print(
            f"| {label} | {wall['fp32']:.1f} | {wall['bf16']:.1f} | {wall['fp32'] / wall['bf16']:.2f} | "
            f"{per['fp32']:.3f} | {per['bf16']:.3f} | {per['fp32'] / per['bf16']:.2f}x |",
            flush=True,
        )
    if args.out:
        atomic_write_json(
            Path(args.out),
            {
                "dataset": name,
                "images": subset or len(ds),
                "threads": args.threads,
                "width": args.width,
                "fast_bf16": fast_bf16(cpu),
                "torch": torch.__version__,
                "rows": rows,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
