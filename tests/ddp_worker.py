"""One process of tests/test_distributed.py's torchrun jobs: a small linear run, its final weights saved per rank."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from uebench.data import load
from uebench.training.trainer import TrainConfig, train

if __name__ == "__main__":
    out, weights, stop = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    config = TrainConfig(
        dataset="scenes", model="linear", recipe="cpu", epochs=3, batch_size=32, precision="fp32", device="cpu"
    )
    train_set = load("scenes", None, "train", n_train=96, n_test=32, difficulty="standard")
    test_set = load("scenes", None, "test", n_train=96, n_test=32, difficulty="standard")
    result = train(
        config, out, train_set=train_set, test_set=test_set, progress=False, resume=True, stop_after=stop or None
    )
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    flat = torch.cat([p.detach().flatten() for p in result.model.parameters()]).numpy()
    np.save(weights / f"rank{rank}.npy", flat)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
