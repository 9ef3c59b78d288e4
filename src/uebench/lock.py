"""Locks: one writer per run folder, per poison being crafted, per experiment folder's shared files at a time.

A lock is a file created atomically (O_CREAT | O_EXCL) holding its holder's host, pid and start time: `.uebench.lock`
in the folder it holds (FolderLock), or a named lock file beside what it guards (Lock, e.g. a poison two shards of
one bench both need). A second process is refused with one line naming the holder (LockBusy), or, with `wait`,
polls until the holder lets go. A lock whose holder is gone (same host, pid no longer alive) is stale: it is taken
over, so a kill -9 never blocks the rerun. A lock held from another host cannot be checked from here; it is refused
(or waited for), and the message says how to clear it by hand.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from .errors import UserError
from .io import is_temp, pid_alive, remove_stale_temps

LOCK_NAME = ".uebench.lock"


def is_scratch(path: Path) -> bool:
    """A temporary file of atomic_write or a lock file: not the folder's content."""
    return path.name == LOCK_NAME or (path.name.startswith(".") and path.name.endswith(".lock")) or is_temp(path)


class LockBusy(UserError):
    """Another live process holds the lock."""


class Lock:
    """`with Lock(path):` holds the lock file `path` for this process; re-entrant within one process. With
    `wait` (seconds, or None for no limit) a busy lock is polled until free, else LockBusy is raised at once."""

    _held: dict[Path, int] = {}  # lock file -> depth, for this process
    owns_folder = False  # a FolderLock: no other writer can be in the folder while it is held

    def __init__(self, path: str | Path, *, wait: float | None = 0.0, poll: float = 1.0):
        self.path = Path(path).resolve()
        self.folder = self.path.parent
        self.wait, self.poll = wait, poll

    def acquire(self) -> "Lock":
        deadline = None if self.wait is None else time.monotonic() + self.wait
        while True:
            try:
                return self._try_acquire()
            except LockBusy:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                time.sleep(self.poll)

    def _try_acquire(self) -> "Lock":
        if self.path in Lock._held:
            Lock._held[self.path] += 1
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
            Lock._held[self.path] = 1
            if self.owns_folder:
                remove_stale_temps(self.folder)  # any temp file here is a killed writer's
            return self
        raise LockBusy(self._busy_message())

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
            or pid_alive(holder["pid"])
        ):
            raise LockBusy(self._busy_message(holder))
        self.path.unlink(missing_ok=True)

    def _busy_message(self, holder: dict | None = None) -> str:
        holder = holder if holder is not None else (self._read_holder() or {})
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('started', '?')}"
        what = self.folder if self.owns_folder else self.path.name.removeprefix(".").removesuffix(".lock")
        return (
            f"{what} is in use by another uebench process ({who}); wait for it, or remove {self.path} "
            "if that process is gone"
        )

    def holder(self) -> dict | None:
        """Who holds the lock now (host, pid, started), or None when it is free."""
        holder = self._read_holder()
        return holder or None

    def release(self) -> None:
        depth = Lock._held.get(self.path, 0)
        if depth > 1:
            Lock._held[self.path] = depth - 1
            return
        Lock._held.pop(self.path, None)
        self.path.unlink(missing_ok=True)
        for d in getattr(self, "_created", []):
            try:
                d.rmdir()  # only succeeds on an empty folder
            except OSError:
                break

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class FolderLock(Lock):
    """`with FolderLock(folder):` holds the whole folder (its `.uebench.lock`) for this process."""

    owns_folder = True

    def __init__(self, folder: str | Path, *, wait: float | None = 0.0, poll: float = 1.0):
        super().__init__(Path(folder) / LOCK_NAME, wait=wait, poll=poll)


def lock_beside(path: str | Path, *, wait: float | None = 0.0) -> Lock:
    """The lock guarding the making of the file `path` (a hidden `.<name>.lock` beside it)."""
    path = Path(path)
    return Lock(path.parent / f".{path.name}.lock", wait=wait)
