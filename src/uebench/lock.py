"""Folder locks: one writer per run folder, bench folder or crosstask folder at a time.

A lock is a file `.uebench.lock` created atomically (O_CREAT | O_EXCL) and holding its holder's host, pid and start
time. A second process on the same folder is refused with one line naming the holder. A lock whose holder is gone
(same host, pid no longer alive) is stale: it is taken over, so a kill -9 never blocks the rerun. A lock held from
another host cannot be checked from here; it is refused, and the message says how to clear it by hand.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from .errors import UserError
from .io import is_temp, remove_stale_temps

LOCK_NAME = ".uebench.lock"


def is_scratch(path: Path) -> bool:
    """A temporary file of atomic_write or a folder lock: not the folder's content."""
    return path.name == LOCK_NAME or is_temp(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class FolderLock:
    """`with FolderLock(folder):` holds the folder for this process; re-entrant within one process."""

    _held: dict[Path, int] = {}  # folder -> depth, for this process

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).resolve()
        self.path = self.folder / LOCK_NAME

    def acquire(self) -> "FolderLock":
        if self.folder in FolderLock._held:
            FolderLock._held[self.folder] += 1
            return self
        try:
            missing = [d for d in (self.folder, *self.folder.parents) if not d.exists()]
            self.folder.mkdir(parents=True, exist_ok=True)
            self._created = missing  # removed again on release while empty: a refused command leaves no folder
        except OSError as e:
            raise UserError(f"cannot write to output folder {self.folder}: {e.strerror or e}") from None
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_stale()  # raises while the holder may be alive
                continue
            except OSError as e:
                raise UserError(f"cannot write to output folder {self.folder}: {e.strerror or e}") from None
            with os.fdopen(fd, "w") as f:
                json.dump(holder, f)
            FolderLock._held[self.folder] = 1
            remove_stale_temps(self.folder)  # no other writer can be here now: any temp file is a killed one's
            return self
        raise UserError(self._busy_message())

    def _read_holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
            return holder if isinstance(holder, dict) else None
        except FileNotFoundError:
            return {}  # released between our attempt and this read: try again
        except (OSError, ValueError):
            return None

    def _take_over_stale(self) -> None:
        """Remove the lock when its holder is provably gone; raise UserError while it is (or may be) alive."""
        holder = self._read_holder()
        if holder == {}:
            return
        if holder is None:  # unreadable: a holder between its create and its write, or one killed right there
            try:
                young = time.time() - self.path.stat().st_mtime < 5
            except FileNotFoundError:
                return
            if young:
                time.sleep(0.2)
                return
        elif (
            holder.get("host") != socket.gethostname()
            or not isinstance(holder.get("pid"), int)
            or _alive(holder["pid"])
        ):
            raise UserError(self._busy_message(holder))
        self.path.unlink(missing_ok=True)

    def _busy_message(self, holder: dict | None = None) -> str:
        holder = holder if holder is not None else (self._read_holder() or {})
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('started', '?')}"
        return (
            f"{self.folder} is in use by another uebench process ({who}); wait for it, or remove {self.path} "
            "if that process is gone"
        )

    def release(self) -> None:
        depth = FolderLock._held.get(self.folder, 0)
        if depth > 1:
            FolderLock._held[self.folder] = depth - 1
            return
        FolderLock._held.pop(self.folder, None)
        self.path.unlink(missing_ok=True)
        for d in getattr(self, "_created", []):
            try:
                d.rmdir()  # only succeeds on an empty folder
            except OSError:
                break

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
