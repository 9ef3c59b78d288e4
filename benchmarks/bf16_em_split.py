"""Which half of a bf16 EM craft costs it its efficacy? EM alternates training steps of its crafting model with
noise (PGD) steps on the images; this crafts the main job's EM (quick preset, seed 0) with one half in bf16 autocast
and the other in fp32, and writes the poison for a bench to judge:

    python benchmarks/bf16_em_split.py train runs/diag/em-train-bf16.safetensors   # bf16 training, fp32 noise steps
    python benchmarks/bf16_em_split.py noise runs/diag/em-noise-bf16.safetensors   # fp32 training, bf16 noise steps
    uebench bench --preset quick --attacks '' --poison runs/diag/em-train-bf16.safetensors \\
        --poison runs/diag/em-noise-bf16.safetensors --out runs/diag/bench

It swaps `attacks._crafting.pgd` (the noise steps) for a wrapper that turns autocast off or on around it: a
diagnosis, not a setting uebench offers.
"""

from __future__ import annotations

import sys

import torch

from uebench.attacks import _crafting as C
from uebench.attacks import craft
from uebench.data import load
from uebench.experiments.bench.config import PRESETS


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("train", "noise"):
        print("usage: bf16_em_split.py train|noise OUT.safetensors", file=sys.stderr)
        return 2
    half, out = argv
    torch.set_num_threads(1)
    pgd = C.pgd

    def noise_steps(*a, **k):  # bf16 only where the noise half is the bf16 one
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half == "noise", cache_enabled=False):
            return pgd(*a, **k)

    C.pgd = noise_steps
    quick = PRESETS["quick"]
    ds = load(quick.dataset, None, "train", **quick.dataset_options)
    precision = "bf16" if half == "train" else "fp32"  # the craft's own context: the training half
    poison = craft("em", ds, preset=quick.attack_preset, seed=0, progress=False, precision=precision)
    e = poison.meta.extra
    print(f"{half} in bf16: crafting accuracy {e['final_crafting_acc']}%, {e['rounds']} rounds ({e['stopped_by']})")
    poison.save(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
