"""Victims that start from pretrained weights, and layers frozen while they fine-tune.

BAIT (ICLR 2026) shows that fine-tuning from a pretrained backbone learns the content of unlearnable examples that
stop a victim trained from scratch. `--init-from WEIGHTS.safetensors` starts a run from such weights:

- read weights-only (safetensors: tensors, no code), after a look at the header alone: a file far larger than the
  model could fill, one that is not safetensors, tensors of other names, shapes or kinds (an integer where a weight
  goes), or NaN/inf values are refused in one line naming what differs;
- the classifier head (the model's last Linear with one output per class) is loaded where its shape is the run's, and
  re-initialised (the run's own seeded init, as a run from scratch draws it) where the file's classes differ in
  number, where the file holds no head, or always with `init_head="reset"` (classes of another dataset that happen
  to be as many); the run's manifest says which;
- BatchNorm running statistics are part of the weights and are loaded with them; fine-tuning then updates them as
  any training does, except in frozen layers, which keep the file's statistics (their BatchNorm stays in eval mode).

`freeze` names modules (`conv1`, `bn1`, `layer1`, or a nested one, `layer1.0`) whose parameters get no updates: they
are left out of the optimizer (no step, no weight decay, no momentum), and their BatchNorm layers keep their running
statistics (eval mode even while the rest of the model trains).
"""

from __future__ import annotations

import math
import os
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from ..core.errors import UserError
from ..core.io import file_sha256, utf8_path

INIT_HEADS = ("auto", "reset")
HEADER_ROOM = 16 * 2**20  # a safetensors header (names, shapes, offsets, metadata) beyond the tensors' bytes
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
INT_DTYPES = {"I8", "I16", "I32", "I64", "U8"}


@dataclass(frozen=True)
class InitRecord:
    """What a run loaded: the manifest's `init` entry."""

    name: str  # the file's name (its folder is where it lay, not what it is)
    sha256: str
    tensors: int  # tensors loaded from the file
    head: str  # "loaded" | "reinitialised"
    head_reason: str | None  # why the head was re-initialised
    head_layers: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "sha256": self.sha256,
            "tensors": self.tensors,
            "head": self.head,
            "head_layers": list(self.head_layers),
            # what happens to the BatchNorm statistics, said where a reader of the run looks for it
            "batchnorm": "running statistics loaded from the file; updated by training except in frozen layers",
        }
        if self.head_reason:
            out["head_reason"] = self.head_reason
        return out


def head_names(model: nn.Module, num_classes: int) -> tuple[str, ...]:
    """The state-dict names of the classifier head: the model's last nn.Linear with `num_classes` outputs (resnet's
    `linear`, vgg's `classifier`, lenet's `fc3`, vit's `head`); none if it has no such layer."""
    found = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not found:
        return ()
    layer = found[-1]
    return tuple(f"{layer}.{p}" for p, _ in model.get_submodule(layer).named_parameters(recurse=False))


def _shape(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape)) or "scalar"


def _some(names: Sequence[str], limit: int = 2) -> str:
    names = list(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def read_header(path: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (safetensors dtype, shape)} of a weights file, from its header alone; one UserError line for a
    file that is missing or not safetensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--init-from {path}: no such file")
    try:
        with utf8_path(path) as name, safe_open(name, framework="pt") as f:
            out = {}
            for k in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                s = f.get_slice(k)
                out[k] = (str(s.get_dtype()), tuple(int(d) for d in s.get_shape()))
            return out
    except UserError:
        raise
    except Exception as e:
        raise UserError(
            f"--init-from {path} is not a readable safetensors weights file ({type(e).__name__}: {str(e)[:100]})"
        ) from None


def check_init_file(path: str | Path, model: nn.Module, num_classes: int, head: str = "auto") -> tuple[str, ...]:
    """Refuse (one UserError line) a weights file that cannot start `model`: too large to be its weights, not
    safetensors, tensors of other names, shapes or kinds than the model's. Returns the head's names where it is to be
    re-initialised (empty: every tensor is loaded). Reads the header only."""
    if head not in INIT_HEADS:
        raise UserError(f"unknown init head '{head}'; valid: {', '.join(INIT_HEADS)}")
    path = Path(path)
    state = model.state_dict()
    # the largest honest file: every tensor as float64, and a header
    most = sum(t.numel() for t in state.values()) * 8 + HEADER_ROOM
    size = os.path.getsize(path) if path.is_file() else 0
    if size > most:
        raise UserError(
            f"--init-from {path} holds {size / 2**20:,.1f} MiB, more than this model's weights could fill "
            f"({most / 2**20:,.1f} MiB even as float64): not weights of this model"
        )
    header = read_header(path)
    heads = head_names(model, num_classes)
    missing = [k for k in state if k not in header]
    extra = [k for k in header if k not in state]
    other = [k for k in state if k in header and header[k][1] != tuple(state[k].shape)]
    reset: tuple[str, ...] = ()
    if head == "reset" and heads:
        reset = heads
    elif heads and set(missing + other) and set(missing + other) <= set(heads):
        # the head alone differs: another number of classes (its input size must match), or no head in the file
        if all(k in header and header[k][1][1:] == tuple(state[k].shape)[1:] for k in other):
            reset = heads
    missing = [k for k in missing if k not in reset]
    other = [k for k in other if k not in reset]
    problems = []
    if missing:
        problems.append(f"missing {_some(missing)}")
    if extra:
        problems.append(f"not in the model: {_some(extra)}")
    if other:
        k = other[0]
        more = f" and {len(other) - 1} more" if len(other) > 1 else ""
        problems.append(
            f"of another shape: {k} ({_shape(header[k][1])} in the file, {_shape(state[k].shape)} here){more}"
        )
    for k, t in state.items():
        if k in reset or k not in header:
            continue
        kinds = FLOAT_DTYPES if t.is_floating_point() else INT_DTYPES
        if header[k][0] not in kinds:
            problems.append(f"of another kind: {k} ({header[k][0]} in the file, {str(t.dtype)[6:]} here)")
            break
    if problems:
        raise UserError(
            f"--init-from {path} does not fit this model ({len(state)} tensors): {'; '.join(problems)} (saved from "
            "another --model or --width?)"
        )
    return reset


def load_init(
    model: nn.Module, path: str | Path, num_classes: int, head: str = "auto", sha256: str | None = None
) -> InitRecord:
    """Load the weights of `path` into `model` (built with its run's seed): every tensor, except a head to
    re-initialise, which keeps the model's own seeded init. `sha256`: the hash the run recorded; a file that no
    longer has it is refused (the weights changed since the run started)."""
    from safetensors.torch import load_file

    path = Path(path)
    reset = check_init_file(path, model, num_classes, head)
    digest = file_sha256(path)
    if sha256 is not None and digest != sha256:
        raise UserError(
            f"--init-from {path} is not the file this run started from (sha256 {digest[:12]}..., the run recorded "
            f"{sha256[:12]}...); give that file, or start another run"
        )
    try:
        with utf8_path(path) as name:
            tensors = load_file(name)
    except Exception as e:
        raise UserError(f"--init-from {path} cannot be read ({type(e).__name__}: {str(e)[:100]})") from None
    state = {k: v for k, v in tensors.items() if k not in reset}
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UserError(f"--init-from {path} holds NaN or inf values (in {_some(bad)}): not usable weights")
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert sorted(missing) == sorted(reset) and not unexpected, (missing, unexpected)  # check_init_file's promise
    reason = None
    if reset:
        here = tuple(model.state_dict()[reset[0]].shape)
        there = tensors[reset[0]].shape if reset[0] in tensors else None
        if head == "reset":
            reason = "init_head reset"
        elif there is None:
            reason = "the file holds no head"
        else:
            reason = f"the file's head has {there[0]} classes, this run {here[0]}"
    return InitRecord(
        path.name, digest, len(state), "reinitialised" if reset else "loaded", reason, head_names(model, num_classes)
    )


# ---- frozen layers -----------------------------------------------------------------------------------------------
def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    """A frozen BatchNorm's `train`: it stays in eval mode, so its running statistics are never updated."""
    return nn.Module.train(self, False)


def check_freeze(model: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """The names of the parameters `prefixes` freeze; unknown module names, and a freeze of every parameter (nothing
    would train), are refused in one line."""
    modules = dict(model.named_modules())
    for p in prefixes:
        if not p or p not in modules:
            top = [n for n, m in model.named_children() if any(True for _ in m.parameters())]
            raise UserError(
                f"unknown module '{p}' for --freeze; valid: {', '.join(top)}, or a module inside one by its dotted "
                "name (as in the model's state dict)"
            )
    names = [n for n, _ in model.named_parameters() if any(n.startswith(p + ".") for p in prefixes)]
    if len(names) == len(list(model.parameters())):
        raise UserError(f"--freeze {','.join(prefixes)} freezes every parameter: nothing would train")
    return names


def freeze(model: nn.Module, prefixes: Sequence[str]) -> dict[str, Any]:
    """Freeze the modules named by `prefixes` (see the module docstring); what was frozen, for the manifest."""
    names = check_freeze(model, prefixes)
    frozen = set(names)
    for n, p in model.named_parameters():
        if n in frozen:
            p.requires_grad_(False)
    norms = []
    for n, m in model.named_modules():
        if any(n == p or n.startswith(p + ".") for p in prefixes) and isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train = types.MethodType(_stay_in_eval, m)
            m.eval()
            norms.append(n)
    total = sum(p.numel() for p in model.parameters())
    share = sum(p.numel() for n, p in model.named_parameters() if n in frozen) / max(total, 1)
    return {
        "modules": list(prefixes),
        "parameters": len(names),
        "share": round(share, 6) if math.isfinite(share) else None,
        "batchnorm_eval": norms,
    }


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer updates: all of them unless some are frozen."""
    return [p for p in model.parameters() if p.requires_grad]


__all__ = ["INIT_HEADS", "InitRecord", "check_freeze", "check_init_file", "freeze", "head_names", "load_init"]
