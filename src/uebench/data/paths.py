"""Where datasets live: --data-dir, else $UEBENCH_DATA, else a per-user cache folder."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "UEBENCH_DATA"


def data_root(data_dir: str | Path | None = None) -> Path:
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "uebench" / "data"


def find_folder(root: Path, names: list[str], marker: str) -> Path | None:
    """The first of root itself, root/<name>... that contains `marker` (a file name)."""
    for cand in [root, *(root / n for n in names)]:
        if (cand / marker).exists():
            return cand
    return None
