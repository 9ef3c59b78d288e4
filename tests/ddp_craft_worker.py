"""One process of tests/test_distributed.py's data-parallel EM craft: the float perturbation saved per rank."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from uebench.attacks import ATTACKS, make_config
from uebench.data import load

if __name__ == "__main__":
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    ds = load("scenes", None, "train", n_train=96, n_test=32)
    cls = ATTACKS.get("em")
    # a linear crafting model (no BatchNorm): the averaged share gradients are the global batch's gradient
    params = {"model": "linear", "pgd_batch": 16, "train_steps": 4, "batch_size": 32, "lr": 0.05, "steps": 3}
    attack = cls(make_config(cls, "paper", device="cpu", step=2 / 255, max_rounds=3, **params))
    attack.validate(ds)
    pert = attack.perturb(ds, seed=0, progress=False)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    np.save(out / f"rank{rank}.npy", pert.delta.numpy())
    np.save(out / f"history{rank}.npy", np.array(pert.extra["crafting_acc_history"]))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
