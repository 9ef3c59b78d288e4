"""Run folders: config.json, manifest.json, metrics.jsonl, checkpoint.pt, summary.json, and weights/ (the model at
each SAL epoch, kept when asked, so SAL can be measured again later with other settings: `uebench sal-sweep`).

Every file is written atomically. The checkpoint is the commit point of an epoch: it holds the model, the optimizer
and the full epoch history, and metrics.jsonl is a readable copy of that history. A kill between the two renames
leaves metrics.jsonl one epoch behind; every open of the folder (`sync_metrics`) rewrites it from the checkpoint,
so it never stays behind. Checkpoints are read with weights_only=True: tensors and plain types only, no code.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..core.errors import UserError
from ..core.io import (
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    dumps_json,
    fault_after_epoch,
    loads_json,
    read_json,
    temp_prefix,
    utf8_path,
)
from ..core.lock import is_scratch, remove_owned, same_shape, sweep_stale
from ..metrics.ud import RunSAL, run_sal

CONFIG, MANIFEST, METRICS, CHECKPOINT, SUMMARY = (
    "config.json",
    "manifest.json",
    "metrics.jsonl",
    "checkpoint.pt",
    "summary.json",
)
RUN_FILES = (CONFIG, MANIFEST, METRICS, CHECKPOINT, SUMMARY)
WEIGHTS_DIR = "weights"


def safe_label(name: str, limit: int = 40) -> str:
    """A name (a user's file stem, an attack name) made safe as one folder name: letters, digits and _ + - . only,
    never starting with '.' (so never '.', '..' or a hidden file), at most `limit` characters."""
    label = re.sub(r"[^A-Za-z0-9_.+-]", "_", str(name))[:limit]
    label = re.sub(r"^\.", "_", label)
    return label or "poison"


def run_started(path: str | Path) -> bool:
    """Whether `path` holds a run to resume: its files, or what a run killed before its first record left there (its
    lock, a temporary file). A missing folder, or one holding only other files, has nothing to resume."""
    path = Path(path)
    if not path.is_dir():
        return False
    return any(os.path.lexists(path / f) for f in RUN_FILES) or any(is_scratch(p) for p in path.iterdir())


class RunFolder:
    def __init__(self, path: Path, config: dict[str, Any], *, resume: bool = False, overwrite: bool = False):
        self.path = Path(path)
        self.config = json.loads(json.dumps(config, default=str))  # normalise tuples etc. to JSON types
        existing = [f for f in RUN_FILES if (self.path / f).exists()]
        if overwrite and (existing or (self.path / WEIGHTS_DIR).exists()):
            self._clear()
        elif existing and not resume:
            state = "a finished run" if (self.path / SUMMARY).exists() else "an unfinished run"
            raise UserError(
                f"{self.path} already holds {state}; pass --resume to continue it or --overwrite to replace it"
            )
        elif existing:
            saved = read_json(self.path / CONFIG) if (self.path / CONFIG).exists() else None
            if saved is not None and saved != self.config:
                diff = sorted(k for k in set(saved) | set(self.config) if saved.get(k) != self.config.get(k))
                raise UserError(
                    f"{self.path} holds a run of another configuration (differs in: "
                    f"{', '.join(diff)}); use another --out or --overwrite"
                )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f"{temp_prefix('write-test')}probe.tmp"  # tagged: a kill right here leaves no orphan
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise UserError(f"cannot write to output folder {self.path}: {e.strerror or e}") from None
        sweep_stale(self.path / WEIGHTS_DIR)  # a weights file a kill cut short (the folder's own temps: its lock)

    def _clear(self) -> None:
        """--overwrite: delete the run's files (and its kept weights), only where the folder provably holds a
        uebench run; a user's other files stay, a folder holding no run is refused with nothing deleted."""
        if not provably_a_run(self.path, self.config):
            names = [f for f in (*RUN_FILES, WEIGHTS_DIR) if os.path.lexists(self.path / f)]
            raise UserError(
                f"{self.path} holds {', '.join(names)} but no uebench run (no manifest.json of uebench's), so it is "
                "not provably a run: uebench deletes nothing there; use another --out"
            )
        weights = self.path / WEIGHTS_DIR
        kept = [weights_file(self.path, e) for e in kept_weights(self.path)] if not weights.is_symlink() else []
        remove_owned([*(self.path / f for f in RUN_FILES), *kept])
        sweep_stale(weights)
        with contextlib.suppress(OSError):
            weights.rmdir()  # only once empty: a user's own file in it stays, with the folder

    def finished(self) -> bool:
        return (self.path / SUMMARY).exists()

    def trained_on(self) -> tuple[tuple[int, int, int], int] | None:
        """(image shape, classes) of the data the run trained on, from its manifest; None if it does not say."""
        try:
            t = read_json(self.path / MANIFEST)["train_set"]
            shape, classes = tuple(int(x) for x in t["shape"]), int(t["num_classes"])
        except (UserError, KeyError, TypeError, ValueError):
            return None
        return (shape, classes) if len(shape) == 3 else None

    def start(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.path / CONFIG, self.config)
        if not (self.path / MANIFEST).exists():
            atomic_write_json(self.path / MANIFEST, manifest)

    def load_checkpoint(self, sync: bool = True) -> dict[str, Any] | None:
        """The last committed epoch, or None; metrics.jsonl is brought in line with it (`sync`: the writer's job;
        the other processes of a distributed run only read)."""
        state = load_checkpoint(self.path / CHECKPOINT)
        if state is not None and sync:
            sync_metrics(self.path, state["history"])
        return state

    def save_epoch(self, model: torch.nn.Module, opt: torch.optim.Optimizer, history: list[dict[str, Any]]) -> None:
        atomic_torch_save(
            self.path / CHECKPOINT, {"model": model.state_dict(), "optimizer": opt.state_dict(), "history": history}
        )
        write_metrics(self.path, history)
        fault_after_epoch(len(history))

    def finish(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.path / SUMMARY, summary)

    def summary(self) -> dict[str, Any]:
        return read_json(self.path / SUMMARY)


def provably_a_run(path: Path, config: dict[str, Any]) -> bool:
    """Whether `path` holds a run uebench wrote: a manifest naming the uebench version that wrote it, or (a run
    killed before its manifest) a config.json of a run config's shape."""
    try:
        m = read_json(path / MANIFEST)
        if isinstance(m, dict) and "uebench" in m and "train_set" in m:
            return True
    except (OSError, UserError):
        pass
    try:
        return same_shape(read_json(path / CONFIG), config)
    except (OSError, UserError):
        return False


def weights_file(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / WEIGHTS_DIR / f"epoch-{epoch:04d}.safetensors"


def save_weights(run_dir: str | Path, epoch: int, model: torch.nn.Module) -> None:
    """The model's parameters and buffers after `epoch` (safetensors: tensors only, nothing to unpickle)."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(weights_file(run_dir, epoch), save(state))


def kept_weights(run_dir: str | Path) -> list[int]:
    """The epochs whose weights the run kept, in order."""
    folder = Path(run_dir) / WEIGHTS_DIR
    found = (re.fullmatch(r"epoch-(\d{4,})\.safetensors", f.name) for f in folder.iterdir()) if folder.is_dir() else ()
    return sorted(int(m.group(1)) for m in found if m)


def load_weights(run_dir: str | Path, epoch: int) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = weights_file(run_dir, epoch)
    if not path.is_file():
        raise UserError(f"{run_dir} kept no weights for epoch {epoch} (bench --keep-weights keeps them)")
    try:
        with utf8_path(path) as name:  # a bench folder named in another encoding is read as any other
            return load_file(name)
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path} cannot be read as safetensors weights ({type(e).__name__}); remove it") from None


def load_checkpoint(path: Path, *, mmap: bool = False) -> dict[str, Any] | None:
    """A run checkpoint, read without unpickling code (weights_only=True), or None when there is none. `mmap`: map
    the tensors instead of reading them (for readers that only want the history)."""
    if not path.exists():
        return None
    try:
        with utf8_path(path) as name:  # torch's mmap takes only UTF-8 names
            state = torch.load(name, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # damaged, or holds objects that weights_only refuses (code a crafted file would run)
        raise UserError(
            f"{path} cannot be read as a run checkpoint ({type(e).__name__}: tensors and plain types "
            "only); remove it or pass --overwrite"
        ) from None
    if not (isinstance(state, dict) and isinstance(state.get("history"), list) and "model" in state):
        raise UserError(f"{path} is not a run checkpoint (no model and history); remove it or pass --overwrite")
    return state


def _metrics_text(history: list[dict[str, Any]]) -> str:
    # strict JSON, as every file uebench writes: a diverged epoch's NaN loss is written as null
    return "".join(dumps_json(h, sort_keys=True) + "\n" for h in history)


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(Path(run_dir) / METRICS, _metrics_text(history))


def sync_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl from the checkpoint's history when the two differ (a kill between their renames)."""
    try:
        if (Path(run_dir) / METRICS).read_text() == _metrics_text(history):
            return
    except (OSError, UnicodeDecodeError):
        pass
    write_metrics(run_dir, history)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """A run's epoch records. The checkpoint, when there is one, is the commit point and wins over metrics.jsonl."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS
    if not path.exists():
        raise UserError(f"{run_dir} is not a run folder (no {METRICS})")
    state = load_checkpoint(run_dir / CHECKPOINT, mmap=True)  # the history only: the weights are never read
    if state is not None:
        return state["history"]
    try:
        with open(path, "rb") as f:
            records = [loads_json(line, str(path)) for line in f if line.strip()]
    except OSError as e:
        raise UserError(f"{path} cannot be read ({type(e).__name__})") from None
    if not all(isinstance(r, dict) for r in records):
        raise UserError(f"{path} is damaged: every line must be a JSON object")
    return records


@dataclass(frozen=True)
class RunRecord:
    """What a run folder holds for a reader: the committed epoch records, and the summary (None until finished)."""

    history: list[dict[str, Any]]
    summary: dict[str, Any] | None

    @property
    def epochs_done(self) -> int:
        return len(self.history)


def read_run(run_dir: str | Path) -> RunRecord:
    """The one reader of a run folder for everything downstream (report, bench resume); a folder not started yet
    reads as empty."""
    run_dir = Path(run_dir)
    history = read_metrics(run_dir) if (run_dir / METRICS).exists() else []
    summary = read_json(run_dir / SUMMARY) if (run_dir / SUMMARY).exists() else None
    return RunRecord(history, summary)


def git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def manifest(
    seed: int, device: torch.device, precision: str, train_set, test_set, defense: dict | None = None
) -> dict[str, Any]:
    import numpy

    from .. import __version__

    return {
        "uebench": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "git_revision": git_revision(),
        "seed": seed,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "train_set": train_set.describe(),
        "test_set": test_set.describe(),
        "defense": defense,  # the resolved settings, defaults included
    }


def load_run_sal(run_dir: str | Path, layers: Sequence[str] | None = None, origin: str | None = None) -> RunSAL:
    """A run folder's SAL matrix (uebench.metrics.run_sal of its epoch records)."""
    return run_sal(read_metrics(run_dir), str(run_dir), layers, origin)
