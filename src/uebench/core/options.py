"""User-given options (`--data-option`, `--attack-option`, `--defense-option` KEY=VALUE) checked against the type they
are declared with, before anything runs. A word where a number goes, NaN or inf, 2.5 where a count goes, a count above
its bound (MAX_IMAGES and the others below, one table for every command): one UserError line naming the option, never a
traceback from deep inside the code that uses it, nor hours of work or a machine out of memory."""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from .errors import UserError, did_you_mean

_NOTHING = object()
MAX_SEED = 2**63 - 1  # torch.manual_seed's range

# Upper bounds of every count a user gives (command-line flags, dataset and attack options declared
# `Annotated[int, Count(...)]`). Each is far above any real use (the paper's settings, ImageNet's size) and low
# enough that a typo (10**12) is one line before any work, not hours of it or a machine out of memory.
MAX_IMAGES = 10_000_000  # images in a dataset, a subset, a batch or a probe (ImageNet-1k has 1.28 million)
MAX_IMAGE_SIZE = 4096  # pixels per side of a dataset's images
MAX_WIDTH = 16.0  # a model's width multiplier (the paper's 1.0; 16 makes ResNet-18 about 2.9 billion weights)
MAX_EPOCHS = 10_000  # training epochs of a run (APBench's longest recipe: 200)
MAX_SEEDS = 100  # training seeds of one bench (papers report 3 to 5)
MAX_RUNS = 10_000  # runs in one bench's plan (seeds x poisons x shares x defenses)
MAX_ROUNDS = 1_000  # SAL search rounds (the paper's 10; its reviewers asked for 20)
MAX_REPEATS = 100  # sal-sweep passes of every setting
MAX_BOOTSTRAP = 100_000  # replicates of UD's interval (default 1,000; a replicate of 50 epochs x 60 layers: ~1 ms)
MAX_STEPS = 10_000_000  # optimisation steps, rounds, restarts or trials of one crafting (REM's paper: 5,000 model
# steps; AR's process finder: up to 200,000 candidates)
MAX_FEATURES = 65_536  # channels or units of a layer an option sizes (DC's generator width: 64; CP's projection: 128)
MAX_DEPTH = 16  # levels of a network an option sets (DC's U-Net: 3 down-samplings)


@dataclass(frozen=True)
class Count:
    """`Annotated[int, Count(high)]`: an option that counts something, a whole number in [low, high]."""

    high: int
    low: int = 1


@dataclass(frozen=True)
class Within:
    """`Annotated[float, Within(low, high)]`: an option that measures something, a number in [low, high]."""

    low: float
    high: float


def check_count(value: Any, where: str, high: int, low: int = 1) -> int:
    """`value` if it is a whole number in [low, high], else one UserError line naming the bound."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"{where} must be a whole number in [{low:,}, {high:,}], got {value!r:.40}")
    return value


def typed_params(config: type, params: dict[str, Any], where: str) -> dict[str, Any]:
    """A config dataclass's parameters from a user: unknown names refused, each value coerced to its declared type
    and held to its Count bounds, one UserError line per mistake."""
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(params) - fields)
    if unknown:
        valid = ", ".join(sorted(fields)) or "(none)"
        hint = did_you_mean(unknown[0], fields) if len(unknown) == 1 else ""
        raise UserError(f"{where} has no parameter {', '.join(unknown)}{hint or ';'} valid: {valid}")
    hints = type_hints(config)
    return {k: coerce(v, hints.get(k, Any), f"{where}: parameter {k}") for k, v in params.items()}


def check_memory(nbytes: int, what: str) -> None:
    """Refuse, before allocating, what would need more memory than this machine has in all."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # no such query here: nothing to compare with
        return
    if nbytes > total > 0:
        raise UserError(
            f"{what} needs about {nbytes / 2**30:,.1f} GiB of memory; this machine has {total / 2**30:,.1f}"
        )


def check_seed(seed: Any, where: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"{where} must be a whole number in [0, 2**63 - 1], got {seed!r:.40}")
    return seed


def coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` as the type `hint` declares (int, float, bool, str, tuples, lists, Optional, Literal), or UserError."""
    got = _coerce(value, hint)
    if got is _NOTHING:
        raise UserError(f"{where} must be {describe(hint)}, got {value!r:.60}")
    return got


def _coerce(value: Any, hint: Any) -> Any:
    if hint is Any or hint is typing.Any or isinstance(hint, (str, typing.TypeVar)):
        return value  # undeclared: the code that uses it checks it
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        got = _coerce(value, args[0])
        bounds = [a for a in args[1:] if isinstance(a, (Count, Within))]
        counted = got is not _NOTHING and got is not None  # None: an optional count left unset
        return _NOTHING if counted and any(not b.low <= got <= b.high for b in bounds) else got
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is not type(None) and (got := _coerce(value, a)) is not _NOTHING:
                return got
        return _NOTHING
    if origin is Literal:
        return value if value in args else _NOTHING
    if hint is bool:
        return value if isinstance(value, bool) else _NOTHING
    if hint is int:
        if isinstance(value, bool):
            return _NOTHING
        if isinstance(value, int):
            return value
        return int(value) if isinstance(value, float) and value.is_integer() else _NOTHING
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok else _NOTHING
    if hint is str:
        return value if isinstance(value, str) else _NOTHING
    if origin in (tuple, list) and isinstance(value, (list, tuple)):
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(v, args[0]) for v in value]
        elif origin is tuple and args:
            if len(args) != len(value):
                return _NOTHING
            items = [_coerce(v, a) for v, a in zip(value, args)]
        else:
            items = [_coerce(v, args[0]) if args else v for v in value]
        return _NOTHING if any(i is _NOTHING for i in items) else origin(items)
    if origin is dict:
        return value if isinstance(value, dict) else _NOTHING
    if isinstance(hint, type):
        return value if isinstance(value, hint) else _NOTHING
    return value


def describe(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        bounds = "".join(f" in [{a.low:,}, {a.high:,}]" for a in args[1:] if isinstance(a, (Count, Within)))
        return describe(args[0]) + bounds
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    return {
        int: "a whole number",
        float: "a finite number",
        bool: "true or false",
        str: "a string",
        type(None): "null",
    }.get(hint, getattr(hint, "__name__", str(hint)))


def type_hints(obj: Any) -> dict[str, Any]:
    """The resolved annotations of a dataclass or a function (strings under `from __future__ import annotations`)."""
    try:
        return typing.get_type_hints(obj, include_extras=True)  # with the Count bounds of Annotated hints
    except Exception:  # an annotation that does not resolve: nothing to check against
        return {}
