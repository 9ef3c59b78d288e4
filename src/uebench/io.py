"""Atomic writes: a file is either the old version or the new one, never half of either."""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call write(f) on a temporary file in the same folder, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid and host in the name: another process sharing the folder (a shard) can tell a killed writer's
    # leftover from a live writer's file in progress
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.~{os.getpid()}@{_HOST}~", suffix=".tmp")
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
_OWNER = re.compile(r"~(\d+)@([^~]+)~")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def temp_writer_gone(path: Path) -> bool:
    """Whether the process that was writing this temporary file is provably gone (same host, pid not alive).
    A temp file without an owner (written before temps carried one) counts as gone."""
    m = _OWNER.search(path.name)
    if m is None:
        return True
    return m.group(2) == _HOST and not pid_alive(int(m.group(1)))


def is_temp(path: Path) -> bool:
    """A temporary file of atomic_write (named by its mkstemp call); one is left behind only by a kill."""
    return path.name.startswith(".") and path.name.endswith(".tmp") and path.is_file()


def remove_stale_temps(folder: Path) -> None:
    """Delete the temporary files killed writers left in `folder`; a live writer's file in progress is left alone."""
    if folder.is_dir():
        for f in folder.iterdir():
            if is_temp(f) and temp_writer_gone(f):
                f.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


def read_json(path: str | Path) -> Any:
    """A JSON file uebench wrote, or a UserError naming it: a damaged or hand-edited file is one line, not a trace."""
    from .errors import UserError

    try:
        with open(path) as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is damaged: not valid JSON ({type(e).__name__})") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a JSON file") from None


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
