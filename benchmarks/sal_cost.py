"""Fast SAL against faithful SAL: cost ratio and agreement, measured in the same run.

What it does:
1. trains a clean run and poisoned runs (class-wise blocky +-eps patterns, an LSP-like shortcut; class-wise random
   noise; sample-wise random noise; baked into uint8) on a seeded random subset of real MNIST or CIFAR-10 (CPU-sized
   defaults: MNIST, where a width-0.125 ResNet-18 learns within a few hundred steps and the patch poison works),
   snapshotting the model (and the epoch's running training loss) every --every epochs;
2. on every snapshot, computes faithful SAL (the public code's procedure: whole augmented training subset,
   10 rounds, lr 0.1) and fast SAL (each --variant), timing both;
3. prints the cost ratio (wall time, and epoch-equivalents = SAL seconds / one training epoch's seconds) and the
   agreement: per-snapshot Spearman rank correlation of the 21 layer SALs, and beta, #LP and UD of each
   poisoned run computed from faithful and from fast SAL;
4. with --faithful-repeats K, computes faithful SAL K times with other seeds (other shuffles and augmentations).
   A repeat's agreement with the first pass is the reference's own noise floor: no approximation can be shown to
   agree with one faithful pass better than a second faithful pass does. The fast variants are also compared
   with the mean of the K passes, a reference with 1/K of the noise variance. The cost ratio uses the last
   repeat's time (computed in this process, beside the fast variants).

Faithful results are cached in --out (JSON, with the seconds they took) so an interrupted benchmark resumes; the
fast variants are always recomputed. A projection to full CIFAR-10 (N = 50,000) is printed separately and
labelled as such: faithful cost grows with N, fast cost depends only on the subset size.

    .venv/bin/python benchmarks/sal_cost.py --out /tmp/sal_bench --faithful-repeats 2  # the note's settings (~1 h here)
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from uebench.core.io import atomic_write_json
from uebench.data import ImageDataset, load, seeded_subset
from uebench.metrics import FastSALConfig, learnable_count, learnable_threshold, model_sal
from uebench.training.trainer import TrainConfig, evaluate_classifier, train

ROOT = Path(__file__).resolve().parents[1]
# N/4 of the default N=256: the default fast mode (cross-fitted, anchored), without both corrections, and with 2 rounds
DEFAULT_VARIANTS = ["subset=64,rounds=3", "subset=64,rounds=3,crossfit=0,anchor=0", "subset=64,rounds=2"]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_DATA = {"cifar10": SHARED / "cifar-10-batches-py-subset", "mnist": SHARED}


def random_noise_poison(ds: ImageDataset, classwise: bool, seed: int, eps: int) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    if classwise:
        noise = torch.randint(-eps, eps + 1, (ds.num_classes, *ds.shape), generator=g)[ds.labels]
    else:
        noise = torch.randint(-eps, eps + 1, (len(ds), *ds.shape), generator=g)
    return ds.with_images(
        (ds.images.int() + noise).clamp(0, 255).to(torch.uint8), poison="classwise" if classwise else "samplewise"
    )


def patch_poison(ds: ImageDataset, seed: int, eps: int, grid: int = 8) -> ImageDataset:
    """Class-wise blocky +-eps patterns: an LSP-like shortcut (the benchmark needs an unlearnable run, not a
    faithful attack)."""
    g = torch.Generator().manual_seed(seed)
    side = ds.shape[1]
    codes = (torch.randint(0, 2, (ds.num_classes, ds.shape[0], grid, grid), generator=g) * 2 - 1) * eps
    noise = torch.nn.functional.interpolate(codes.float(), size=(side, side), mode="nearest").int()[ds.labels]
    return ds.with_images((ds.images.int() + noise).clamp(0, 255).to(torch.uint8), poison="patch")


class Snapshot:
    """A probe that keeps a copy of the weights and the running training loss at due epochs."""

    name = "snapshot"

    def __init__(self, every: int):
        self.every, self.snaps = every, {}

    def __call__(self, ctx):
        if ctx.epoch % self.every == 0:
            self.snaps[ctx.epoch] = (copy.deepcopy(ctx.model.state_dict()), ctx.record["train_loss"])
        return {}


def parse_variant(text: str) -> FastSALConfig:
    """'subset=128,rounds=5,augment=once,crossfit=1' -> FastSALConfig."""
    kw = {}
    for part in filter(None, text.split(",")):
        k, v = part.split("=")
        if k == "augment":
            kw[k] = v
        elif k in ("crossfit", "anchor", "cache_prefix"):
            kw[k] = v.lower() in ("1", "true", "yes")
        else:
            kw[k] = float(v) if k in ("tol", "step_scale") else int(v)
    return FastSALConfig(**kw)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=["mnist", "cifar10"])
    p.add_argument("--data-dir", default=None, help="default: the real subsets in ../shared/data")
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument(
        "--eps",
        type=int,
        default=32,
        help=(
            "poison amplitude in pixel units (stronger than attack budgets: "
            "the benchmark needs a run that is unlearnable at this tiny scale)"
        ),
    )
    p.add_argument("--out", default="/tmp/sal_bench")
    p.add_argument("--n-train", type=int, default=256)
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--every", type=int, default=3)
    p.add_argument("--train-batch", type=int, default=32)
    p.add_argument(
        "--lr", type=float, default=0.05, help="training lr (the small batch needs less than the paper's 0.1)"
    )
    p.add_argument(
        "--sal-batch",
        type=int,
        default=64,
        help="SAL minibatch (paper: 256; smaller = more SGD steps per pass on a small set)",
    )
    p.add_argument("--origin", default="running", choices=["running", "eval"])
    p.add_argument("--runs", default="clean,patch,classwise", help="clean first; of classwise, samplewise, patch")
    p.add_argument("--variant", action="append", help="fast settings, e.g. subset=128,rounds=5 (repeatable)")
    p.add_argument("--layers", default=None, help="comma-separated layers (smoke tests only; the figures use all 21)")
    p.add_argument("--faithful-rounds", type=int, default=10, help="smoke tests only; the figures use 10")
    p.add_argument(
        "--faithful-repeats",
        type=int,
        default=2,
        help=(
            "faithful SAL with this many seeds: the agreement of a "
            "repeat with the first is the reference's own noise floor"
        ),
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--device", default="cpu", help="cpu | cuda (on a GPU, use CIFAR-scale settings: --n-train 50000 --width 1 ...)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--full-n", type=int, default=50_000, help="N for the labelled projection (CIFAR-10)")
    p.add_argument("--full-subset", type=int, default=1024, help="fast subset assumed at full scale for the projection")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = [parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache_path = out / "faithful.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}

    data_dir = args.data_dir or str(DEFAULT_DATA[args.dataset])
    full = load(args.dataset, data_dir, "train")
    test = load(args.dataset, data_dir, "test")
    test = test.subset(torch.arange(min(args.n_test, len(test))))
    clean = seeded_subset(full, args.n_train, seed=args.seed)
    sets = {
        "clean": clean,
        "classwise": random_noise_poison(clean, True, args.seed + 1, args.eps),
        "samplewise": random_noise_poison(clean, False, args.seed + 2, args.eps),
        "patch": patch_poison(clean, args.seed + 3, args.eps),
    }
    runs = args.runs.split(",")
    config = TrainConfig(
        dataset=args.dataset,
        model="resnet18",
        width=args.width,
        recipe="paper",  # the default before 0.2.0 (crop+flip, constant lr): the numbers this study recorded
        epochs=args.epochs,
        batch_size=args.train_batch,
        lr=args.lr,
        seed=args.seed,
        precision="fp32",
        device=args.device,
    )
    print(
        f"settings: resnet18 width {args.width}, {args.dataset} real subset N={args.n_train}, "
        f"{args.epochs} epochs (batch {args.train_batch}, lr {args.lr}), "
        f"poisons {args.eps}/255, "
        f"SAL every {args.every} epochs, origin {args.origin}, SAL batch {args.sal_batch}, "
        f"SAL eps 0.05, SAL lr 0.1, {args.device}, threads {args.threads}",
        flush=True,
    )

    records: dict[str, dict] = {}
    train_epoch_seconds = []
    for run in runs:
        snap = Snapshot(args.every)
        result = train(config, train_set=sets[run], test_set=test, probes=[snap], progress=False)
        train_epoch_seconds += [h["train_seconds"] for h in result.history]
        accs = [h["test_acc"] for h in result.history]
        records[run] = {"final_acc": accs[-1], "peak_acc": max(accs), "epochs": {}}
        model = result.model
        for epoch, (state, running) in sorted(snap.snaps.items()):
            model.load_state_dict(state)
            key = f"{run}/{epoch}"
            kw = dict(
                origin=args.origin,
                running_loss=running,
                batch_size=args.sal_batch,
                layers=args.layers.split(",") if args.layers else None,
            )
            for k in range(args.faithful_repeats):  # repeat k > 0 draws other shuffles and augmentations
                kkey = key if k == 0 else f"{key}#{k}"
                stale = kkey in cache and args.origin == "running" and abs(cache[kkey]["l0"] - running) > 1e-9
                if (
                    stale
                ):  # the run trained differently (code or thread count changed): its cached SAL is of other weights
                    print(
                        f"  {kkey}: cached faithful SAL is of another model (L0 "
                        f"{cache[kkey]['l0']:.6f} vs {running:.6f}); recomputing",
                        flush=True,
                    )
                if kkey not in cache or stale:
                    faithful = model_sal(
                        model,
                        sets[run],
                        mode="faithful",
                        rounds=args.faithful_rounds,
                        seed=args.seed * 1_000_003 + epoch + 7919 * k,
                        **kw,
                    )
                    cache[kkey] = {
                        "sal": faithful.values(),
                        "layers": list(faithful.layers),
                        "seconds": faithful.seconds,
                        "max": [r.loss_max for r in faithful.layers.values()],
                        "min": [r.loss_min for r in faithful.layers.values()],
                        "l0": faithful.loss0,
                    }
                    atomic_write_json(cache_path, cache)
            entry = {
                "faithful": cache[key],
                "repeats": [cache[f"{key}#{k}"] for k in range(1, args.faithful_repeats)],
                "fast": [],
            }
            for cfg in variants:
                fast = model_sal(model, sets[run], mode="fast", seed=args.seed, fast=cfg, **kw)
                rounds = [r.rounds for r in fast.layers.values()]
                entry["fast"].append(
                    {
                        "sal": fast.values(),
                        "seconds": fast.seconds,
                        "mean_rounds": float(np.mean(rounds)),
                        "max": [r.loss_max for r in fast.layers.values()],
                        "min": [r.loss_min for r in fast.layers.values()],
                    }
                )
            records[run]["epochs"][epoch] = entry
            rho = [spearmanr(entry["faithful"]["sal"], f["sal"]).statistic for f in entry["fast"]]
            entry["eval_loss"], entry["train_acc_eval"] = evaluate_classifier(
                model, sets[run], torch.device(args.device)
            )
            print(
                f"  {run} epoch {epoch}: running loss {running:.3f}, "
                f"eval-mode loss {entry['eval_loss']:.3f} (acc {entry['train_acc_eval']:.0f}%) "
                f"on its training set; faithful {entry['faithful']['seconds']:.0f}s; fast "
                + ", ".join(f"{f['seconds']:.1f}s rho {r:.3f}" for f, r in zip(entry["fast"], rho)),
                flush=True,
            )

    report(args, variants, records, float(np.mean(train_epoch_seconds)))
    atomic_write_json(
        out / "results.json",
        {"args": vars(args), "records": records, "train_epoch_seconds": float(np.mean(train_epoch_seconds))},
    )
    return 0


def report(args, variants, records, epoch_seconds: float) -> None:
    runs = list(records)
    entries = [e for r in runs for e in records[r]["epochs"].values()]
    repeats = min(len(e.get("repeats", [])) for e in entries)
    # cost: the last faithful repeat, computed by this process beside the fast variants (a cached first pass may
    # have been timed on a machine under another load)
    timed = [e["repeats"][-1] if repeats else e["faithful"] for e in entries]
    faithful_s = sum(t["seconds"] for t in timed)
    print(
        f"\none training epoch on N={args.n_train}: {epoch_seconds:.2f}s; "
        f"faithful SAL: {faithful_s / len(entries):.0f}s per probed epoch "
        f"= {faithful_s / len(entries) / epoch_seconds:.0f} epoch-equivalents "
        f"({'repeat ' + str(repeats) if repeats else 'first pass'} timed)"
    )
    first = lambda e: e["faithful"]["sal"]  # noqa: E731
    pooled = lambda e: np.mean([e["faithful"]["sal"], *(r["sal"] for r in e["repeats"][:repeats])], axis=0)  # noqa: E731
    for k in range(1, 1 + repeats):
        print(f"\nfaithful, another seed (repeat {k}) against the first: the reference's own noise floor")
        agreement(records, lambda e, k=k: e["repeats"][k - 1]["sal"], first)
    for i, cfg in enumerate(variants):
        fast_s = sum(e["fast"][i]["seconds"] for e in entries)
        ratio = faithful_s / fast_s
        rounds = np.mean([e["fast"][i]["mean_rounds"] for e in entries])
        print(f"\nfast {cfg}")
        print(
            f"  cost: {fast_s / len(entries):.1f}s per probed epoch = "
            f"{fast_s / len(entries) / epoch_seconds:.1f} epoch-equivalents; "
            f"measured ratio faithful/fast = {ratio:.1f}x (mean rounds run {rounds:.2f})"
        )
        scale = (args.full_n / args.n_train) / (args.full_subset / cfg.subset)
        print(
            f"  projection (not measured): at N={args.full_n} with a {args.full_subset}-image subset, "
            f"faithful cost x{args.full_n / args.n_train:.0f}, "
            f"fast x{args.full_subset / cfg.subset:.0f}: ratio ~{ratio * scale:.0f}x"
        )
        fast = lambda e, i=i: e["fast"][i]["sal"]  # noqa: E731
        print("  against the first faithful pass:")
        agreement(records, fast, first)
        if repeats:
            print(
                f"  against the mean of the {repeats + 1} faithful "
                f"passes (1/{repeats + 1} of one pass's noise variance):"
            )
            agreement(records, fast, pooled)


def agreement(records, candidate, reference) -> None:
    """Per-snapshot Spearman rho of the layer SALs, and beta, #LP and UD of every poisoned run: candidate vs
    reference (functions of a snapshot's entry)."""
    runs = list(records)
    rhos = [spearmanr(reference(e), candidate(e)).statistic for r in runs for e in records[r]["epochs"].values()]
    print(
        f"  Spearman rho per probed epoch: mean {np.mean(rhos):.3f}, "
        f"min {np.min(rhos):.3f}  ({', '.join(f'{r:.2f}' for r in rhos)})"
    )
    if "clean" not in records:
        return

    def mat(run, get):
        return np.array([get(e) for _, e in sorted(records[run]["epochs"].items(), key=lambda kv: int(kv[0]))])

    r_clean, c_clean = mat("clean", reference), mat("clean", candidate)
    br, bc = learnable_threshold(r_clean), learnable_threshold(c_clean)
    lpr, lpc = learnable_count(r_clean, br), learnable_count(c_clean, bc)
    print(f"  beta reference {br:.4f} candidate {bc:.4f}; #LP clean reference {lpr:.2f} candidate {lpc:.2f}")
    for run in (r for r in runs if r != "clean"):
        rp, cp = mat(run, reference), mat(run, candidate)
        udr = learnable_count(rp, br) / lpr if lpr else float("nan")
        udc = learnable_count(cp, bc) / lpc if lpc else float("nan")
        print(
            f"  {run:10s} acc {records[run]['final_acc']:.1f}/{records[run]['peak_acc']:.1f}: "
            f"#LP reference {learnable_count(rp, br):.2f} "
            f"candidate {learnable_count(cp, bc):.2f}; UD reference "
            f"{udr:.3f} candidate {udc:.3f} (|diff| {abs(udr - udc):.3f})"
        )


if __name__ == "__main__":
    raise SystemExit(main())
