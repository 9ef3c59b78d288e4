"""Do TAP, HYPO and SEP still craft the same bytes? Each trains a crafting model on clean data first (through
uebench.training.fit); this crafts all three at a tiny size, one thread, and prints a digest of each poison. Run it
before and after a change to the training loop and compare:

    OMP_NUM_THREADS=1 python benchmarks/clean_model_digest.py
"""

from __future__ import annotations

import hashlib

import torch

import uebench
from uebench.attacks import craft

OPTIONS = {
    "tap": dict(clean_epochs=2, iterations=2, restarts=1, width=0.125),
    "hypo": dict(clean_epochs=2, steps=3, width=0.125),
    "sep": dict(clean_epochs=3, models=2, iterations=2, width=0.125),
}


def main() -> None:
    torch.set_num_threads(1)
    ds = uebench.load("scenes", None, "train", n_train=64, n_test=16, difficulty="standard")  # as before 0.2.0
    for name, options in OPTIONS.items():
        poison = craft(name, ds, preset="fast", seed=0, progress=False, **options)
        print(name, hashlib.sha256(poison.images.numpy().tobytes()).hexdigest()[:16])


if __name__ == "__main__":
    main()
