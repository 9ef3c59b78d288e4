"""TOML in and out, for the config files a user gives (`uebench bench --config FILE`) and the ones uebench writes.

    text = dumps({"dataset": "cifar10", "seeds": [0, 1], "sal": {"mode": "fast"}}, header="written by uebench")
    assert loads(text, "bench.toml") == {"dataset": "cifar10", "seeds": [0, 1], "sal": {"mode": "fast"}}
    data = read("runs/x/bench.toml")   # a file a user gives: bounded, and every failure one UserError line

Reading is Python's own `tomllib`. Writing covers the values a config holds, each written so it reads back equal:
strings, integers (64-bit, TOML's range), floats (their exact repr, nan and inf included), booleans, lists of those
(nested lists too) and tables (dicts with string keys). TOML has no null, no tuple and no table inside a list here:
anything else raises TypeError or ValueError rather than write a file that reads back as something else.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any

from .errors import UserError
from .io import nesting_depth

MAX_BYTES = 1 << 20  # a config is a few hundred lines; a bigger file is not one
MAX_DEPTH = 100  # tables and lists nested deeper are refused (tomllib itself recurses)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_INT64 = (-(2**63), 2**63 - 1)


# ---- reading ------------------------------------------------------------------------------------------------------
def loads(text: str, where: str) -> dict[str, Any]:
    """Parse TOML text; not TOML (or nested too deeply): one UserError line naming `where` and tomllib's reason."""
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise UserError(f"{where} is nested too deeply") from None
    except ValueError as e:  # tomllib.TOMLDecodeError, or an integer of thousands of digits
        reason = (str(e).strip().splitlines() or ["unreadable"])[0]
        raise UserError(f"{where} is not valid TOML: {reason}") from None
    if nesting_depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise UserError(f"{where} is nested too deeply (more than {MAX_DEPTH} levels)")
    return data


def read(path: str | Path, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """A TOML file a user gives, read whole only if it is at most `max_bytes`: a missing file, a folder, a file too
    big, not UTF-8 or not TOML is one UserError line."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise UserError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise UserError(f"config file {path} is a folder, not a file") from None
    except OSError as e:
        raise UserError(f"cannot read config file {path}: {e.strerror or e}") from None
    if len(raw) > max_bytes:
        raise UserError(f"config file {path} is over {max_bytes:,} bytes: not a config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not valid TOML: not UTF-8 text (byte {e.start})") from None
    return loads(text, str(path))


def first_line(path: str | Path, max_bytes: int = MAX_BYTES) -> str:
    """The file's first line (its header comment, where uebench wrote it); '' if there is none."""
    with open(path, "rb") as f:
        return f.read(max_bytes).split(b"\n", 1)[0].decode("utf-8", "replace").strip()


# ---- writing ------------------------------------------------------------------------------------------------------
def dumps(data: dict[str, Any], header: str = "") -> str:
    """`data` as TOML text: each table's plain keys first, then its sub-tables as [a.b] sections (an empty table is
    its header alone). `header`: comment lines on top. Raises TypeError or ValueError for a value TOML cannot hold
    as it is (None, a tuple, a set, a table in a list, a lone surrogate, an integer beyond 64 bits)."""
    if not isinstance(data, dict):
        raise TypeError(f"a TOML document is a table, got {type(data).__name__}")
    lines = [f"# {line}".rstrip() for line in header.splitlines()] + ([""] if header else [])
    _table(data, (), lines)
    return "\n".join(lines).strip("\n") + "\n"


def _table(data: dict[str, Any], path: tuple[str, ...], lines: list[str]) -> None:
    for k in data:
        if not isinstance(k, str):
            raise TypeError(f"TOML keys are strings, got {k!r} in {_dotted(path) or 'the document'}")
    plain = [(k, v) for k, v in data.items() if not isinstance(v, dict)]
    tables = [(k, v) for k, v in data.items() if isinstance(v, dict)]
    for k, v in plain:
        lines.append(f"{key(k)} = {value(v, _dotted((*path, k)))}")
    for k, v in tables:
        sub = (*path, k)
        if not v or not all(isinstance(x, dict) for x in v.values()):  # a table of tables alone needs no header
            lines += [""] * bool(lines and lines[-1]) + [f"[{_dotted(sub)}]"]
        _table(v, sub, lines)


def key(k: str) -> str:
    """A key, bare where TOML allows it, else a basic string."""
    return k if _BARE_KEY.fullmatch(k) else string(k)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(key(k) for k in path)


def value(v: Any, where: str = "value") -> str:
    """One value as TOML writes it (a scalar or a list, never a table)."""
    if isinstance(v, bool):  # before int: a bool is an int
        return "true" if v else "false"
    if isinstance(v, int):
        if not _INT64[0] <= v <= _INT64[1]:
            raise ValueError(f"{where}: {v} is beyond TOML's 64-bit integers")
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"  # TOML has one nan; a float's sign and payload of nan are not kept
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)  # the shortest text that reads back to the same float; always a '.' or an 'e'
    if isinstance(v, str):
        return string(v)
    if isinstance(v, list):
        return "[" + ", ".join(value(x, f"{where}[{i}]") for i, x in enumerate(v)) + "]"
    raise TypeError(f"{where}: TOML cannot hold {type(v).__name__} {v!r:.60}")


def string(s: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, other text as it is (UTF-8)."""
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise ValueError(f"{s!r:.60} holds a lone surrogate, which UTF-8 (and so TOML) cannot hold")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


__all__ = ["MAX_BYTES", "dumps", "first_line", "key", "loads", "read", "string", "value"]
