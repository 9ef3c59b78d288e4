"""The one progress bar every long loop shows (training, crafting, reading files): tqdm on stderr, or nothing."""

from __future__ import annotations

from typing import Any


def progress_bar(
    enabled: bool, total: int | None, desc: str, *, unit: str = "step", initial: int = 0, leave=True
) -> Any:
    """A tqdm bar, or None when `enabled` is false (callers write `if bar: bar.update()`)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm  # imported only when a bar is shown: tqdm is slow to import

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=leave)
