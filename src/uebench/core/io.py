"""Atomic writes: a file is either the old version or the new one, never half of either."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call write(f) on a temporary file in the same folder, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    # the writer's pid and host in the name: another process sharing the folder (a shard) can tell a killed writer's
    # leftover from a live writer's file in progress, and a user's own hidden .tmp file from uebench's
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; a plain open() would honour the umask
            os.fsync(f.fileno())
        _fault_point(path, "before")
        os.replace(tmp, path)
        _fault_point(path, "after")
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# Fault injection for the kill tests (tests/test_kill.py): UEBENCH_KILL_AT_WRITE="N:before" or "N:after" kills this
# process with SIGKILL at its N-th atomic write (1-based), just before or just after the rename; UEBENCH_WRITE_LOG
# names a file that gets one line per write. Unset (always, outside those tests), this costs one dict lookup.
_writes = 0


def _fault_point(path: Path, phase: str) -> None:
    global _writes
    kill, log = os.environ.get("UEBENCH_KILL_AT_WRITE"), os.environ.get("UEBENCH_WRITE_LOG")
    if not (kill or log):
        return
    if phase == "before":
        _writes += 1
        if log:
            with open(log, "a") as f:
                f.write(f"{_writes}\t{path}\n")
    if kill and kill == f"{_writes}:{phase}":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def fault_after_epoch(epoch: int) -> None:
    """Fault injection for the executor tests: UEBENCH_KILL_AFTER_EPOCH=N kills (SIGKILL) the process that has just
    committed epoch N of a run, once: UEBENCH_KILL_MARKER names a file created just before, and a process finding it
    there is spared (the retried worker must live). Unset, this costs one dict lookup."""
    at = os.environ.get("UEBENCH_KILL_AFTER_EPOCH")
    if at is None or at != str(epoch):
        return
    marker = os.environ.get("UEBENCH_KILL_MARKER")
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


_HOST = socket.gethostname().replace("~", "-")
# a temp file or folder of uebench's: `.<name>.~<pid>@<host>~<mkstemp's random part>.tmp`; nothing else is one
_TEMP = re.compile(r"\..+\.~(\d+)@([^~/]+)~[A-Za-z0-9_]*\.tmp")


def temp_prefix(name: str) -> str:
    """The start of the name of a temp file or folder this process makes for `name` (mkstemp / mkdtemp's prefix,
    with suffix ".tmp"): it says uebench made it, and which process, so a leftover is provably uebench's and stale."""
    return f".{name}.~{os.getpid()}@{_HOST}~"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # exists, owned by someone else (or not a pid: never count it gone)
        return True
    return True


def temp_writer_gone(path: Path) -> bool:
    """Whether this is uebench's temp file or folder and the process that made it is provably gone (same host, pid
    not alive). A name without uebench's tag is never counted as gone: it may be a user's own hidden .tmp file."""
    m = _TEMP.fullmatch(path.name)
    return m is not None and m.group(2) == _HOST and not pid_alive(int(m.group(1)))


def is_temp(path: Path) -> bool:
    """A temp file or folder uebench made (atomic_write, an export in progress, a folder being replaced): its name
    carries uebench's tag. One is left behind only by a kill."""
    return _TEMP.fullmatch(path.name) is not None and not path.is_symlink() and path.exists()


def remove_stale_temps(folder: Path) -> None:
    """Delete the temp files and folders killed uebench processes left in `folder` (tagged, their process gone);
    a live writer's file in progress and every untagged file are left alone."""
    import shutil

    try:
        entries = list(folder.iterdir()) if folder.is_dir() else []
    except OSError:
        return
    for f in entries:
        if is_temp(f) and temp_writer_gone(f):
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)


_swept: set[str] = set()


def _sweep_once(folder: Path) -> None:
    """The first write of this process into a folder clears what a killed uebench process left there (its own
    tagged temps only): every folder uebench writes to is cleared by the next run that writes there."""
    key = os.path.abspath(folder)
    if key not in _swept:
        _swept.add(key)
        remove_stale_temps(Path(key))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj, indent=2, sort_keys=True) + "\n")


def dumps_json(obj: Any, **kw: Any) -> str:
    """Strict JSON (RFC 8259, which has no NaN or Infinity): a non-finite number is written as null, the value a
    reader can tell apart from every number, so that no value a run or a file produced can make the write fail."""
    return json.dumps(finite_json(obj), allow_nan=False, default=_jsonable, **kw)


def finite_json(obj: Any) -> Any:
    """`obj` with every non-finite float (NaN, inf, as a Python or numpy float) replaced by None."""
    if isinstance(obj, float) or (hasattr(obj, "dtype") and getattr(obj, "ndim", None) == 0 and hasattr(obj, "item")):
        value = obj.item() if hasattr(obj, "item") else obj
        return None if isinstance(value, float) and not math.isfinite(value) else obj
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


# What a JSON file read here may hold: a file of uebench's nests a few levels and holds 64-bit integers. A deeper
# or longer one is damaged or hostile (100,000 levels exhaust the parser's stack; a 5,000-digit integer fails
# Python's int conversion), and is refused in one line.
MAX_JSON_DEPTH = 100
MAX_JSON_INT_DIGITS = 100


class _Refused(ValueError):
    pass


def loads_json(text: str | bytes, where: str, *, finite: bool = False) -> Any:
    """Parse JSON, bounded: nesting at most MAX_JSON_DEPTH, integers at most MAX_JSON_INT_DIGITS digits; `finite`:
    NaN, Infinity and numbers too large for a float are refused too (what an untrusted file says about itself)."""
    from .errors import UserError

    def integer(s: str) -> int:
        if len(s.lstrip("-")) > MAX_JSON_INT_DIGITS:
            raise _Refused(f"an integer of {len(s.lstrip('-')):,} digits")
        return int(s)

    def number(s: str) -> float:
        x = float(s)
        if finite and not math.isfinite(x):
            raise _Refused(f"the number {s[:20]} (not a finite float)")
        return x

    def constant(s: str) -> float:
        if finite:
            raise _Refused(f"{s} (not JSON: a non-finite number)")
        return float(s)

    try:
        obj = json.loads(text, parse_int=integer, parse_float=number, parse_constant=constant)
    except _Refused as e:
        raise UserError(f"{where} holds {e}") from None
    except RecursionError:
        raise UserError(f"{where} is nested too deeply (more than {MAX_JSON_DEPTH} levels)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{where} is damaged: not valid JSON ({type(e).__name__})") from None
    if nesting_depth(obj) > MAX_JSON_DEPTH:
        raise UserError(f"{where} is nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    return obj


def nesting_depth(obj: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply lists and dicts nest in a parsed value (JSON, TOML), counted up to one past `limit` (iteratively:
    no recursion to exhaust)."""
    deepest, todo = 0, [(obj, 1)]
    while todo:
        x, d = todo.pop()
        if isinstance(x, (dict, list)):
            deepest = max(deepest, d)
            if d <= limit:
                todo += [(v, d + 1) for v in (x.values() if isinstance(x, dict) else x)]
    return deepest


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


@contextlib.contextmanager
def utf8_path(path: str | Path) -> Iterator[str]:
    """A name for the existing file or folder `path` that libraries which take only UTF-8 names (safetensors,
    TensorBoard) accept: the path itself, or where it is not valid UTF-8 (a folder named in another encoding), the
    /proc/self/fd link of a descriptor held open until the block ends. So every command takes every path the file
    system does."""
    from .errors import UserError

    name = os.fspath(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield name
        return
    fd = os.open(name, os.O_RDONLY)
    try:
        alias = f"/proc/self/fd/{fd}"
        if not os.path.exists(alias):
            raise UserError(f"{name!r} is not a UTF-8 name, which this system gives no other name for; rename it")
        yield alias
    finally:
        os.close(fd)


def read_json(path: str | Path) -> Any:
    """A JSON file uebench wrote, or a UserError naming it: a damaged or hand-edited file is one line, not a trace."""
    from .errors import UserError

    try:
        with open(path, "rb") as f:
            text = f.read()
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a JSON file") from None
    return loads_json(text, str(path))


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def recorded(values: dict[str, Any], added_later: dict[str, Any]) -> dict[str, Any]:
    """`values` without the settings added after records existed while they hold their unset value: a record (and a
    key hashed from it) written before a setting existed keeps its identity, so older folders resume."""
    return {k: v for k, v in values.items() if not (k in added_later and v == added_later[k])}


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex), read in blocks; a file hashed before and unchanged since (same size and
    modification time) is not read again. A missing or unreadable file is one UserError line."""
    from .errors import UserError

    try:
        st = os.stat(path)
    except OSError as e:
        raise UserError(f"{path}: {e.strerror or 'cannot be read'}") from None
    if not os.path.isfile(path):
        raise UserError(f"{path} is not a file")
    return _sha256_of(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    import hashlib

    from .errors import UserError

    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise UserError(f"{path}: {e.strerror or 'cannot be read'}") from None
    return h.hexdigest()


def refuse_unsafe_folder(path: str | Path, flag: str = "--out", example: str = "run") -> None:
    """Refuse, in one line, an output folder that holds far more than this command's files: the working directory or
    one of its parents, the filesystem root, the home directory. A command writes (and with --overwrite clears) its
    own files there; a mistyped `--out .` should not put them among the user's."""
    from .errors import UserError

    target = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    try:
        target = target.resolve()
    except OSError:  # a loop of links: the path as given
        pass
    cwd = Path.cwd().resolve()
    home = Path.home().resolve()
    if target == cwd or target in cwd.parents:
        what = "the working directory" if target == cwd else "a parent of the working directory"
    elif target == Path(target.anchor):
        what = "the filesystem root"
    elif target == home:
        what = "your home directory"
    else:
        return
    mine = os.path.join(os.fspath(path), example)
    raise UserError(f"{flag} {path} is {what}; give the output a folder of its own (e.g. {flag} {mine})")
