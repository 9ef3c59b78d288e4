"""One process of tests/test_distributed.py's data-parallel crafts (EM, TAP): the float perturbation saved per rank."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from uebench.attacks import ATTACKS, make_config
from uebench.data import load

if __name__ == "__main__":
    out, name = Path(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(1)
    # the images the measured thresholds of test_distributed.py were set on
    ds = load("scenes", None, "train", n_train=96 if name == "em" else 256, n_test=32, difficulty="standard")
    cls = ATTACKS.get(name)
    # a linear crafting model (no BatchNorm): the averaged share gradients are the global batch's gradient
    params = {
        "em": {"train_steps": 4, "batch_size": 32, "lr": 0.05, "steps": 3, "max_rounds": 3},
        # as tests/test_attacks_model.py's TAP check: a clean crafting model that is a real classifier
        "tap": {
            **{"model": "resnet18", "width": 0.125, "clean_epochs": 8, "clean_batch_size": 32, "clean_lr": 0.05},
            **{"iterations": 6, "restarts": 1, "augment": False},
        },
    }[name]
    params = {"model": "linear", **params}
    attack = cls(make_config(cls, "paper", device="cpu", pgd_batch=16, step=2 / 255, **params))
    attack.validate(ds)
    pert = attack.perturb(ds, seed=0, progress=False)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    np.save(out / f"rank{rank}.npy", pert.delta.numpy())
    e = pert.extra
    record = (
        e["crafting_acc_history"]
        if name == "em"
        else [e["crafting_model_target_acc"], e["crafting_model_clean_target_acc"]]
    )
    np.save(out / f"history{rank}.npy", np.array(record))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
