"""Does a victim fine-tuning a pretrained backbone learn the content of unlearnable examples anyway? (BAIT, ICLR 2026)

Per seed, on the real CIFAR-10 subset (../shared/data) in the `cpu` regime of benchmarks/efficacy_study.py (ResNet-18
width 0.125, 10 epochs, no augmentation):

1. split the training images once (split seed 0): the victim's `--victim-size` images (a seeded subset, drawn as
   `uebench train --subset N --subset-seed 0` draws it), and the rest, which no poison touches;
2. pretrain a backbone on data disjoint from the victim's (`--pretrain-on rest`: those other CIFAR-10 images, same
   classes; `scenes`: uebench's procedural scenes, other images and other classes, its head then re-initialised),
   recipe cpu, its final weights saved with `uebench train --save-weights`'s writer;
3. craft each attack on the victim's images only (the `fast` preset, as the efficacy study);
4. train the victim on clean and on each poison, three ways (`--arms`): `scratch` (recipe cpu from a random init),
   `init` (recipe cpu from the backbone: the start alone differs) and `finetune` (recipe finetune, lr 0.01, from the
   backbone), each with the shortcut probe on the poisons.

Every finished piece (a backbone run folder, a poison file, one JSON per (arm, attack, seed)) is written atomically
under --out; a killed study resumes where it stopped, and a rerun with one more seed or arm computes only what is new.
The table: final test accuracy per arm and attack, mean ± std over seeds, the final shortcut accuracy (sc) beside
each poison; a poison the victim bypasses has its accuracy near the clean column's and a low shortcut accuracy.

    python benchmarks/pretrained_bypass.py --data-dir ../shared/data --seeds 0,1,2 --out runs/pretrained-bypass
    python benchmarks/pretrained_bypass.py --out runs/pretrained-bypass --seeds 0,1,2 --table   # the table only
    python benchmarks/pretrained_bypass.py --data-dir ../shared/data --victim-size 300 --epochs 1 \\
        --pretrain-epochs 1 --attacks clean,lsp,ops --out runs/bypass-tiny          # a smoke test in a minute
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from uebench.attacks import craft
from uebench.core.io import atomic_write_text
from uebench.data import load, seeded_subset
from uebench.poisons.poison import Poison
from uebench.training.shortcut import shortcut_probes
from uebench.training.trainer import TrainConfig, train

ATTACKS = ("em", "lsp", "ops")
ARMS = {
    "scratch": {"recipe": "cpu", "pretrained": False},
    "init": {"recipe": "cpu", "pretrained": True},
    "finetune": {"recipe": "finetune", "pretrained": True},
}
SPLIT_SEED = 0  # one split for every seed: the seeds vary the training noise, the backbone and the poisons
VICTIM = {"model": "resnet18", "width": 0.125, "precision": "fp32"}  # fp32: the same numbers on any CPU


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


def splits(data_dir: str | None, victim_size: int) -> dict[str, Any]:
    train_set = load("cifar10", data_dir, "train")
    test_set = load("cifar10", data_dir, "test")
    if not 0 < victim_size < len(train_set):
        sys.exit(f"--victim-size must leave images to pretrain on: 1..{len(train_set) - 1}, got {victim_size}")
    victim = seeded_subset(train_set, victim_size, seed=SPLIT_SEED)
    rest = torch.ones(len(train_set), dtype=torch.bool)
    rest[victim.indices] = False  # the full split's indices are its positions
    return {"full": train_set, "test": test_set, "victim": victim, "rest": train_set.subset(rest.nonzero().flatten())}


def backbone(out: Path, args, data: dict[str, Any], seed: int) -> tuple[Path, dict[str, Any]]:
    """The backbone of `seed`, pretrained on data the poisons never touched: its weights file and what it scored."""
    settings = {"on": args.pretrain_on, "victim_size": args.victim_size, "epochs": args.pretrain_epochs, **VICTIM}
    folder = out / "backbones" / f"{args.pretrain_on}-{_key(settings)}-s{seed}"
    if args.pretrain_on == "scenes":
        train_set, test_set = load("scenes", None, "train"), load("scenes", None, "test")
    else:
        train_set, test_set = data["rest"], data["test"]
    config = TrainConfig(dataset=train_set.name, recipe="cpu", epochs=args.pretrain_epochs, seed=seed, **VICTIM)
    t0 = time.perf_counter()
    result = train(
        config,
        folder,
        train_set=train_set,
        test_set=test_set,
        progress=False,
        resume=(folder / "config.json").exists(),
        save_final_weights=True,
    )
    weights = folder / "weights" / f"epoch-{len(result.history):04d}.safetensors"
    return weights, {
        "images": len(train_set),
        "test_acc": result.summary["final_test_acc"],
        "test_set": test_set.name,
        "seconds": time.perf_counter() - t0,
    }


def poison_for(out: Path, args, data: dict[str, Any], attack: str, seed: int) -> Poison:
    """The attack's poison of the victim's images (crafted once per attack, size and seed)."""
    path = out / "poisons" / f"{attack}-{_key({'a': attack, 'n': args.victim_size, 'seed': seed})}-s{seed}.safetensors"
    if not path.is_file():
        t0 = time.perf_counter()
        p = craft(
            attack,
            data["full"],
            preset="fast",
            seed=seed,
            subset=args.victim_size,
            subset_seed=SPLIT_SEED,
            progress=False,
        )
        p.save(path)  # atomic
        print(f"  crafted {attack} seed {seed} in {time.perf_counter() - t0:.0f} s", flush=True)
    return Poison.load(path)


def run_one(out: Path, args, data: dict[str, Any], arm: str, attack: str, seed: int) -> dict[str, Any]:
    setting = ARMS[arm]
    init, pretrained = None, None
    if setting["pretrained"]:
        init, pretrained = backbone(out, args, data, seed)
    clean = data["victim"]
    if attack == "clean":
        train_set, probes = clean, []
    else:
        poisoned = poison_for(out, args, data, attack, seed).apply(data["full"])
        train_set = seeded_subset(poisoned, args.victim_size, seed=SPLIT_SEED)  # as `uebench train --subset` does
        probes = shortcut_probes(train_set, clean, seed=seed)
    config = TrainConfig(
        dataset="cifar10",
        recipe=setting["recipe"],
        epochs=args.epochs,
        seed=seed,
        subset=args.victim_size,
        subset_seed=SPLIT_SEED,
        init_from=str(init) if init else None,
        init_head="reset" if init and args.pretrain_on == "scenes" else "auto",
        **VICTIM,
    )
    t0 = time.perf_counter()
    result = train(config, train_set=train_set, test_set=data["test"], probes=probes, progress=False)
    last = result.history[-1]
    return {
        "arm": arm,
        "attack": attack,
        "seed": seed,
        "recipe": config.resolved_recipe().to_dict(),
        "pretrain_on": args.pretrain_on if init else None,
        "backbone": pretrained,
        "init": result.summary.get("init"),
        "victim_size": args.victim_size,
        "final_acc": result.summary["final_test_acc"],
        "peak_acc": result.summary["peak_test_acc"],
        "first_epoch_acc": result.history[0]["test_acc"],
        "shortcut_acc": last.get("shortcut_acc"),
        "clean_train_acc": last.get("clean_train_acc"),
        "train_acc": last.get("train_acc"),
        "curve": [
            {k: round(h[k], 1) for k in ("test_acc", "shortcut_acc", "clean_train_acc") if k in h}
            for h in result.history
        ],
        "threads": torch.get_num_threads(),
        "seconds": time.perf_counter() - t0,
    }


def result_file(out: Path, args, arm: str, attack: str, seed: int) -> Path:
    pretrain = [args.pretrain_on, args.pretrain_epochs] if ARMS[arm]["pretrained"] else None  # scratch: shared
    settings = {"n": args.victim_size, "epochs": args.epochs, "pretrain": pretrain}
    return out / "runs" / _key(settings) / f"{arm}-{attack}-s{seed}.json"


def table(out: Path, args, arms: list[str], attacks: list[str], seeds: list[int]) -> str:
    """Markdown: one row per arm, final test accuracy mean ± std over seeds (sc: the final shortcut accuracy)."""
    lines = ["| victim | " + " | ".join(attacks) + " |", "|---" * (len(attacks) + 1) + "|"]
    backbones: dict[int, float] = {}  # per seed: the arms from the backbone share it
    for arm in arms:
        cells = []
        for a in attacks:
            rows = [json.loads(f.read_text()) for s in seeds if (f := result_file(out, args, arm, a, s)).is_file()]
            backbones.update({r["seed"]: r["backbone"]["test_acc"] for r in rows if r.get("backbone")})
            if not rows:
                cells.append("-")
                continue
            accs = [r["final_acc"] for r in rows]
            cell = f"{statistics.mean(accs):.1f}" + (f" ± {statistics.stdev(accs):.1f}" if len(accs) > 1 else "")
            sc = [r["shortcut_acc"] for r in rows if r["shortcut_acc"] is not None]
            cell += f" (sc {statistics.mean(sc):.0f})" if sc else ""
            cells.append(cell + ("" if len(rows) == len(seeds) else f" n={len(rows)}"))
        lines.append(f"| {arm} ({ARMS[arm]['recipe']}) | " + " | ".join(cells) + " |")
    if backbones:
        lines.append(
            f"\nbackbones (pretrained on {args.pretrain_on}, {args.pretrain_epochs} epoch(s)): final test accuracy "
            f"{statistics.mean(backbones.values()):.1f} on their own test set (mean over {len(backbones)} seed(s))"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="where cifar-10-batches-py(-subset) is (e.g. ../shared/data)")
    ap.add_argument("--attacks", default="clean," + ",".join(ATTACKS))
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma list of {', '.join(ARMS)}")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--victim-size", type=int, default=2500, help="images of the victim (poisoned) set")
    ap.add_argument("--pretrain-on", default="rest", choices=("rest", "scenes"))
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=10, help="victim epochs (the cpu and finetune recipes' 10)")
    ap.add_argument("--out", default="runs/pretrained-bypass")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--table", action="store_true", help="print the table of what has finished and exit")
    args = ap.parse_args()
    attacks, arms = args.attacks.split(","), args.arms.split(",")
    for a in arms:
        if a not in ARMS:
            sys.exit(f"unknown arm '{a}'; valid: {', '.join(ARMS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    if args.table:
        print(table(out, args, arms, attacks, seeds))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    data = splits(args.data_dir, args.victim_size)
    print(f"victim: {len(data['victim'])} images; pretraining on {args.pretrain_on} (disjoint from them)", flush=True)
    for seed in seeds:
        for attack in attacks:
            for arm in arms:
                f = result_file(out, args, arm, attack, seed)
                if f.is_file():
                    continue
                row = run_one(out, args, data, arm, attack, seed)
                atomic_write_text(f, json.dumps(row, indent=1))
                probe = (
                    f"  shortcut {row['shortcut_acc']:.1f}  clean-train {row['clean_train_acc']:.1f}"
                    if row["shortcut_acc"] is not None
                    else ""
                )
                print(
                    f"{arm:>9} {attack:>5} s{seed}: first epoch {row['first_epoch_acc']:.1f}  "
                    f"final {row['final_acc']:.1f}{probe}  ({row['seconds']:.0f} s)",
                    flush=True,
                )
    print(table(out, args, arms, attacks, seeds))


if __name__ == "__main__":
    main()
