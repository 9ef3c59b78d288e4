"""Per-epoch records and per-layer SAL to TensorBoard, as the paper's code logs SAL (`--tensorboard DIR`).

A probe that runs last in an epoch: every number of the epoch's record becomes a scalar (`train_loss`, `test_acc`,
`shortcut_acc`, ...), every per-layer dict one scalar per layer (`sal/conv1`, `sal_eval/layer1.0.conv1`, ...), at the
step of the epoch. The run folder stays the record; TensorBoard is a view of it. Needs the optional extra
(`pip install -e ".[tensorboard]"`); imported only when asked for.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from ..core.io import utf8_path


def _writer(log_dir: str):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError('--tensorboard needs TensorBoard: pip install -e ".[tensorboard]"') from None
    return SummaryWriter(log_dir)


@dataclass
class TensorBoardLog:
    log_dir: str | Path
    name: str = "tensorboard"
    _writer: Any = field(default=None, repr=False)
    _names: Any = field(default=None, repr=False)  # holds the folder's UTF-8 name open while the writer writes

    def __post_init__(self) -> None:
        self.log_dir = Path(self.log_dir)
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise UserError(f"--tensorboard {self.log_dir} is a file, not a folder")

    def __call__(self, ctx) -> dict[str, Any]:
        if self._writer is None:
            # TensorBoard takes only UTF-8 names: a folder named in another encoding is given to it by another name
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._names = contextlib.ExitStack()
            self._writer = _writer(self._names.enter_context(utf8_path(self.log_dir)))
        for key, value in scalars(ctx.record):
            self._writer.add_scalar(key, value, ctx.epoch)
        self._writer.flush()
        return {}


def scalars(record: dict[str, Any]) -> list[tuple[str, float]]:
    """(tag, value) for every finite number of a record, and for each layer of its per-layer dicts."""
    out = []
    for key, value in record.items():
        if key == "epoch" or key.endswith("_seconds"):
            continue
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            out.append((key, float(value)))
        elif isinstance(value, dict):
            out += [
                (f"{key}/{k}", float(v))
                for k, v in value.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            ]
    return out
