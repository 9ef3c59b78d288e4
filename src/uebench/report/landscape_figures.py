"""Figures and the report page of `uebench landscape` (matplotlib, Agg backend).

Everything is drawn from the two JSON-able objects the experiment writes (landscape.json, landscape-data.json),
so the figures can be redrawn from those files alone: `write_figures(read_json(a), read_json(b), folder)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.io import atomic_write_text
from .plotting import pyplot as _plt
from .plotting import save_png


def _save(fig, path: Path) -> Path:
    return save_png(fig, path, dpi=110)


COLORS = {"clean": "#1f77b4", "poisoned": "#d62728", "control": "#2ca02c"}


def _attack_label(summary: dict[str, Any]) -> str:
    m = summary["data"]["poison_meta"]
    return f"{m['attack']} ({m['norm']} {m['budget']:.4g})"


def plane_figure(kind: str, plane: dict[str, Any], summary: dict[str, Any], path: Path) -> Path:
    """Two panels (clean, poisoned): training-loss contours over the plane, both trajectories overlaid."""
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullFormatter

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.2), layout="constrained")
    info = plane["info"]
    if plane["scalar"]:
        xlabel, ylabel = (f"w{i} = {n}" for i, n in zip(info["indices"], info["names"]))
    else:
        r = info["explained_variance_ratio"]
        xlabel, ylabel = f"PC1 ({100 * r[0]:.1f}% of variance)", f"PC2 ({100 * r[1]:.1f}%)"
    for ax, run in zip(axes, ("clean", "poisoned")):
        p = plane["panels"][run]
        ox, oy = p["origin"]
        X = ox + np.asarray(p["alphas"])
        Y = oy + np.asarray(p["betas"])
        Z = np.asarray(p["loss"], dtype=float)
        lo, hi = max(float(np.nanmin(Z)), 1e-6), max(float(np.nanmax(Z)), 1e-6)
        if hi > lo:
            log = hi / lo > 3  # a wide range reads best on a log scale, a narrow one on a linear scale
            levels = np.geomspace(lo, hi, 24) if log else np.linspace(lo, hi, 24)
            cs = ax.contourf(X, Y, Z, levels=levels, norm=LogNorm(lo, hi) if log else None, cmap="viridis")
            ax.contour(X, Y, Z, levels=levels[::3], colors="k", linewidths=0.4, alpha=0.5)
            cb = fig.colorbar(cs, ax=ax, shrink=0.9, ticks=levels[::3])
            cb.ax.yaxis.set_major_formatter(FormatStrFormatter("%.6g" if hi / lo < 1.01 else "%.4g"))
            cb.ax.yaxis.set_minor_formatter(NullFormatter())
            cb.set_label("training loss" + (" (log scale)" if log else ""))
        for other in ("clean", "poisoned"):
            t = np.asarray(p["trajectory"][other]).reshape(-1, 2) + [ox, oy]
            own = other == run
            ax.plot(
                t[:, 0],
                t[:, 1],
                "-" if own else "--",
                color=COLORS[other],
                lw=1.8 if own else 1.0,
                alpha=1.0 if own else 0.7,
                label=f"{other} trajectory" + ("" if own else " (other run)"),
            )
            ax.plot(t[0, 0], t[0, 1], "o", color="white", mec="k", ms=7, zorder=5)
            ax.plot(t[-1, 0], t[-1, 1], "*", color=COLORS[other], mec="k", ms=13, zorder=6)
        ax.plot([], [], "o", color="white", mec="k", label="start (shared)")
        ax.plot([], [], "*", color="grey", mec="k", ms=11, label="end points")
        ax.xaxis.set_major_locator(MaxNLocator(6))
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        data_name = "clean" if run == "clean" else "poisoned"
        ax.set_title(
            f"{run} run: loss on {data_name} training data\n(other weights at the {run} end point)", fontsize=10
        )
        ax.legend(fontsize=7, loc="best", framealpha=0.6)
    cfg = summary["config"]
    what = {
        "movers": "the two weights that move most (clean run)",
        "divergent": "the two weights whose clean and poisoned end points differ most",
        "pca": "top two PCA directions of the joint trajectory",
    }[kind]
    fig.suptitle(f"{cfg['model']} on {cfg['dataset']}, clean vs {_attack_label(summary)}: {what}", fontsize=11)
    return _save(fig, path)


def line_figure(data: dict[str, Any], summary: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    line = data["line"]
    a = np.asarray(line["alphas"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    ax.plot(a, line["clean"], color=COLORS["clean"], label="clean run, clean data")
    ax.plot(a, line["poisoned"], color=COLORS["poisoned"], label="poisoned run, poisoned data")
    ax.plot(
        a, line["poisoned_on_clean_data"], "--", color=COLORS["poisoned"], alpha=0.7, label="poisoned run, clean data"
    )
    for x in (0, 1):
        ax.axvline(x, color="grey", lw=0.6, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("alpha: weights = start + alpha (end - start)")
    ax.set_ylabel("training loss")
    ax.set_title("1-D view: straight line from the initial to the final weights", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def displacement_figure(data: dict[str, Any], summary: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    st = data["stats"]
    edges = np.asarray(st["edges"])
    fig, (h, c) = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    for run in ("clean", "poisoned", "control"):
        if run in st:
            unmoved = st[run].get("unmoved")
            h.stairs(
                st[run]["histogram"],
                edges,
                color=COLORS[run],
                lw=1.5,
                label=run + (f" ({unmoved} weights never move)" if unmoved else ""),
            )
    h.set_xscale("log")
    h.set_yscale("log")
    h.set_xlabel("|end - start| of one weight")
    h.set_ylabel("number of weights")
    h.set_title("displacement of every weight", fontsize=10)
    h.legend(fontsize=8)
    for run in ("poisoned", "control"):
        if run not in st or st[run]["relative_gap_cdf"] is None:
            continue
        cdf = st[run]["relative_gap_cdf"]
        c.plot(np.asarray(cdf["t"][1:]), cdf["frac"][1:], color=COLORS[run], label=f"{run}: all weights")
        crit = st[run].get("relative_gap_cdf_critical")
        if crit:
            c.plot(
                np.asarray(crit["t"][1:]),
                crit["frac"][1:],
                "--",
                color=COLORS[run],
                label=f"{run}: top 1% clean movers",
            )
    tol = summary["stats"]["tolerance"]
    if tol["mode"] == "relative":
        c.axvline(tol["value"], color="grey", ls=":", lw=1, label=f"tolerance {tol['value']:g}")
    c.set_xscale("log")
    c.set_ylim(0, 1)
    c.set_xlabel("|end - clean end| / |clean end - start|")
    c.set_ylabel("fraction of weights at most this far")
    c.set_title("how close each weight ends to the clean end point", fontsize=10)
    c.legend(fontsize=8)
    return _save(fig, path)


def distance_figure(data: dict[str, Any], summary: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    for run, d in data["distance"].items():
        ax.plot(d["steps"], d["to_clean_end"], color=COLORS.get(run, "k"), label=run)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("||w_t - w_end(clean)||")
    ax.set_title("distance of each run to the clean end point", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_figures(summary: dict[str, Any], data: dict[str, Any], folder: str | Path) -> list[Path]:
    folder = Path(folder)
    paths = [plane_figure(kind, plane, summary, folder / f"plane-{kind}.png") for kind, plane in data["planes"].items()]
    paths.append(line_figure(data, summary, folder / "line.png"))
    paths.append(displacement_figure(data, summary, folder / "displacements.png"))
    paths.append(distance_figure(data, summary, folder / "distance.png"))
    return paths


# ---- the report page ------------------------------------------------------------------------------------------
def write_report(summary: dict[str, Any], figures: list[Path], path: str | Path) -> Path:
    """A self-contained HTML page (figures embedded as base64 PNG)."""
    from . import html as page

    cfg, tr, stats = summary["config"], summary["training"], summary["stats"]
    rows = []
    for run, s in summary["runs"].items():
        st = stats["runs"].get(run, {})
        poisoned = run != "clean"
        rows.append(
            [
                run,
                s["train_acc"],
                s["test_acc"],
                s["train_loss"],
                s["displacement_l2"],
                s["path_length"],
                s["detour_ratio"],
                st.get("gap_to_clean_l2", 0.0),
                st.get("within_tol", {}).get("all", "") if poisoned else "-",
                st.get("within_tol", {}).get("top1%", "") if poisoned else "-",
            ]
        )
    header = [
        "run",
        "train acc %",
        "test acc %",
        "train loss",
        "||end - start||",
        "path length",
        "path / displacement",
        "||end - clean end||",
        "weights near clean end",
        "top-1% clean movers near clean end",
    ]
    planes = []
    for kind, info in summary["planes"].items():
        if "names" in info:
            moves = "; ".join(
                f"{r}: " + ", ".join(f"{v:+.3g}" for v in vals) for r, vals in info["displacement"].items()
            )
            planes.append(
                f"<li><b>{kind}</b>: {', '.join(page.escape(n) for n in info['names'])} (end - start: {moves})</li>"
            )
        else:
            planes.append(
                f"<li><b>{kind}</b>: explained variance "
                f"{', '.join(f'{100 * r:.1f}%' for r in info['explained_variance_ratio'])}</li>"
            )
    tol = stats["tolerance"]
    tol_txt = (
        f"|end - clean end| &le; {tol['value']:g} &times; |clean end - start| (per weight)"
        if tol["mode"] == "relative"
        else f"|end - clean end| &le; {tol['value']:g}"
    )
    d = summary["data"]
    title = f"uebench landscape: {cfg['model']} on {cfg['dataset']}"
    heading = f"Loss-landscape trajectories: {cfg['model']} on {cfg['dataset']}, clean vs {_attack_label(summary)}"
    intro = (
        f"{d['train_images']} training images {tuple(d['image_shape'])}, "
        f"poison: {page.escape(d['poison'])}. Plain SGD, lr {tr['lr']:g}, "
        f"momentum {tr['momentum']:g}, weight decay {tr['weight_decay']:g}, "
        f"batch {tr['batch_size']}, {tr['epochs']} epochs "
        f"({tr['total_steps']} steps), no augmentation, fp32; "
        "all runs start from the same weights and the clean and poisoned runs "
        f"see the same batches. Weights recorded every {tr['record_every']} step(s); "
        f"{summary['num_params']} parameters. Losses on "
        f"the planes and lines: a fixed subset of {d['eval_images']} "
        "training images (each run its own data). The control run is "
        "clean training with another batch order: the yardstick for how far two clean runs end apart."
    )
    body = (
        f"<h1>{page.escape(heading)}</h1>\n{page.paragraph(intro)}\n{page.table(header, rows)}\n"
        f"{page.paragraph(f'&quot;Near&quot;: {tol_txt}. Path lengths are measured between recorded steps.')}\n"
        + page.section("Coordinates", f"<ul>{''.join(planes)}</ul>")
        + page.section("Figures", "\n".join(page.figure(p, p.name) for p in figures))
    )
    atomic_write_text(path, page.page(title, body))
    return Path(path)
