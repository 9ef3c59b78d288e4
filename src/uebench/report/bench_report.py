"""The bench report, rebuilt from the bench folder alone (bench.json, run folders, poison files, samples).

    paths = write_bench_report("runs/quick")      # results.json, results.csv, table.md, PNGs, report.html

The numbers are report.results.collect()'s typed records; this module writes them out.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import UserError
from ..core.io import atomic_write_json, atomic_write_text, read_json
from ..core.lock import FolderLock
from .results import collect

RESULTS_JSON, RESULTS_CSV, RESULTS_MEAN_CSV, TABLE_MD, REPORT_HTML = (
    "results.json",
    "results.csv",
    "results-mean.csv",
    "table.md",
    "report.html",
)
FIGURES_INDEX = "figures.json"  # the names of the figures the report wrote
REPORT_FILES = (RESULTS_JSON, RESULTS_CSV, RESULTS_MEAN_CSV, TABLE_MD, REPORT_HTML, FIGURES_INDEX)


def written_figures(out: Path) -> set[str]:
    """The figure files an earlier report wrote (FIGURES_INDEX), as plain file names inside `out`; a user's own
    files in the folder are never on it. The index is read as untrusted: anything but a bare .png name is ignored."""
    try:
        names = read_json(out / FIGURES_INDEX) if (out / FIGURES_INDEX).is_file() else []
    except UserError:
        return set()
    if not isinstance(names, list):
        return set()
    return {
        n for n in names if isinstance(n, str) and n.endswith(".png") and Path(n).name == n and not n.startswith(".")
    }


def write_bench_report(out: str | Path, force: bool = False) -> list[Path]:
    """Write results.json, results.csv (results-mean.csv with several seeds), table.md, the figures and report.html.
    `force`: put runs side by side that were measured unlike their clean run (noted on the page; refused otherwise)."""
    from . import bench_figures, bench_page, tables

    out = Path(out)
    # not while a bench writes there (re-entrant: the bench itself calls this under its lock); a bench holds it briefly
    with FolderLock(out, wait=120):
        return _write_report(out, bench_figures, bench_page, tables, force)


def _write_report(out: Path, bench_figures, bench_page, tables, force: bool = False) -> list[Path]:
    results = collect(out, force=force)
    paths = [out / RESULTS_JSON]
    atomic_write_json(out / RESULTS_JSON, results.to_json())
    paths.append(tables.write_csv([r.to_dict() for r in results.rows], out / RESULTS_CSV, tables.RUN_COLUMNS))
    if len(results.config["seeds"]) > 1:
        rows = [a.to_dict() for a in results.aggregate]
        paths.append(tables.write_csv(rows, out / RESULTS_MEAN_CSV, tables.MEAN_COLUMNS))
    else:
        (out / RESULTS_MEAN_CSV).unlink(missing_ok=True)
    atomic_write_text(out / TABLE_MD, tables.markdown_report(results))
    paths.append(out / TABLE_MD)
    figures = bench_figures.write_figures(results, out)
    paths.extend(f.path for f in figures)
    written = {Path(f.path).name for f in figures}
    for old in written_figures(out) - written:  # figures of an earlier matrix (a defense no longer asked)
        (out / old).unlink(missing_ok=True)
    atomic_write_json(out / FIGURES_INDEX, sorted(written))  # what the bench may delete later: its own figures only
    paths.append(bench_page.write_page(results, figures, out / REPORT_HTML))
    return paths
