"""Small helpers for self-contained HTML report pages (images embedded as base64, one inline stylesheet).

Every report page of uebench (bench, landscape, crosstask) is built from these, so they look alike and open
from disk without a server or network:

    body = section("Results", table(["attack", "acc %"], [["EM", 21.3]]) + figure("sal.png", "SAL per layer"))
    atomic_write_text("report.html", page("uebench bench", body))

Strings passed as cell values, captions and titles are escaped; `body_html`, `section(..., html)` and
`raw(...)` cells are trusted HTML.
"""

from __future__ import annotations

import base64
import html as _html
from pathlib import Path
from typing import Any, Iterable, Sequence

STYLE = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:2em auto;\
padding:0 1em;line-height:1.4;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
img{max-width:100%}figure{margin:1em 0}figcaption{font-size:.9em;color:#555}
.note{font-size:.9em;color:#555}code{background:#f3f3f3;padding:0 3px}"""


class raw(str):
    """A table cell (or caption) holding HTML that must not be escaped."""


def escape(value: Any) -> str:
    return _html.escape(str(value))


def fmt(value: Any, digits: int = 4) -> str:
    """A cell value as HTML: floats to `digits` significant digits, None as '-', raw() untouched, others escaped."""
    if isinstance(value, raw):
        return str(value)
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return escape(value)


def img_data_uri(png: str | Path | bytes) -> str:
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode()


def figure(png: str | Path | bytes, caption: str = "", alt: str | None = None) -> str:
    """One embedded PNG with a caption (escaped unless raw())."""
    if alt is None:
        alt = Path(png).name if not isinstance(png, bytes) else (caption or "figure")
    cap = f"<figcaption>{fmt(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{img_data_uri(png)}" alt="{escape(alt)}">{cap}</figure>'


def table(header: Sequence[Any], rows: Iterable[Sequence[Any]], digits: int = 4) -> str:
    """An HTML table: one header row, then rows of cells formatted by fmt()."""
    head = "<tr>" + "".join(f"<th>{fmt(h)}</th>" for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{fmt(c, digits)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def section(title: str, body_html: str, level: int = 2) -> str:
    return f"<h{level}>{escape(title)}</h{level}>\n{body_html}\n"


def paragraph(text: str, cls: str | None = None) -> str:
    """A paragraph of trusted HTML (escape() user strings first)."""
    return f'<p class="{cls}">{text}</p>' if cls else f"<p>{text}</p>"


def page(title: str, body_html: str, style: str = "") -> str:
    """A complete HTML document: title (escaped), the shared stylesheet plus `style`, and body_html."""
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>\n<style>{STYLE}{style}</style></head>\n<body>\n{body_html}\n</body></html>\n"
    )
