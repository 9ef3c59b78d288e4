"""Several processes training one run: torchrun and DistributedDataParallel (gloo on CPU, nccl on GPU).

    torchrun --nproc_per_node 2 -m uebench.cli train --dataset cifar10 ... --out runs/big

Every process draws the same global batch order from (seed, epoch), exactly as one process does, and trains on its
share of each global batch (positions rank, rank + world, ...); DDP averages the gradients, so a global batch is
one optimizer step whatever the world size (an exact match of one process when the shares are equal, the model has
no BatchNorm and no augmentation: BatchNorm normalises each share by its own statistics, and each process draws
its own augmentation for its share). The epoch's loss and accuracy are summed over the processes. Only rank 0
writes the run folder (checkpoints, records, summary) and runs the probes (test accuracy, SAL); every rank resumes
from the same checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def share(self, idx: torch.Tensor) -> torch.Tensor:
        """This process's share of a global batch."""
        return idx[self.rank :: self.size] if self.distributed else idx

    def total(self, value: torch.Tensor | float | int) -> torch.Tensor:
        """The sum of `value` over the processes, as a float64 tensor (the value itself in one process)."""
        t = torch.as_tensor(value).detach().to(torch.float64).clone()
        if not self.distributed:
            return t
        on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        t = t.to(on)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu()

    def assemble(self, rows: torch.Tensor, mine: torch.Tensor) -> torch.Tensor:
        """Every process's rows of a per-sample tensor put together: rows[mine] from this process, the other rows
        from the processes that own them (each row owned by one; a sum with zeros elsewhere, so exact)."""
        if not self.distributed:
            return rows
        out = torch.zeros_like(rows)
        out[mine] = rows[mine]
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


SINGLE = World()


def current(device: torch.device | None = None) -> World:
    """The world torchrun started this process in (WORLD_SIZE, RANK), its process group initialised once (gloo on
    CPU, nccl on CUDA); one process without torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    if not dist.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
    return World(dist.get_rank(), dist.get_world_size())


def wrap(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """The module the training steps run through: DDP over the model in a world of several processes (the model
    itself, unwrapped, keeps being what is saved and probed)."""
    if not world.distributed:
        return model
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)
