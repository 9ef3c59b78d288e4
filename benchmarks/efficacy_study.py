"""Which CPU victim regime lets the attacks (the first study's seven, and PIL) win against the images' content?

For every (regime, attack, seed) it crafts the attack's poison on a dataset (once per attack, crafting settings and
seed: the poison does not depend on the victim), trains the regime's victim on it with the shortcut probe on, and
records final and peak test accuracy, the final shortcut accuracy and clean-train accuracy. Then it prints one table
row per regime: clean and the attacks, mean and spread (sample std) over seeds, with the shortcut accuracy.

Every finished (regime, attack, seed) is a JSON file under OUT/runs/ and every poison a file under OUT/poisons/,
both written atomically: a killed study resumes where it stopped, and a rerun with one more regime or seed only
computes what is new. `--shard I/N` runs a deterministic part of the jobs (one process per core with
`--threads 1` is the fastest use of a small CPU); the shards of one study never craft the same poison.

    python benchmarks/efficacy_study.py --data-dir ../shared/data --regimes quick,cpu --seeds 0,1,2 --out runs/study
    python benchmarks/efficacy_study.py --data-dir ../shared/data --out runs/study --table   # the table only

A regime is a victim (model, width, recipe, epochs, batch size, lr) plus the crafting settings of each attack
(`CRAFTING`: a preset and overrides per attack); see REGIMES below. One study folder per dataset (and dataset
options): poisons are keyed by the dataset's name.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from uebench.attacks import craft
from uebench.core.io import atomic_write_text
from uebench.data import load
from uebench.experiments.bench.run import QUICK
from uebench.poisons.poison import Poison
from uebench.training.shortcut import shortcut_probes
from uebench.training.trainer import TrainConfig, train

ATTACKS = ("em", "rem", "dc", "tap", "lsp", "ops", "ar", "pil", "hypo", "sep")
MODEL_BASED = (
    "em",
    "rem",
    "dc",
    "tap",
    "pil",
    "hypo",
    "sep",
)  # the ones crafted against a model, so with a crafting precision


@dataclass(frozen=True)
class Regime:
    model: str = "resnet18"
    width: float = 0.125
    recipe: str = "quick"
    epochs: int | None = 10
    batch_size: int | None = None
    lr: float | None = None
    crafting: str = "fast"  # key of CRAFTING: how hard each attack works
    description: str = ""


# How each attack is crafted: a preset and per-attack overrides.
CRAFTING: dict[str, dict[str, Any]] = {
    # fp32 crafting (uebench's only crafting precision before `auto` became the default); SEP at its paper's other
    # budget, 8/255: at 2/255 no CPU victim picks it up (docs/results/efficacy.md)
    "fast": {
        **{a: {"preset": "fast", **({"precision": "fp32"} if a in MODEL_BASED else {})} for a in ATTACKS},
        "sep": {"preset": "fast", "precision": "fp32", "eps": 8 / 255},
    },
    # the quick bench's crafting (EM at its fast preset, the others shortened), for its spread over seeds
    "quick-bench": {a: {"preset": "fast", **QUICK.attack_params.get(a, {})} for a in ATTACKS},
}
# the model-based attacks' crafting loops in bf16 autocast (their first layer in fp32), the rest as `fast`
CRAFTING["fast-bf16"] = {
    a: {**CRAFTING["fast"][a], **({"precision": "bf16"} if a in MODEL_BASED else {})} for a in ATTACKS
}
# every attack at its fast preset and its default crafting precision (`auto` for most model-based attacks)
CRAFTING["fast-auto"] = {a: {k: v for k, v in CRAFTING["fast"][a].items() if k != "precision"} for a in ATTACKS}
# REM with the smaller adversarial radius of its paper's ablation (rho_a = 2/255) and twice the crafting-model
# training: at CPU scale the 4/255 crafting model learns too little for its noise to be picked up
CRAFTING["rem-a2"] = {
    **CRAFTING["fast"],
    "rem": {
        "preset": "fast",
        "precision": "fp32",
        "adv_eps": 2 / 255,
        "adv_step": 1 / 255,
        "train_steps": 320,
        "lr_decay_every": 240,
    },
}


def _bf16_with(attack: str, **overrides: Any) -> dict[str, dict[str, Any]]:
    """`fast-bf16` with one attack's crafting budget raised: what the time bf16 frees buys that attack."""
    return {**CRAFTING["fast-bf16"], attack: {**CRAFTING["fast-bf16"][attack], **overrides}}


# REM at its ablation radius with 4x the fast preset's crafting-model training; DC with more trials, or with a
# wider and deeper generator (towards the public code's 64-wide, 3-level U-Net)
CRAFTING["rem-a2-bf16"] = _bf16_with("rem", adv_eps=2 / 255, adv_step=1 / 255, train_steps=640, lr_decay_every=480)
CRAFTING["dc-long-bf16"] = _bf16_with("dc", trials=8)
CRAFTING["dc-wide-bf16"] = _bf16_with("dc", trials=4, gen_width=16, gen_depth=3)

REGIMES: dict[str, Regime] = {
    "quick": Regime(description="width 0.125, recipe quick: 10 epochs cosine, crop+flip (the paper's augmentation)"),
    "cpu": Regime(recipe="cpu", description="width 0.125, recipe cpu: 10 epochs cosine, no augmentation"),
    "cpu-bf16": Regime(recipe="cpu", crafting="fast-bf16", description="as cpu, the attacks crafted in bf16"),
    "cpu-w25": Regime(width=0.25, recipe="cpu", description="as cpu, width 0.25"),
    "crop-e20": Regime(recipe="quick-crop", epochs=20, description="crops only (no flips), 20 epochs"),
    "quick-bench": Regime(
        recipe="cpu",
        crafting="quick-bench",
        description="the quick bench's victim and crafting, without its SAL probes (run on scenes natural)",
    ),
    "cpu-rem-a2": Regime(
        recipe="cpu", crafting="rem-a2", description="as cpu, REM at rho_a 2/255 with 2x its training"
    ),
    "quick-bench-fast": Regime(
        recipe="cpu",
        crafting="fast-auto",
        description="the quick bench's victim, every attack at its full fast preset (run on scenes natural)",
    ),
    "cpu-e30": Regime(recipe="cpu", epochs=30, description="as cpu, 30 epochs (3x the SGD steps)"),
    **{
        f"cpu-{name}": Regime(recipe="cpu", crafting=name, description=f"as cpu, crafting {name}")
        for name in ("rem-a2-bf16", "dc-long-bf16", "dc-wide-bf16")
    },
}


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def poison_file(out: Path, dataset: str, attack: str, crafting: str, seed: int) -> Path:
    settings = CRAFTING[crafting][attack]
    return (
        out
        / "poisons"
        / f"{attack}-{_key({'d': dataset, 'a': attack, 's': settings, 'seed': seed})}-s{seed}.safetensors"
    )


def get_poison(out: Path, train_set, attack: str, crafting: str, seed: int) -> Poison:
    path = poison_file(out, train_set.name, attack, crafting, seed)
    if not path.is_file():
        settings = dict(CRAFTING[crafting][attack])
        preset = settings.pop("preset", "fast")
        t0 = time.perf_counter()
        p = craft(attack, train_set, preset=preset, seed=seed, progress=False, **settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        p.save(path)
        print(f"  crafted {attack} seed {seed} ({crafting}) in {time.perf_counter() - t0:.0f} s", flush=True)
    return Poison.load(path)


def run_one(out: Path, regime_name: str, attack: str, seed: int, data: dict) -> dict:
    r = REGIMES[regime_name]
    clean, test = data["train"], data["test"]
    config = TrainConfig(
        dataset=clean.name,
        model=r.model,
        width=r.width,
        recipe=r.recipe,
        epochs=r.epochs,
        batch_size=r.batch_size,
        lr=r.lr,
        seed=seed,
    )
    t0 = time.perf_counter()
    craft_s = 0.0
    if attack == "clean":
        train_set, probes, meta = clean, [], {}
    else:
        p = get_poison(out, clean, attack, r.crafting, seed)
        craft_s = p.meta.craft_seconds
        train_set = p.apply(clean)
        probes = shortcut_probes(train_set, clean, seed=seed)
        meta = {"variant": p.meta.variant, "epoch_equivalents": p.meta.epoch_equivalents}
    t1 = time.perf_counter()
    result = train(config, train_set=train_set, test_set=test, probes=probes, progress=False)
    last = result.history[-1]
    return {
        "regime": regime_name,
        "attack": attack,
        "seed": seed,
        "regime_settings": asdict(r),
        "crafting": CRAFTING[r.crafting].get(attack, {}),
        "craft_seconds": craft_s,
        "poison": meta,
        "final_acc": result.summary["final_test_acc"],
        "peak_acc": result.summary["peak_test_acc"],
        "shortcut_acc": last.get("shortcut_acc"),
        "clean_train_acc": last.get("clean_train_acc"),
        "train_acc": last.get("train_acc"),
        "train_seconds": time.perf_counter() - t1,
        "curve": [
            {k: round(h[k], 1) for k in ("test_acc", "shortcut_acc", "clean_train_acc") if k in h}
            for h in result.history
        ],
        "precision": result.summary.get("precision"),
        "threads": torch.get_num_threads(),
        "wall_seconds": time.perf_counter() - t0,
    }


def result_file(out: Path, regime: str, attack: str, seed: int) -> Path:
    return out / "runs" / regime / f"{attack}-s{seed}.json"


def table(out: Path, regimes: list[str], attacks: list[str], seeds: list[int]) -> str:
    """Markdown: one row per regime; a cell finished for fewer than `seeds` says how many ran (n=...)."""
    cols = ["clean", *attacks]
    lines = ["| regime | " + " | ".join(cols) + " | attacks at most half of clean |", "|---" * (len(cols) + 2) + "|"]
    for name in regimes:
        cells, clean_mean, wins = [], None, 0
        for a in cols:
            files = [result_file(out, name, a, s) for s in seeds]
            rows = [json.loads(f.read_text()) for f in files if f.is_file()]
            if not rows:
                cells.append("-")
                continue
            accs = [r["final_acc"] for r in rows]
            m = statistics.mean(accs)
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            cell = f"{m:.1f} ± {sd:.1f}" if len(accs) > 1 else f"{m:.1f}"
            if a == "clean":
                clean_mean = m
            else:
                sc = [r["shortcut_acc"] for r in rows if r["shortcut_acc"] is not None]
                cell += f" (sc {statistics.mean(sc):.0f})" if sc else ""
                wins += clean_mean is not None and m <= clean_mean / 2
            cells.append(cell + ("" if len(accs) == len(seeds) else f" n={len(accs)}"))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {wins} of {len(attacks)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, e.g. difficulty=natural (scenes); numbers are read as numbers",
    )
    ap.add_argument("--regimes", default="quick")
    ap.add_argument("--attacks", default="clean," + ",".join(ATTACKS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--out", default="runs/efficacy-study")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--shard", default="0/1", help="I/N: run the I-th of N deterministic parts")
    ap.add_argument("--table", action="store_true", help="print the table of what has finished and exit")
    args = ap.parse_args()
    regimes = args.regimes.split(",")
    attacks = args.attacks.split(",")
    for r in regimes:
        if r not in REGIMES:
            sys.exit(f"unknown regime '{r}'; valid: {', '.join(REGIMES)}")
    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.table:
        print(table(out, regimes, [a for a in attacks if a != "clean"], seeds))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    i, n = (int(v) for v in args.shard.split("/"))
    options = {k: (int(v) if v.isdigit() else v) for k, v in (o.split("=", 1) for o in args.data_option)}
    data = {s: load(args.dataset, args.data_dir, s, **options) for s in ("train", "test")}
    jobs = [(r, a, s) for s in seeds for r in regimes for a in attacks]
    # a poison (attack, crafting, seed) belongs to one shard, so that no two shards craft it
    mine = [
        j for j in jobs if int(_key([j[1], REGIMES[j[0]].crafting if j[1] != "clean" else j[0], j[2]]), 16) % n == i
    ]
    for regime, attack, seed in mine:
        f = result_file(out, regime, attack, seed)
        if f.is_file():
            continue
        row = run_one(out, regime, attack, seed, data)
        atomic_write_text(f, json.dumps(row, indent=1))
        print(
            f"{regime:>14} {attack:>5} s{seed}: final {row['final_acc']:.1f}  peak {row['peak_acc']:.1f}  "
            f"shortcut {row['shortcut_acc']}  clean-train {row['clean_train_acc']}  ({row['wall_seconds']:.0f} s)",
            flush=True,
        )
    print(table(out, regimes, [a for a in attacks if a != "clean"], seeds))


if __name__ == "__main__":
    main()
