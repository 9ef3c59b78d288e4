"""Figures and the report page of `uebench crosstask` (matplotlib, Agg backend), drawn from results.json alone:
`write_report(read_json("out/results.json"), "out")` redraws everything (the dict read back as CrossTaskResults).

- metrics.png: one panel per task, a bar per data version (clean, each poison) with the task's final test metric,
  the trivial predictor as a dashed line: a poison that works pushes a bar down to that line;
- retained.png: the share of each task's clean margin over the trivial predictor that survives each poison,
  grouped by task (1 = untouched, 0 = no better than trivial): all tasks on one scale;
- similarity.png: per data version, the cosine similarity of the tasks' SAL vectors on the shared encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.io import atomic_write_text
from .crosstask_results import CrossTaskResults, TaskCell
from .plotting import pyplot as _plt
from .plotting import save_png as _save
from .plotting import text_color, wrap_title

PALETTE = ["#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def metrics_figure(results: CrossTaskResults, path: Path) -> Path:
    plt = _plt()
    tasks, versions = results.tasks, results.versions
    cols = min(4, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.0 * rows), layout="constrained", squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        row = results.per_task[task]
        vals = [row.versions[v].final for v in versions]
        ax.bar(range(len(versions)), vals, color=[PALETTE[i % len(PALETTE)] for i in range(len(versions))])
        ax.axhline(row.trivial, color="k", ls="--", lw=1, label="trivial")
        ax.set_xticks(range(len(versions)), versions, rotation=30, ha="right", fontsize=8)
        arrow = "higher" if row.higher_is_better else "lower"
        ax.set_title(f"{task}: {row.metric} ({arrow} better)", fontsize=9)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("test metric per task: clean vs poisoned training images (clean targets)", fontsize=10)
    return _save(fig, path)


def retained_figure(results: CrossTaskResults, path: Path) -> Path:
    return _save(draw_retained(results), path)


def draw_retained(results: CrossTaskResults):
    plt = _plt()
    tasks = results.tasks
    poisons = [v for v in results.versions if v != "clean"]
    width_in = max(5.0, 1.2 * len(tasks) * max(1, len(poisons)) ** 0.5 + 2)
    fig, ax = plt.subplots(figsize=(width_in, 3.6), layout="constrained")
    width = 0.8 / max(len(poisons), 1)
    x = np.arange(len(tasks))
    for i, v in enumerate(poisons):
        vals = [results.per_task[t].versions[v].retained for t in tasks]
        vals = [np.nan if a is None else a for a in vals]
        ax.bar(x + (i - (len(poisons) - 1) / 2) * width, vals, width, label=v, color=PALETTE[(i + 1) % len(PALETTE)])
    ax.axhline(1.0, color="#1f77b4", lw=1, label="clean")
    ax.axhline(0.0, color="k", ls="--", lw=1, label="trivial")
    ax.set_xticks(x, tasks)
    ax.set_ylabel("margin over trivial retained")
    ax.legend(fontsize=8, ncols=min(4, len(poisons) + 2))
    title = "how much of each task survives the classification UEs (1 = all, 0 = nothing)"
    ax.set_title(wrap_title(title, width_in, 10), fontsize=10)  # a narrow figure wraps it instead of cutting it off
    return fig


def similarity_figure(results: CrossTaskResults, path: Path) -> Path | None:
    fig = draw_similarity(results)
    return None if fig is None else _save(fig, path)


def draw_similarity(results: CrossTaskResults):
    """The similarity figure, or None where no data version has two tasks with a SAL vector."""
    plt = _plt()
    sims = {v: s for v, s in results.sal_similarity.items() if len(s.tasks) >= 2}
    if not sims:
        return None
    width_in = 3.2 * len(sims) + 0.8
    fig, axes = plt.subplots(1, len(sims), figsize=(width_in, 3.2), layout="constrained", squeeze=False)
    im = None
    for ax, (v, s) in zip(axes.flat, sims.items()):
        m = np.array([[np.nan if a is None else a for a in r] for r in s.matrix], dtype=float)
        im = ax.imshow(m, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(s.tasks)), s.tasks, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(s.tasks)), s.tasks, fontsize=8)
        for i in range(len(m)):
            for j in range(len(m)):
                if np.isfinite(m[i, j]):
                    colour = text_color(im.cmap(im.norm(m[i, j])))  # white on the dark ends of the scale
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7, color=colour)
        ax.set_title(v, fontsize=9)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="cosine of per-layer SAL")
    title = "task similarity: cosine of the tasks' SAL vectors on the shared encoder"
    fig.suptitle(wrap_title(title, width_in, 10), fontsize=10)  # one version's figure is narrow: wrapped, not cut
    return fig


def write_figures(results: CrossTaskResults, folder: str | Path) -> dict[str, Path]:
    folder = Path(folder)
    out = {"metrics": metrics_figure(results, folder / "metrics.png")}
    if len(results.versions) > 1:
        out["retained"] = retained_figure(results, folder / "retained.png")
    sim = similarity_figure(results, folder / "similarity.png")
    if sim is not None:
        out["similarity"] = sim
    return out


def _cell(c: TaskCell, clean: bool) -> str:
    s = f"{c.final:.4g}"
    if not clean and c.drop is not None:
        s += f" ({100 * c.drop:+.0f}%)"
    return s


def report_html(results: CrossTaskResults, figures: dict[str, Path]) -> str:
    from .html import escape, figure, page, paragraph, section, table

    cfg = results.config
    ds = results.dataset
    versions = results.versions
    intro = paragraph(
        "Unlearnable examples crafted against the <b>class labels only</b> "
        f"({', '.join(v for v in versions if v != 'clean') or 'none'}), "
        f"then each task trained on the poisoned training images with its clean targets and tested on clean images. "
        f"Dataset {ds.name} ({ds.train} train / {ds.test} test images), "
        f"{'one multi-task model (shared encoder)' if cfg['multitask'] else 'one single-task model per task'}, "
        f"{cfg['encoder']} width {cfg['width']}, recipe {cfg['recipe']}"
        + (f", {cfg['epochs']} epochs" if cfg.get("epochs") else "")
        + "."
    )
    rows = []
    for t in results.tasks:
        r = results.per_task[t]
        rows.append(
            [
                t,
                r.metric + ("" if r.higher_is_better else " (lower better)"),
                r.trivial,
                *[
                    _cell(r.versions[v], v == "clean")
                    + (" (not learned)" if v == "clean" and not r.clean_learned else "")
                    for v in versions
                ],
            ]
        )
    body = section("uebench crosstask", intro, level=1)
    learned = results.learned
    if learned:  # was each poison learned at all (the class head's shortcut probe)?
        rows.append(
            ["learned", "class shortcut probe", "", *[learned.get(v, "-") for v in versions if v != "clean"]]
            if "clean" not in versions
            else ["learned", "class shortcut probe", "", "-", *[learned.get(v, "-") for v in versions[1:]]]
        )
    notes = [f"{t}: {results.per_task[t].note}" for t in results.tasks if results.per_task[t].note]
    body += section(
        "Per-task metric, clean vs poisoned (relative drop)",
        table(["task", "metric", "trivial", *versions], rows)
        + "".join(paragraph(escape(n), cls="note") for n in notes),
    )
    ret_rows = [
        [t, *[results.per_task[t].versions[v].retained for v in versions if v != "clean"]] for t in results.tasks
    ]
    if len(versions) > 1:
        body += section(
            "Margin over the trivial predictor retained (1 = untouched, 0 = unlearnable)",
            table(["task", *[v for v in versions if v != "clean"]], ret_rows, digits=3),
        )
    ud_rows = [
        [
            t,
            results.per_task[t].beta,
            *[results.per_task[t].versions[v].ud for v in versions if v != "clean"],
        ]
        for t in results.tasks
    ]
    if results.sal_mode and len(versions) > 1:
        body += section(
            "Per-task UD (SAL of each task's loss on the shared encoder, "
            f"{results.sal_mode} mode; beta from the task's clean run)",
            table(["task", "beta", *[v for v in versions if v != "clean"]], ud_rows, digits=3),
        )
    for key, caption in (
        ("metrics", "Final test metric per task and data version; dashed: the trivial predictor."),
        ("retained", "Share of each task's clean margin over the trivial predictor that survives each poison."),
        ("similarity", "Cosine similarity of the tasks' per-layer SAL vectors (mean over probed epochs)."),
    ):
        if key in figures:
            body += figure(figures[key], caption)
    src_rows = [[t, results.per_task[t].source] for t in results.tasks]
    body += section("Targets", table(["task", "target source (always the clean images)"], src_rows))
    p_rows = [
        [k, p.attack, p.variant, p.norm, p.budget, p.measured, p.craft_seconds] for k, p in results.poisons.items()
    ]
    if p_rows:
        body += section(
            "Poisons", table(["label", "attack", "variant", "norm", "budget", "measured (max)", "craft s"], p_rows)
        )
    return page("uebench crosstask", body)


def write_report(results: CrossTaskResults | dict[str, Any], out: str | Path) -> Path:
    if isinstance(results, dict):  # results.json as read back
        results = CrossTaskResults.from_dict(results)
    out = Path(out)
    figs = write_figures(results, out / "figures")
    path = out / "report.html"
    atomic_write_text(path, report_html(results, figs))
    return path
