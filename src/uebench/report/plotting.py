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


def text_color(rgba) -> str:
    """'black' or 'white', whichever reads better on a cell of colour `rgba` (values in [0, 1]): white on a cell whose
    relative luminance (WCAG, linear sRGB) is below 0.179, where the two contrasts are equal."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(float(c)) for c in tuple(rgba)[:3])
    return "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.179 else "black"


def wrap_title(text: str, width_in: float, fontsize: float) -> str:
    """`text` broken into lines that fit `width_in` inches at `fontsize` points (an average character is about
    0.55 em wide; kept to 90% of the width for the margins): a long title wraps instead of being cut off."""
    import textwrap

    chars = max(10, int(0.9 * width_in * 72 / (0.55 * fontsize)))
    return textwrap.fill(text, chars)
