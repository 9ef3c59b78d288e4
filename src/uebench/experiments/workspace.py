"""The experiment workspace: the output folder that bench, crosstask and landscape share the rules of.

    ws = Workspace(out, "bench.json", "bench")
    with ws.locked():
        ws.open(
            identity, record, overwrite=False, owned=lambda: ["poisons", "runs"], identity_of=lambda r: r["identity"]
        )
        poison, made = ws.poison("poisons/em-s0-1d0072c511.safetensors", lambda: craft("em", ds))

One record file names what the folder holds; its identity (the settings every result shares) decides whether a rerun
continues it. The rules, the same for the three experiments:
- a folder holding the same identity is continued: what is kept there (poisons, finished runs) is reused;
- a folder holding another identity, or files that are not an experiment's, is refused with one line, unless
  `overwrite`; then only what the experiment owns (`owned`) is deleted, never a user's other files, and only once
  every lock under it is taken (a shard at work there refuses the overwrite);
- a folder uebench cannot prove is an experiment's is never cleared, not even with `overwrite`: an unreadable record,
  a record of another shape (a user's file of that name), or, without a record, files under the experiment's names;
- a refusal after the folder was taken (a poison refused once the data is loaded) leaves the folder as it was: a
  folder taken afresh loses what this call wrote, a replaced experiment comes back, the record is put back. The
  experiment calls `commit()` once its inputs are accepted; from then on, the folder is its own;
- artifacts are written atomically under a name the experiment chooses (a digest of what made them, or a label its
  identity pins), so a killed craft leaves nothing behind and is redone.
One process per folder (`locked`): the record, the cache and the report are shared files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..core.errors import UserError
from ..core.io import atomic_write_bytes, atomic_write_json, read_json, remove_stale_temps, temp_prefix
from ..core.lock import FolderLock, Lock, LockBusy, holding_locks, is_scratch, remove_owned, same_shape, sweep_stale
from ..poisons.poison import Poison


class Workspace:
    def __init__(self, root: str | Path, record_file: str, kind: str):
        self.root = Path(root)
        self.record_file = record_file
        self.kind = kind  # "bench", "crosstask experiment", ...: how the refusals name what the folder holds
        self._locked = 0
        self._session: _Session | None = None  # what open() changed, until commit(): undone on a refusal

    @property
    def record_path(self) -> Path:
        return self.root / self.record_file

    def path(self, name: str) -> Path:
        return self.root / name

    @contextlib.contextmanager
    def locked(self, wait: float | None = 0.0) -> Iterator["Workspace"]:
        """One process at a time on the folder's shared files: a second one is refused (or waits up to `wait`
        seconds; None: as long as it takes) before it reads or deletes anything. A refusal (UserError) before the
        experiment commits puts the folder back as open() found it."""
        with FolderLock(self.root, wait=wait):
            self._locked += 1
            try:
                yield self
            except UserError:
                self._rollback()
                raise
            except BaseException:  # an interruption or a crash: what this call did stays, to be resumed
                self.commit()
                raise
            else:
                self.commit()
            finally:
                self._locked -= 1

    def check_folder(self) -> None:
        """Refuse an output path that is a file (before any data is loaded)."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"--out {self.root} is a file, not a folder")

    def open(
        self,
        identity: Any,
        record: Any,
        *,
        overwrite: bool,
        owned: Callable[[], Iterable[str]],
        identity_of: Callable[[Any], Any] = lambda saved: saved,
        writes: Iterable[str] = (),
    ) -> None:
        """Take the folder for an experiment of `identity` (refusing or clearing another), then write its `record`.
        `writes`: the names (or fnmatch patterns) of the files it writes beside what it owns (results, tables, the
        report): in a folder without a record, a file of one of those names is the user's, and refuses the folder."""
        fresh, old_record = self.opening(
            identity, overwrite=overwrite, owned=owned, identity_of=identity_of, writes=writes
        )
        session = _Session(fresh, old_record, owned)
        if fresh and old_record is not None:  # another experiment: set aside (whole) until this one commits
            session.trash = self._set_aside(owned())
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.record_path, record)
        except OSError as e:
            self._session = session
            self._rollback()
            raise UserError(f"cannot write to output folder {self.root}: {e.strerror or e}") from None
        self._session = session
        if not fresh:  # what killed processes left under the experiment's own folders
            for name in owned():
                sweep_stale(self.root / name, recursive=True)
        if not self._locked:  # no refusal can come back to this call: nothing to undo
            self.commit()

    def opening(
        self,
        identity: Any,
        *,
        overwrite: bool,
        owned: Callable[[], Iterable[str]],
        identity_of: Callable[[Any], Any] = lambda saved: saved,
        writes: Iterable[str] = (),
    ) -> tuple[bool, bytes | None]:
        """What open() would do with the folder, touching nothing: (fresh, the record it holds); fresh with a record
        means another experiment's, which an overwrite replaces. Refuses (UserError) as open() would."""
        self.check_folder()
        identity = json.loads(json.dumps(identity, default=str))  # as it reads back from the record
        old_record = None
        if self.record_path.exists():
            old = self._read_identity(identity, identity_of)
            old_record = self.record_path.read_bytes()
            if old == identity:
                fresh = False
            elif not overwrite:
                raise UserError(
                    f"{self.root} holds a {self.kind} of another "
                    f"configuration (differs in: {differing(old, identity)}); "
                    "use another --out or --overwrite"
                )
            else:
                fresh = True
        elif self.root.is_dir() and any(not is_scratch(f) for f in self.root.iterdir()):
            if not overwrite:
                raise UserError(f"{self.root} is not empty and holds no {self.kind}; use another --out or --overwrite")
            names = [*owned(), *writes]
            taken = sorted(f.name for f in self.root.iterdir() if any(fnmatch.fnmatchcase(f.name, n) for n in names))
            if taken:  # without a record, nothing proves these are an earlier experiment's and not the user's
                raise UserError(
                    f"{self.root} holds {', '.join(taken)} but no {self.record_file}, so it is not provably a "
                    f"{self.kind}'s: uebench deletes and replaces nothing there; use another --out"
                )
            fresh = True
        else:
            fresh = True
        return fresh, old_record

    @contextlib.contextmanager
    def holding(
        self, lock: Lock, identity: Any, identity_of: Callable[[Any], Any] = lambda saved: saved, *, poll: float = 1.0
    ) -> Iterator[None]:
        """Hold `lock` (a run's or a poison's, under this folder), taken while the folder's own lock is held and once
        the record still names `identity`. An overwrite moves the experiment's folders under the folder's lock after
        taking every lock under them, so it never moves a folder in which a process is just taking a lock, and a
        process never starts work in a folder another experiment has taken over. Busy: LockBusy, or with the lock's
        `wait`, polled with the folder's lock let go in between."""
        deadline = None if lock.wait is None else time.monotonic() + lock.wait
        identity = json.loads(json.dumps(identity, default=str))
        while True:
            with FolderLock(self.root, wait=None):
                if not self.record_path.exists() or self._read_identity(identity, identity_of) != identity:
                    raise UserError(
                        f"{self.root} no longer holds this {self.kind} (another one replaced it with --overwrite); "
                        "this process stops without writing there"
                    )
                try:
                    lock._try_acquire()
                    break
                except LockBusy:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise
            time.sleep(poll)
        try:
            yield
        finally:
            lock.release()

    def _read_identity(self, identity: Any, identity_of: Callable[[Any], Any]) -> Any:
        """The identity the record holds, or a refusal when the record is not provably this experiment's."""
        try:
            old = identity_of(read_json(self.record_path))
        except (OSError, ValueError, KeyError, TypeError, IndexError, UserError):
            old = None
            why = "is unreadable"
        else:
            why = f"is not a {self.kind}'s record"
            if same_shape(old, identity):
                return old
        raise UserError(
            f"{self.record_path} {why}, so {self.root} is not provably a {self.kind}: uebench deletes nothing there; "
            "use another --out, or remove the folder yourself"
        )

    def _set_aside(self, names: Iterable[str]) -> Path | None:
        """Move what the experiment owns into a tagged folder of this process (atomic renames, after taking every
        lock under it: a live holder refuses before anything moves). Deleted on commit, moved back on a refusal;
        left by a kill, the next run in the folder clears it (its tag names a dead process)."""
        paths = [self.root / n for n in dict.fromkeys(names) if os.path.lexists(self.root / n)]
        if not paths:
            return None
        with holding_locks(paths):
            trash = Path(tempfile.mkdtemp(dir=self.root, prefix=temp_prefix("uebench-replaced"), suffix=".tmp"))
            for p in paths:
                os.replace(p, trash / p.name)
        return trash

    def commit(self) -> None:
        """The experiment's inputs are accepted: the folder is its own, and what it replaced is deleted."""
        session, self._session = self._session, None
        if session is not None and session.trash is not None:
            shutil.rmtree(session.trash, ignore_errors=True)

    def _rollback(self) -> None:
        """Put the folder back as open() found it: a folder taken afresh loses what this call wrote under the
        experiment's names (provably this call's: none were there), a set-aside experiment comes back, and the
        record is restored (or removed)."""
        session, self._session = self._session, None
        if session is None:
            return
        if session.fresh:
            try:
                remove_owned([self.root / n for n in session.owned()])
            except UserError:  # another process works there already: what this call wrote stays
                return
            if session.trash is not None:
                for p in session.trash.iterdir():
                    os.replace(p, self.root / p.name)
                session.trash.rmdir()
        if session.old_record is not None:
            atomic_write_bytes(self.record_path, session.old_record)
        else:
            self.record_path.unlink(missing_ok=True)

    def clear(self, names: Iterable[str]) -> None:
        """Delete what the experiment owns (folders and files named relative to the root); nothing else, and nothing
        while another process holds a lock under it."""
        remove_owned(self.root / name for name in names)

    def poison(
        self, name: str, make: Callable[[], Any], reuse: Callable[[Any], bool] | None = None
    ) -> tuple[Any, bool]:
        """The poison kept under `name` (if `reuse` accepts it), else `make()`'s, kept there atomically.
        Returns (poison, made here)."""
        path = self.root / name
        remove_stale_temps(path.parent)
        if path.is_file():
            kept = Poison.load(path)
            if reuse is None or reuse(kept):
                return kept, False
        poison = make()
        poison.save(path)
        return poison, True

    def copy_in(self, name: str, source: str | Path) -> bool:
        """Keep a byte copy of a user's file under `name` (once). True when copied now."""
        path = self.root / name
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, Path(source).read_bytes())
        return True


@dataclasses.dataclass
class _Session:
    fresh: bool  # the folder was taken for this experiment now (empty, the user's, or another experiment's)
    old_record: bytes | None  # the record as it was, put back on a refusal
    owned: Callable[[], Iterable[str]]
    trash: Path | None = None  # another experiment's files, set aside


def differing(old: Any, new: Any) -> str:
    """The top-level keys two identities differ in, for the refusal line."""
    if isinstance(old, dict) and isinstance(new, dict):
        return ", ".join(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))
    return "everything"
