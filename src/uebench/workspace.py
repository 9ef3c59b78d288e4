"""The experiment workspace: the output folder that bench, crosstask and landscape share the rules of.

    ws = Workspace(out, "bench.json", "bench")
    with ws.locked():
        ws.open(identity, record, overwrite=False, owned=lambda: ["poisons", "runs"], identity_of=lambda r: r["identity"])
        poison, made = ws.poison("poisons/em-s0-1d0072c511.safetensors", lambda: craft("em", ds))

One record file names what the folder holds; its identity (the settings every result shares) decides whether a rerun
continues it. The rules, the same for the three experiments:
- a folder holding the same identity is continued: what is kept there (poisons, finished runs) is reused;
- a folder holding another identity, an unreadable record, or files that are not an experiment's, is refused with
  one line, unless `overwrite`; then only what the experiment owns (`owned`) is deleted, never a user's other files;
- artifacts are written atomically under a name the experiment chooses (a digest of what made them, or a label its
  identity pins), so a killed craft leaves nothing behind and is redone.
One process per folder (`locked`): the record, the cache and the report are shared files.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import UserError
from .io import atomic_write_bytes, atomic_write_json, read_json, remove_stale_temps
from .lock import FolderLock, is_scratch
from .poison import Poison


class Workspace:
    def __init__(self, root: str | Path, record_file: str, kind: str):
        self.root = Path(root)
        self.record_file = record_file
        self.kind = kind  # "bench", "crosstask experiment", ...: how the refusals name what the folder holds

    @property
    def record_path(self) -> Path:
        return self.root / self.record_file

    def path(self, name: str) -> Path:
        return self.root / name

    @contextlib.contextmanager
    def locked(self, wait: float | None = 0.0) -> Iterator["Workspace"]:
        """One process at a time on the folder's shared files: a second one is refused (or waits up to `wait`
        seconds; None: as long as it takes) before it reads or deletes anything."""
        with FolderLock(self.root, wait=wait):
            yield self

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
    ) -> None:
        """Take the folder for an experiment of `identity` (refusing or clearing another), then write its `record`."""
        self.check_folder()
        identity = json.loads(json.dumps(identity, default=str))  # as it reads back from the record
        if self.record_path.exists():
            try:
                old = identity_of(read_json(self.record_path))
            except (OSError, ValueError, KeyError, TypeError, UserError):
                if not overwrite:
                    raise UserError(
                        f"{self.record_path} is unreadable; pass --overwrite to start a new {self.kind} in {self.root}"
                    ) from None
                old = None
            if old != identity:
                if old is not None and not overwrite:
                    raise UserError(
                        f"{self.root} holds a {self.kind} of another configuration (differs in: {differing(old, identity)}); "
                        "use another --out or --overwrite"
                    )
                self.clear(owned())
        elif self.root.is_dir() and any(not is_scratch(f) for f in self.root.iterdir()) and not overwrite:
            raise UserError(f"{self.root} is not empty and holds no {self.kind}; use another --out or --overwrite")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.record_path, record)
        except OSError as e:
            raise UserError(f"cannot write to output folder {self.root}: {e.strerror or e}") from None

    def clear(self, names: Iterable[str]) -> None:
        """Delete what the experiment owns (folders and files named relative to the root); nothing else."""
        for name in list(names):
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

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


def differing(old: Any, new: Any) -> str:
    """The top-level keys two identities differ in, for the refusal line."""
    if isinstance(old, dict) and isinstance(new, dict):
        return ", ".join(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))
    return "everything"
