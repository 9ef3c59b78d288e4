"""User-given options (`--data-option`, `--attack-option`, `--defense-option` KEY=VALUE) checked against the type they are declared
with, before anything runs. A word where a number goes, NaN or inf, 2.5 where a count goes: one UserError line
naming the option, never a traceback from deep inside the code that uses it."""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from .errors import UserError

_NOTHING = object()
MAX_SEED = 2**63 - 1  # torch.manual_seed's range


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
        return typing.get_type_hints(obj)
    except Exception:  # an annotation that does not resolve: nothing to check against
        return {}
