"""mkdocs hook: replaces the marker line in reference/cli.md with the command reference generated from uebench's
argparse parsers (uebench.cli.reference.cli_reference_markdown), so the page cannot drift from the code."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

MARKER = "<!-- uebench-cli-reference -->"
PAGE = "reference/cli.md"
SRC = Path(__file__).resolve().parents[2] / "src"

log = logging.getLogger("mkdocs.hooks.cli_reference")


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        if page.file.src_uri == PAGE:  # under --strict a warning fails the build
            log.warning(f"{PAGE} has no '{MARKER}' line: the command reference was not generated")
        return markdown
    try:
        from uebench.cli.reference import cli_reference_markdown
    except ImportError:  # not installed: the checkout's own source
        sys.path.insert(0, str(SRC))
        from uebench.cli.reference import cli_reference_markdown
    return markdown.replace(MARKER, cli_reference_markdown())
