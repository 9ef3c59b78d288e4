"""matplotlib on the Agg backend (no screen needed), imported
only when a figure is drawn, and PNGs written atomically."""

from __future__ import annotations

import io
from pathlib import Path

from ..core.io import atomic_write_bytes


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int = 100) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
