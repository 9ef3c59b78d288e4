"""Which part of a bf16 EM craft cost it its efficacy? EM alternates training steps of its crafting model with noise
(PGD) steps on the images; this crafts the main job's EM (quick preset, seed 0) with parts of it in bf16 autocast and
writes the poison for a bench to judge:

    python benchmarks/bf16_em_split.py rounded runs/diag/em-rounded.safetensors  # bf16 throughout, input rounded
    python benchmarks/bf16_em_split.py train runs/diag/em-train-bf16.safetensors  # bf16 training, fp32 noise steps
    python benchmarks/bf16_em_split.py noise runs/diag/em-noise-bf16.safetensors  # fp32 training, bf16 noise steps
    python benchmarks/bf16_em_split.py exact runs/diag/em-exact.safetensors       # uebench's bf16: first layer fp32
    uebench bench --preset quick --attacks '' --poison runs/diag/em-rounded.safetensors \\
        --poison runs/diag/em-train-bf16.safetensors --poison runs/diag/em-noise-bf16.safetensors \\
        --poison runs/diag/em-exact.safetensors --out runs/diag/bench

`rounded`, `train` and `noise` craft as uebench did before its bf16 crafting model's first layer ran in fp32: the
model then saw x + delta rounded to bf16. `train` and `noise` swap `attacks._crafting.pgd` (the noise steps) for a
wrapper that turns autocast off or on around it. A diagnosis, not settings uebench offers; `exact` is
`--attack-option precision=bf16`.
"""

from __future__ import annotations

import sys

import torch

from uebench.attacks import _crafting as C
from uebench.attacks import craft
from uebench.data import load
from uebench.experiments.bench.config import PRESETS

MODES = ("rounded", "train", "noise", "exact")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in MODES:
        print(f"usage: bf16_em_split.py {'|'.join(MODES)} OUT.safetensors", file=sys.stderr)
        return 2
    mode, out = argv
    torch.set_num_threads(1)
    if mode != "exact":
        C.exact_input = lambda model, cfg: model  # the crafting model as before: its input rounded to bf16
    if mode in ("train", "noise"):
        pgd = C.pgd

        def noise_steps(*a, **k):  # bf16 only where the noise half is the bf16 one
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "noise", cache_enabled=False):
                return pgd(*a, **k)

        C.pgd = noise_steps
    quick = PRESETS["quick"]
    ds = load(quick.dataset, None, "train", **quick.dataset_options)
    precision = "fp32" if mode == "noise" else "bf16"  # the craft's own context: the training half
    poison = craft("em", ds, preset=quick.attack_preset, seed=0, progress=False, precision=precision)
    e = poison.meta.extra
    print(f"{mode}: crafting accuracy {e['final_crafting_acc']}%, {e['rounds']} rounds ({e['stopped_by']})")
    poison.save(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
