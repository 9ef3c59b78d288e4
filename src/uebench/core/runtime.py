"""Where and in which precision torch runs: the device (`auto` picks CUDA where there is one) and the precision
(`auto` picks bf16 autocast where the hardware is fast at it, fp16 with a gradient scaler on other GPUs, fp32
elsewhere). One rule for training, crafting and probing."""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

from .errors import UserError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise UserError(f"unknown device '{name}'; valid: auto, cpu, cuda, cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for, but no CUDA device is available")
    return dev


def fast_bf16(device: torch.device) -> bool:
    """bf16 autocast pays off only with hardware bf16; on an AVX2-only CPU it is ~10x slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return bool(
        getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        or getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
    )


def refuse_bf16_without_support(device: torch.device, what: str, instead: str) -> None:
    """One line where bf16 is asked for on a GPU that has none (a CPU runs bf16 autocast everywhere, if slowly)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(f"{what} bf16: {device} has no bf16 support; use {instead}")


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision '{precision}'; valid: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16 (with a gradient scaler) is for CUDA devices; on a CPU use bf16 or fp32")
    if precision == "bf16":
        refuse_bf16_without_support(device, "--precision", "fp16, fp32 or auto")
    if precision == "auto":
        if fast_bf16(device):
            return "bf16"
        return "fp16" if device.type == "cuda" else "fp32"
    return precision


def grad_scaler(precision: str, device: torch.device):
    """fp16 needs its loss scaled (small gradients underflow); bf16 and fp32 do not."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def autocast_factory(device: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return lambda: torch.autocast(device.type, dtype=dtype)
    return contextlib.nullcontext
