"""Locks: one writer per run folder, per poison being crafted, per experiment folder's shared files at a time.

A lock is a file created atomically (O_CREAT | O_EXCL) holding its holder's host, pid and start time: `.uebench.lock`
in the folder it holds (FolderLock), or a named lock file beside what it guards (Lock, e.g. a poison two shards of
one bench both need). A second process is refused with one line naming the holder (LockBusy), or, with `wait`,
polls until the holder lets go. A lock whose holder is gone (same host, pid no longer alive) is stale: it is taken
over, so a kill -9 never blocks the rerun. A lock held from another host cannot be checked from here; it is refused
(or waited for), and the message says how to clear it by hand.

The holder also keeps an flock on its lock file while it holds it, and whoever takes over a stale lock (or a sweep
removes one) first takes that flock on the file still at the lock's path: two processes that both find a lock stale
cannot both take it, and none removes a lock another has just taken over. The holder record decides liveness; the
flock only orders those who act on a dead holder's lock (the kernel drops it with its process).

What uebench may delete goes through here too (`remove_owned`): only what the caller proved uebench wrote, and only
once every lock under it is taken (a live holder refuses, before anything is touched). `sweep_stale` clears what a
killed uebench process left (tagged temps, locks of dead holders) and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import UserError
from .io import is_temp, pid_alive, remove_stale_temps

try:
    import fcntl
except ImportError:  # no flock here (Windows): the holder record alone decides, as before
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".uebench.lock"


def is_lock_name(name: str) -> bool:
    """A FolderLock's `.uebench.lock` or a lock_beside's `.<name>.lock`."""
    return name == LOCK_NAME or (name.startswith(".") and name.endswith(".lock") and len(name) > len(".lock"))


def is_scratch(path: Path) -> bool:
    """A temporary file of atomic_write or a lock file: not the folder's content."""
    return is_lock_name(path.name) or is_temp(path)


class LockBusy(UserError):
    """Another live process holds the lock."""


class Lock:
    """`with Lock(path):` holds the lock file `path` for this process; re-entrant within one process. With
    `wait` (seconds, or None for no limit) a busy lock is polled until free, else LockBusy is raised at once."""

    _held: dict[Path, int] = {}  # lock file -> depth, for this process
    _fds: dict[Path, int] = {}  # lock file -> its open descriptor (holding the flock) while held
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
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
                _flock(fd, wait=True)  # a taker that opened it before this write holds it a moment, then lets go
            except FileExistsError:
                fd = self._claim_stale()  # raises while the holder may be alive
                if fd is None:
                    continue
            except OSError as e:
                raise UserError(f"cannot write to output folder {self.folder}: {e.strerror or e}") from None
            self._write_holder(fd)
            Lock._held[self.path] = 1
            sweep_stale(self.folder)  # what killed uebench processes left here: tagged temps, their locks
            return self
        raise LockBusy(self._busy_message())

    def _write_holder(self, fd: int) -> None:
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        Lock._fds[self.path] = fd  # kept open while held: its flock is what a taker of a stale lock must get first

    def _read_holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
            return holder if isinstance(holder, dict) else None
        except FileNotFoundError:
            return {}  # released between our attempt and this read: try again
        except (OSError, ValueError):
            return None

    def _claim_stale(self) -> int | None:
        """The lock file, opened and flocked, when its holder is provably gone (the caller then holds it); None when
        it went away or may still be being written (try again); LockBusy while its holder is (or may be) alive."""
        try:
            fd = os.open(self.path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None
        except OSError as e:
            raise LockBusy(f"{self._busy_message()} ({e.strerror or e})") from None
        try:
            if not _flock(fd, wait=False):  # its holder is alive (or another process is taking it over)
                raise LockBusy(self._busy_message())
            if not _still_at(fd, self.path):  # released (and maybe taken afresh) meanwhile
                os.close(fd)
                return None
            holder = _holder_in(fd)
            if holder is None:  # unreadable: a holder between its create and its write, or one killed right there
                if time.time() - os.fstat(fd).st_mtime < 5:
                    os.close(fd)
                    time.sleep(0.2)
                    return None
            elif (
                holder.get("host") != socket.gethostname()
                or not isinstance(holder.get("pid"), int)
                or pid_alive(holder["pid"])
            ):
                raise LockBusy(self._busy_message(holder))
            return fd
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise

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
        fd = Lock._fds.pop(self.path, None)
        if fd is not None:  # after the unlink: a taker waiting on the flock then finds no file at the path
            with contextlib.suppress(OSError):
                os.close(fd)
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


# ---- what uebench may delete -----------------------------------------------------------------------------------
def same_shape(old: Any, new: Any) -> bool:
    """Whether a record read back (`old`) has the shape of the one uebench would write now (`new`): the same type
    and, for objects, more keys in common than not. What proves a record file is uebench's own and not a user's
    file of the same name (a config.json, a bench.json of something else); an identity of another configuration
    has the shape, and a record of an older or newer version differing in a key or two still has it."""
    if isinstance(old, dict) and isinstance(new, dict):
        return len(old.keys() & new.keys()) >= max(1, len(old.keys() ^ new.keys()))
    return type(old) is type(new)


def _locks_under(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        if p.is_symlink():
            continue
        if p.is_dir():
            for folder, _dirs, files in os.walk(p):  # never into a linked folder
                found += [Path(folder) / f for f in files if is_lock_name(f)]
        elif is_lock_name(p.name):
            found.append(p)
    return found


@contextlib.contextmanager
def holding_locks(paths: Iterable[Path]) -> Iterator[None]:
    """Hold every lock found under `paths` while the caller moves or deletes them: one a live process holds
    (another uebench process at work there: a shard training a run, a poison being crafted) or one held from another
    host refuses with one line (LockBusy) before anything is touched; one of a dead holder is taken over."""
    held: list[Lock] = []
    try:
        for f in _locks_under(paths):
            lock = FolderLock(f.parent) if f.name == LOCK_NAME else Lock(f)
            try:
                held.append(lock._try_acquire())
            except LockBusy as e:
                raise LockBusy(f"{e} (nothing was deleted)") from None
        yield
    finally:
        for lock in reversed(held):
            lock.release()


def remove_owned(paths: Iterable[Path]) -> None:
    """Delete files and folders the caller proved are uebench's (its own names under a record of its own), once
    every lock under them is taken: refused (LockBusy) while another live process holds one, before any deletion.
    A link is removed, never what it points to."""
    paths = [Path(p) for p in paths if os.path.lexists(p)]
    with holding_locks(paths):
        for p in paths:
            try:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink(missing_ok=True)
            except OSError as e:
                raise UserError(f"cannot delete {p}: {e.strerror or e}") from None


def sweep_stale(folder: Path, *, recursive: bool = False) -> None:
    """Clear what killed uebench processes left in `folder` (and below it, with `recursive`): their tagged temp
    files and folders, and the locks whose holders are gone (taken over, then let go). A live process's and a
    user's files are left alone. The next run in a folder calls this, so no leftover stays for good."""
    if not folder.is_dir() or folder.is_symlink():
        return
    folders = [Path(d) for d, _, _ in os.walk(folder)] if recursive else [folder]
    for d in folders:
        remove_stale_temps(d)
        try:
            locks = [f for f in d.iterdir() if is_lock_name(f.name) and f.is_file() and not f.is_symlink()]
        except OSError:
            continue
        for f in locks:
            holder = Lock(f)._read_holder()
            # only a lock uebench wrote (exactly its holder record) whose holder is provably gone
            if not (isinstance(holder, dict) and set(holder) == {"host", "pid", "started"}):
                continue
            try:
                fd = Lock(f)._claim_stale()  # its flock: no process takes it over while it is removed
            except UserError:
                continue
            if fd is not None:
                with contextlib.suppress(OSError):
                    f.unlink()
                os.close(fd)


# ---- the flock beside the holder record ------------------------------------------------------------------------
def _flock(fd: int, *, wait: bool) -> bool:
    """Take the exclusive flock on `fd`; False when another process holds it (`wait` False)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False
    except OSError:  # a file system without flock: the holder record alone decides
        return True


def _still_at(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is still the one at `path` (not unlinked, not replaced by a new lock)."""
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _holder_in(fd: int) -> dict | None:
    try:
        holder = json.loads(os.pread(fd, 4096, 0))
        return holder if isinstance(holder, dict) else None
    except (OSError, ValueError):
        return None
