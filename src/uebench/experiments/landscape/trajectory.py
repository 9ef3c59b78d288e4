"""Weight trajectories on disk: record every weight of a model
every k optimizer steps, read them back in bounded memory.

A trajectory is a folder:

    index.json        what is stored: number of parameters, the parameter layout, the chunk files in order, the
                      recorded steps (optimizer steps done when the row was taken; 0 = the initial weights), the
                      batch loss of the step that produced each row, and `finished`
    chunk-00000.npy   float32 (rows, P): one row per recorded step, the flattened parameters in model order
    chunk-00001.npy   ...

Rows are buffered in memory up to `chunk_bytes` and then written as one chunk; the chunk, then the index that names
it, are written atomically, so a reader never sees a half-written row and a killed run leaves a readable (unfinished)
prefix. Readers memory-map the chunks: whole-trajectory work goes chunk by chunk (rows) or block by block (columns).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn as nn

from ...core.errors import UserError
from ...core.io import atomic_write_bytes, atomic_write_json
from ...data.base import ImageDataset
from ...training.fit import fit
from ...training.trainer import ClassificationStep

INDEX = "index.json"
FORMAT = "uebench-trajectory-v1"


# ---- parameter layout ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    name: str  # parameter name, e.g. "fc.weight"
    shape: tuple[int, ...]
    offset: int  # position of its first element in the flat vector

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


def layout(model: nn.Module) -> list[Slot]:
    """Where each parameter tensor sits in the flat weight vector (model.parameters() order)."""
    out, offset = [], 0
    for name, p in model.named_parameters():
        out.append(Slot(name, tuple(p.shape), offset))
        offset += p.numel()
    return out


def coordinate_name(slots: list[Slot], j: int) -> str:
    """'fc.weight[3, 412]' for flat index j."""
    for s in slots:
        if s.offset <= j < s.offset + s.numel:
            idx = np.unravel_index(j - s.offset, s.shape) if s.shape else ()
            return f"{s.name}[{', '.join(str(int(i)) for i in idx)}]"
    raise IndexError(f"flat index {j} outside the {sum(s.numel for s in slots)} parameters")


def flat_weights(model: nn.Module) -> torch.Tensor:
    """All parameters as one float32 CPU vector (a copy)."""
    return torch.cat([p.detach().reshape(-1).float().cpu() for p in model.parameters()])


@torch.no_grad()
def set_flat_weights(model: nn.Module, vector: torch.Tensor | np.ndarray) -> None:
    v = torch.as_tensor(np.asarray(vector, dtype=np.float32) if not isinstance(vector, torch.Tensor) else vector)
    offset = 0
    for p in model.parameters():
        n = p.numel()
        p.copy_(v[offset : offset + n].view_as(p).to(p.device, p.dtype))
        offset += n
    if offset != len(v):
        raise ValueError(f"weight vector has {len(v)} entries, the model {offset}")


# ---- writing ------------------------------------------------------------------------------------------------
class TrajectoryWriter:
    """Append flattened weights row by row; memory holds at most one chunk (`chunk_bytes`)."""

    def __init__(
        self, folder: str | Path, slots: list[Slot], meta: dict[str, Any] | None = None, chunk_bytes: int = 32 << 20
    ):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("chunk-*.npy"):  # a fresh recording replaces an old one entirely
            old.unlink()
        self.slots = slots
        self.num_params = sum(s.numel for s in slots)
        self.meta = dict(meta or {})
        self.chunk_rows = max(1, chunk_bytes // (4 * max(self.num_params, 1)))
        self.buffer: list[np.ndarray] = []
        self.chunks: list[dict[str, Any]] = []
        self.steps: list[int] = []
        self.losses: list[float | None] = []
        self._write_index(finished=False)

    def append(self, step: int, weights: torch.Tensor | np.ndarray, loss: float | None = None) -> None:
        row = np.asarray(
            weights.detach().cpu() if isinstance(weights, torch.Tensor) else weights, dtype=np.float32
        ).reshape(-1)
        if row.size != self.num_params:
            raise ValueError(f"row of {row.size} weights for a trajectory of {self.num_params}")
        if self.steps and step <= self.steps[-1]:
            raise ValueError(f"steps must increase: {step} after {self.steps[-1]}")
        self.buffer.append(row.copy())
        self.steps.append(int(step))
        self.losses.append(None if loss is None else float(loss))
        if len(self.buffer) >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        name = f"chunk-{len(self.chunks):05d}.npy"
        bio = io.BytesIO()
        np.save(bio, np.stack(self.buffer))
        atomic_write_bytes(self.folder / name, bio.getvalue())
        self.chunks.append({"file": name, "rows": len(self.buffer)})
        self.buffer = []
        self._write_index(finished=False)

    def close(self, **extra: Any) -> None:
        """Write what is buffered and mark the trajectory finished (with `extra` merged into its meta)."""
        self.flush()
        self.meta.update(extra)
        self._write_index(finished=True)

    def _write_index(self, finished: bool) -> None:
        stored = sum(c["rows"] for c in self.chunks)
        atomic_write_json(
            self.folder / INDEX,
            {
                "format": FORMAT,
                "num_params": self.num_params,
                "layout": [{"name": s.name, "shape": list(s.shape), "offset": s.offset} for s in self.slots],
                "chunks": self.chunks,
                "steps": self.steps[:stored],
                "losses": self.losses[:stored],
                "finished": finished,
                "meta": self.meta,
            },
        )


# ---- reading ------------------------------------------------------------------------------------------------
class Trajectory:
    """A recorded trajectory, memory-mapped. Rows are recorded steps, columns are weights."""

    def __init__(self, folder: Path, index: dict[str, Any]):
        self.folder = folder
        self.index = index
        self.num_params = int(index["num_params"])
        self.steps = np.asarray(index["steps"], dtype=np.int64)
        self.losses = [None if v is None else float(v) for v in index.get("losses", [None] * len(self.steps))]
        self.slots = [Slot(d["name"], tuple(d["shape"]), int(d["offset"])) for d in index["layout"]]
        self.meta = index.get("meta", {})
        self.finished = bool(index.get("finished"))
        self._chunks: list[np.ndarray] = []
        for c in index["chunks"]:
            path = folder / c["file"]
            try:
                arr = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise UserError(f"corrupt trajectory chunk {path}: {e}") from None
            if arr.dtype != np.float32 or arr.ndim != 2 or arr.shape != (c["rows"], self.num_params):
                raise UserError(
                    f"corrupt trajectory chunk {path}: {arr.dtype} {arr.shape}, "
                    f"index says ({c['rows']}, {self.num_params}) float32"
                )
            self._chunks.append(arr)
        if sum(len(a) for a in self._chunks) != len(self.steps):
            raise UserError(
                f"corrupt trajectory {folder}: {len(self.steps)} steps but {sum(len(a) for a in self._chunks)} rows"
            )

    @classmethod
    def open(cls, folder: str | Path) -> "Trajectory":
        folder = Path(folder)
        path = folder / INDEX
        if not path.is_file():
            raise UserError(f"no trajectory in {folder} (missing {INDEX})")
        try:
            index = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"corrupt trajectory index {path}: {e}") from None
        if index.get("format") != FORMAT:
            raise UserError(f"{path} is not a uebench trajectory (format {index.get('format')!r})")
        return cls(folder, index)

    def __len__(self) -> int:
        return len(self.steps)

    def row(self, i: int) -> np.ndarray:
        i = range(len(self))[i]  # negative indices, bounds check
        for arr in self._chunks:
            if i < len(arr):
                return np.array(arr[i])
            i -= len(arr)
        raise IndexError(i)

    @property
    def start(self) -> np.ndarray:
        return self.row(0)

    @property
    def end(self) -> np.ndarray:
        return self.row(-1)

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row index, rows) for each chunk, in order; rows are memory-mapped."""
        first = 0
        for arr in self._chunks:
            yield first, arr
            first += len(arr)

    def columns(self, j0: int, j1: int) -> np.ndarray:
        """All rows of weights j0..j1-1, as a (T, j1 - j0) float32 array."""
        return np.concatenate([np.asarray(a[:, j0:j1]) for a in self._chunks], axis=0)

    def block_width(self, max_bytes: int = 64 << 20, rows: int | None = None) -> int:
        """How many columns of (rows or len(self)) rows fit in max_bytes of float64."""
        return max(1, max_bytes // (8 * max(rows or len(self), 1)))

    def path_length(self) -> float:
        """Sum of the L2 lengths of the segments between consecutive recorded rows."""
        total, prev = 0.0, None
        for _, arr in self.chunks():
            for r in arr:
                r = r.astype(np.float64)
                if prev is not None:
                    total += float(np.linalg.norm(r - prev))
                prev = r
        return total

    def distances_to(self, point: np.ndarray) -> np.ndarray:
        """L2 distance of every recorded row to `point`."""
        p = np.asarray(point, dtype=np.float64)
        return np.concatenate([np.linalg.norm(arr.astype(np.float64) - p, axis=1) for _, arr in self.chunks()])

    def project(self, center: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """(T, k) coordinates of (row - center) along the k rows of `directions`."""
        c = np.asarray(center, dtype=np.float64)
        d = np.asarray(directions, dtype=np.float64)
        return np.concatenate([(arr.astype(np.float64) - c) @ d.T for _, arr in self.chunks()], axis=0)


# ---- training with recording ---------------------------------------------------------------------------------
@dataclass
class SGDSettings:
    """Plain SGD, no augmentation: the landscape runs (defaults suit MNIST on a linear model and LeNet-5)."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0

    def steps_per_epoch(self, n: int) -> int:
        return -(-n // self.batch_size)


def recorded_steps(total_steps: int, every: int) -> list[int]:
    """The optimizer steps a recording holds: 0 (the initial weights), every `every`-th step, and the last one."""
    steps = list(range(0, total_steps + 1, every))
    if steps[-1] != total_steps:
        steps.append(total_steps)
    return steps


def train_recorded(
    model: nn.Module,
    ds: ImageDataset,
    sgd: SGDSettings,
    writer: TrajectoryWriter,
    *,
    order_seed: int,
    record_every: int = 1,
    device: torch.device | str = "cpu",
    progress=None,
) -> dict[str, Any]:
    """Train `model` on ds with plain SGD, appending its flattened weights to `writer` at `recorded_steps`.

    Batches come from the trainer's epoch stream (`uebench.training.fit.epoch_generator(order_seed, epoch)`), so two
    runs with the same order seed see the same image positions in the same order: a clean and a poisoned run differ only
    in pixels. `progress` is an optional callable called once per optimizer step.
    """
    if record_every < 1:
        raise UserError(f"--record-every must be >= 1, got {record_every}")
    device = torch.device(device)
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=sgd.lr, momentum=sgd.momentum, weight_decay=sgd.weight_decay)
    total = sgd.epochs * sgd.steps_per_epoch(len(ds))
    writer.append(0, flat_weights(model), None)
    losses: list[float] = []

    def keep(loss: torch.Tensor) -> None:  # the recorder: a row every `record_every` optimizer steps, and the last one
        value = float(loss)
        losses.append(value)
        step = len(losses)
        if step % record_every == 0 or step == total:
            writer.append(step, flat_weights(model), value)
        if progress is not None:
            progress()

    # plain SGD on un-augmented fp32 batches, through the trainer's loop (the same epoch streams)
    plain = ClassificationStep(ds, "none", device, contextlib.nullcontext, channels_last=False)
    fit(
        model,
        opt,
        plain,
        len(ds),
        epochs=sgd.epochs,
        batch_size=sgd.batch_size,
        lr_at=lambda _e: sgd.lr,
        seed=order_seed,
        on_step=keep,
    )
    model.eval()
    writer.close(total_steps=total, record_every=record_every)
    return {"total_steps": total, "recorded": len(writer.steps), "final_batch_loss": losses[-1] if losses else None}
