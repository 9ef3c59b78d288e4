"""Figures of the bench report (matplotlib, Agg), drawn from the bench folder's records:

- sal-heatmaps[-DEFENSE].png: SAL per layer (rows) and epoch (columns) of every run, one shared logarithmic colour
  scale across the panels (the paper's Figure 4); dots mark the learnable cells (SAL > beta) that #LP counts.
- beta[-DEFENSE].png: the clean run's SAL per layer per epoch, beta_t per epoch and beta (Figure 5).
- accuracy.png: test accuracy per epoch of every run (one panel per defense; mean and range over seeds).
- samples.png: clean / poisoned / perturbation (each scaled to its own largest change, a few changed pixels circled)
  for a few training images per poison.
- matrix.png: final test accuracy and UD, attacks x defenses (with more than one defense).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.errors import UserError
from ..core.io import utf8_path
from .plotting import pyplot as _plt
from .plotting import save_png as _save
from .plotting import text_color

if TYPE_CHECKING:
    from .results import BenchResults, MeanRow

RUN_COLORS = {
    "clean": "#222222",
    "em": "#d62728",
    "rem": "#ff7f0e",
    "dc": "#8c564b",
    "tap": "#9467bd",
    "lsp": "#2ca02c",
    "ops": "#17becf",
    "ar": "#e377c2",
}


@dataclass
class Figure:
    path: Path
    caption: str
    section: str  # where the page shows it


def _color(label: str, i: int) -> str:
    if label in RUN_COLORS:
        return RUN_COLORS[label]
    return _plt().get_cmap("tab10")(i % 10)


def _mean(agg: MeanRow | None, metric: str) -> float | None:
    return None if agg is None else agg.mean(metric)


def _name(label: str) -> str:
    return label if label == "clean" else label.upper()


def _suffix(defense: str, defenses: list[str]) -> str:
    return "" if defenses == ["none"] else f"-{defense}"


def short_layer(name: str) -> str:
    """layer3.1.conv2 -> l3.1.c2, shortcut.0 -> sc: short enough for 21 axis labels."""
    return (
        name.replace("layer", "l")
        .replace("conv", "c")
        .replace("shortcut", "sc")
        .replace(".weight", "")
        .replace("linear", "fc")
    )


# ---- SAL heatmaps (Figure 4) ---------------------------------------------------------------------------------------
def sal_heatmaps(panels: list[tuple[str, Any, float | None]], title: str, path: Path) -> Path:
    """panels: (label, RunSAL, beta). One log colour scale for all panels; cells above beta get a dot."""
    from matplotlib.colors import LogNorm

    plt = _plt()
    n = len(panels)
    cols = min(n, 4)
    rows = -(-n // cols)
    layers = panels[0][1].layers
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(3.3 * cols + 1.2, 0.17 * len(layers) * rows + 1.4 * rows + 0.6),
        layout="constrained",
        squeeze=False,
    )
    values = np.concatenate([p[1].sal.ravel() for p in panels])
    pos = values[values > 0]
    vmax = float(pos.max()) if pos.size else 1.0
    vmin = max(
        float(pos.min()) if pos.size else vmax * 1e-3, vmax * 1e-4
    )  # a floor: exact zeros would stretch the scale
    norm = LogNorm(vmin=vmin, vmax=vmax, clip=True)
    cmap = plt.get_cmap("magma").copy()
    im = None
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        label, run, beta = panels[k]
        a = np.clip(run.sal.T, vmin, None)  # layers x epochs
        # one column per probed epoch (SAL may be probed every k epochs), labelled with its epoch number
        im = ax.imshow(a, aspect="auto", norm=norm, cmap=cmap, interpolation="nearest")
        if beta is not None:
            yy, xx = np.nonzero(run.sal.T > beta)
            ax.scatter(xx, yy, s=6, c="#00e5ff", marker="o", linewidths=0)
            lp = np.count_nonzero(run.sal > beta) / run.sal.shape[0]
            ax.set_title(f"{_name(label)}  (#LP {lp:.2f})", fontsize=9)
        else:
            ax.set_title(_name(label), fontsize=9)
        ax.set_yticks(range(len(layers)))
        ax.set_yticklabels([short_layer(x) for x in layers] if k % cols == 0 else [], fontsize=6)
        step = max(1, len(run.epochs) // 10)
        ax.set_xticks(range(0, len(run.epochs), step))
        ax.set_xticklabels([str(e) for e in run.epochs[::step]])
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    cb = fig.colorbar(im, ax=axes, shrink=0.8, pad=0.01)
    cb.set_label("SAL (log scale, shared by all panels)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


# ---- beta (Figure 5) ------------------------------------------------------------------------------------------------
def beta_figure(clean, title: str, path: Path) -> Path:
    from ..metrics import epoch_thresholds

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    ep = np.asarray(clean.epochs)
    cmap = plt.get_cmap("viridis")
    for j, name in enumerate(clean.layers):
        ax.plot(
            ep,
            np.maximum(clean.sal[:, j], 1e-8),
            color=cmap(j / max(len(clean.layers) - 1, 1)),
            lw=0.9,
            alpha=0.75,
            marker=".",
            ms=3,
            label=short_layer(name) if j in (0, len(clean.layers) - 1) else None,
        )
    bt = epoch_thresholds(clean.sal)
    ax.plot(ep, bt, color="red", lw=2.2, label="beta_t (2-means midpoint per epoch)")
    ax.axhline(float(bt.mean()), color="red", ls="--", lw=1.2, label=f"beta = mean beta_t = {bt.mean():.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("SAL of each layer (clean run)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7, loc="best", ncol=2, title="layers: first (dark) to last (yellow)", title_fontsize=7)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


# ---- accuracy curves ----------------------------------------------------------------------------------------------
def accuracy_figure(results: BenchResults, path: Path) -> Path:
    plt = _plt()
    config = results.config
    defenses = list(config["defenses"])
    n = len(defenses)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(6.2 * cols, 3.9 * rows), layout="constrained", squeeze=False, sharey=True
    )
    attacks = results.attacks()
    chance = None
    for ax, d in zip(axes.flat, defenses):
        for i, a in enumerate(attacks):
            curves = [results.curves[r.run] for r in results.rows if r.attack == a and r.defense == d]
            curves = [c for c in curves if c.epoch]
            if not curves:
                continue
            m = min(len(c.epoch) for c in curves)
            acc = np.array([c.test_acc[:m] for c in curves], dtype=float)
            ep = np.asarray(curves[0].epoch[:m])
            ax.plot(
                ep, acc.mean(0), color=_color(a, i), lw=2.2 if a == "clean" else 1.5, marker="o", ms=3, label=_name(a)
            )
            if len(curves) > 1:
                ax.fill_between(ep, acc.min(0), acc.max(0), color=_color(a, i), alpha=0.15, lw=0)
        ax.set_title("standard training" if d == "none" else f"defense: {d}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        chance = chance or _chance(results)
        if chance:
            ax.axhline(chance, color="grey", ls=":", lw=1)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    seeds = len(config["seeds"])
    fig.suptitle(
        "test accuracy per epoch"
        + (f" (mean over {seeds} seeds, band = min..max)" if seeds > 1 else "")
        + ("; dotted: chance" if chance else ""),
        fontsize=10,
    )
    return _save(fig, path)


def _chance(results: BenchResults) -> float | None:
    n = results.bench.num_classes
    return 100.0 / n if n else None


# ---- samples ------------------------------------------------------------------------------------------------------
MARKED = 16  # a perturbation that changes at most this many pixel positions gets each one circled


def perturbation_panel(clean: torch.Tensor, poisoned: torch.Tensor) -> tuple[torch.Tensor, float | None, list]:
    """What the perturbation panel of one sample shows: (image (C, H, W) in [0, 1], its magnification, the pixel
    positions (row, column) to mark). The change is scaled by its own largest absolute value, so grey is no change and
    the largest change reaches black or white: a one-pixel change (OPS) is as visible as a dense one. The
    magnification is None where nothing changed; only a change of at most MARKED pixels is marked."""
    d = poisoned.float() / 255 - clean.float() / 255
    top = float(d.abs().max()) if d.numel() else 0.0
    if top == 0:
        return torch.full(d.shape, 0.5), None, []
    changed = (d != 0).any(dim=0).nonzero().tolist()
    return (0.5 + d / (2 * top)).clamp(0, 1), 1 / (2 * top), changed if len(changed) <= MARKED else []


def sample_grid(clean: dict[str, Any], poisons: list[tuple[str, Any]], path: Path) -> Path:
    """Rows: one per poison. Per sample image: clean | poisoned | perturbation, each scaled to its own largest change
    (perturbation_panel; grey = no change, a few changed pixels circled)."""
    plt = _plt()
    imgs, idx = clean["images"], clean["indices"]
    k = len(idx)
    fig, axes = plt.subplots(
        len(poisons), 3 * k, figsize=(1.15 * 3 * k + 0.4, 1.3 * len(poisons) + 0.6), layout="constrained", squeeze=False
    )
    for row, (label, poison) in enumerate(poisons):
        pos = {int(i): j for j, i in enumerate(poison.indices.tolist())}
        for s in range(k):
            j = pos.get(int(idx[s]))
            c_u8 = imgs[s]
            p_u8 = poison.images[j] if j is not None else c_u8
            panel, mag, marks = perturbation_panel(c_u8, p_u8)
            for t, (im, what) in enumerate(
                ((c_u8.float() / 255, "clean"), (p_u8.float() / 255, "poisoned"), (panel, "perturbation"))
            ):
                ax = axes[row, 3 * s + t]
                ax.imshow(
                    im.permute(1, 2, 0).numpy() if im.shape[0] == 3 else im[0].numpy(),
                    cmap=None if im.shape[0] == 3 else "gray",
                    vmin=0,
                    vmax=1,
                    interpolation="nearest",
                )
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(what, fontsize=7)
            ax = axes[row, 3 * s + 2]
            radius = max(1.5, im.shape[-1] / 10)
            for y, x in marks:
                ax.add_patch(plt.Circle((x, y), radius, fill=False, edgecolor="#ff00ff", lw=1.2))
            ax.set_xlim(-0.5, im.shape[-1] - 0.5)  # a circle at the border does not widen the panel
            ax.set_ylim(im.shape[-2] - 0.5, -0.5)
            ax.set_xlabel("no change" if mag is None else f"x{mag:.3g}", fontsize=6, labelpad=1)
        axes[row, 0].set_ylabel(_name(label), fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(
        "samples: clean | poisoned | perturbation (each scaled to its own largest change, xN below it: grey = 0; "
        "circled: the changed pixels, where only a few changed)",
        fontsize=9,
    )
    return _save(fig, path)


# ---- attack x defense matrix -----------------------------------------------------------------------------------------
def matrix_figure(results: BenchResults, path: Path) -> Path:
    from .tables import attacks_and_defenses, lookup

    plt = _plt()
    attacks, defenses = attacks_and_defenses(results)
    look = lookup(results)
    fig, axes = plt.subplots(
        1, 2, figsize=(2.0 + 1.5 * len(defenses) * 2, 1.2 + 0.45 * len(attacks)), layout="constrained"
    )
    for ax, (metric, label, cmap, vmax) in zip(
        axes,
        (
            ("final_test_acc", "final test accuracy (%)", "viridis", 100.0),
            ("ud", "UD (vs the clean run under the same defense)", "coolwarm", None),
        ),
    ):
        a = np.array(
            [[np.nan if (v := _mean(look.get((x, d)), metric)) is None else v for d in defenses] for x in attacks]
        )
        ignored = np.array(  # a poison the model did not learn has no UD to draw (uebench.metrics.verdict)
            [
                [metric == "ud" and (m := look.get((x, d))) is not None and m.learned == "no" for d in defenses]
                for x in attacks
            ]
        )
        a[ignored] = np.nan
        if metric == "ud":
            top = float(np.nanmax(a)) if np.isfinite(a).any() else 2.0
            im = ax.imshow(a, cmap=cmap, vmin=0, vmax=max(2.0, top), aspect="auto")
        else:
            im = ax.imshow(a, cmap=cmap, vmin=0, vmax=vmax, aspect="auto")
        for i in range(len(attacks)):
            for j in range(len(defenses)):
                if ignored[i, j]:
                    ax.text(j, i, "not learned", ha="center", va="center", fontsize=7, color="#666666")
                elif np.isfinite(a[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{a[i, j]:.1f}" if metric != "ud" else f"{a[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color=text_color(im.cmap(im.norm(a[i, j]))),  # white on dark cells, black on light ones
                    )
        ax.set_xticks(range(len(defenses)))
        ax.set_xticklabels(["standard" if d == "none" else d for d in defenses], rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(attacks)))
        ax.set_yticklabels([_name(x) for x in attacks], fontsize=8)
        ax.set_title(label, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return _save(fig, path)


# ---- UD with its interval, both origins ------------------------------------------------------------------------------
def ud_figure(results: BenchResults, path: Path) -> Path | None:
    """UD per attack (first seed), one panel per defense: bars with the bootstrap interval (running origin) and a
    marker for the eval origin; the line at 1 is the clean run. Only poisons the model learned get a bar (hatched:
    partly, or of unknown status); one it did not learn keeps its place on the axis, labelled, with no bar: its UD is
    no result. None when no run has a UD."""
    fig = draw_ud(results)
    return None if fig is None else _save(fig, path)


def draw_ud(results: BenchResults):
    """The UD figure (ud_figure), or None when no run has a UD."""
    config = results.config
    seed0, defenses = config["seeds"][0], list(config["defenses"])
    groups = {
        d: [r for r in results.rows if r.defense == d and r.seed == seed0 and r.attack != "clean" and r.ud is not None]
        for d in defenses
    }
    groups = {d: rows for d, rows in groups.items() if rows}
    if not groups:
        return None
    plt = _plt()
    fig, axes = plt.subplots(
        1,
        len(groups),
        figsize=(1.6 + 0.55 * max(len(r) for r in groups.values()) * len(groups), 3.0),
        layout="constrained",
        squeeze=False,
    )
    for ax, (d, rows) in zip(axes[0], groups.items()):
        x = np.arange(len(rows))
        shown = np.array([r.ranked or r.learned == "unknown" for r in rows])
        ud = np.array([r.ud if s else 0.0 for r, s in zip(rows, shown)])
        lo = np.array([r.ud if r.ud_ci_low is None or not s else r.ud_ci_low for r, s in zip(rows, shown)])
        hi = np.array([r.ud if r.ud_ci_high is None or not s else r.ud_ci_high for r, s in zip(rows, shown)])
        lo, hi = np.where(shown, lo, 0.0), np.where(shown, hi, 0.0)
        bars = ax.bar(
            x[shown],
            ud[shown],
            color=[RUN_COLORS.get(r.attack, "#777777") for r, s in zip(rows, shown) if s],
            alpha=0.8,
            label="UD (running origin)",
        )
        for bar, r in zip(bars, [r for r, s in zip(rows, shown) if s]):
            if r.learned != "yes":
                bar.set_hatch("//")
        if shown.any():
            ax.errorbar(
                x[shown],
                ud[shown],
                yerr=[(ud - lo)[shown], (hi - ud)[shown]],
                fmt="none",
                ecolor="black",
                capsize=3,
                lw=1,
                label="90% bootstrap interval",
            )
        ev = [(i, r.ud_eval) for i, r in enumerate(rows) if r.ud_eval is not None and shown[i]]
        if ev:
            ax.plot(*zip(*ev), "kD", ms=4, label="UD (eval origin)")
        for i in np.flatnonzero(~shown):
            ax.text(i, 0.05, "not learned", rotation=90, ha="center", va="bottom", fontsize=7, color="#666666")
        ax.axhline(1.0, color="#444444", lw=0.8, ls="--")
        ax.set_xticks(x)
        ax.set_xticklabels(
            [_name(r.attack) + ("" if r.learned in (None, "yes") else f" ({r.learned})") for r in rows],
            rotation=30,
            ha="right",
            fontsize=8,
        )
        ax.set_title("standard training" if d == "none" else f"defense {d}", fontsize=9)
        ax.set_ylabel("UD (1 = the clean run)", fontsize=8)
    legend = {}  # below the panels, outside them: inside, it hid the whiskers of the bars under it
    for ax in axes[0]:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(text, handle)
    if legend:
        fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=len(legend), fontsize=7)
    return fig


# ---- all of them ----------------------------------------------------------------------------------------------------
def read_samples(path: Path) -> dict:
    """The bench's few clean sample images (samples.safetensors), checked: a damaged file is one line, not a trace."""
    from safetensors.torch import load_file

    try:
        with utf8_path(path) as name:
            t = load_file(name)
        ok = {"images", "labels", "indices"} <= set(t) and t["images"].dtype == torch.uint8 and t["images"].ndim == 4
    except Exception:
        ok = False
    if not ok:
        raise UserError(f"{path} is damaged; delete it and rerun the bench command, which writes it again")
    return t


def write_figures(results: BenchResults, out: Path) -> list[Figure]:
    from ..poisons.poison import Poison
    from ..training.records import load_run_sal

    out = Path(out)
    config = results.config
    defenses = list(config["defenses"])
    seed0 = config["seeds"][0]
    betas = {(b.defense, b.seed): b for b in results.betas}
    figs: list[Figure] = []
    for d in defenses:
        rows = [r for r in results.rows if r.defense == d and r.seed == seed0 and r.epochs_done > 0]
        clean = next((r for r in rows if r.attack == "clean"), None)
        b = betas.get((d, seed0))
        sfx = _suffix(d, defenses)
        where = "standard training" if d == "none" else f"defense {d}"
        panels: list[tuple[str, Any, float | None]] = []
        # both origins: the same search, L0 the epoch's running loss or W0's eval loss; where the two maps differ
        # by whole columns, the per-epoch offset between the two L0s decides #LP, not the layers
        for origin, beta, tag, name in (
            (None, b.beta if b else None, "", "the runs' own origin"),
            ("eval", clean.beta_eval if clean else None, "-eval", "the eval origin"),
        ):
            shown = []
            layers = None
            for r in rows:
                try:
                    run = load_run_sal(out / r.run, layers=layers, origin=origin)
                except Exception:  # an unfinished run may have no SAL yet; the page lists it as unfinished
                    continue
                layers = layers or run.layers
                label = (
                    r.attack
                    if r.learned in (None, "yes")
                    else f"{r.attack} ({'not learned' if r.learned == 'no' else r.learned})"
                )
                shown.append((label, run, beta))
            if origin is None:
                panels = shown
            if not shown:
                continue
            p = sal_heatmaps(
                shown,
                f"SAL per layer and epoch, {where}, seed {seed0}, {name}"
                + (f" (dots: SAL > beta = {beta:.3g})" if beta is not None else ""),
                out / f"sal-heatmaps{tag}{sfx}.png",
            )
            figs.append(
                Figure(
                    p,
                    f"SAL of every probed layer (rows, first layer on top) per epoch (columns), {where}, {name}; one "
                    "shared log colour scale; dots mark the cells above beta that #LP counts (the paper's Figure 4).",
                    "sal",
                )
            )
        if clean is not None and panels and panels[0][0] == "clean":
            p = beta_figure(
                panels[0][1], f"clean run, {where}: layers' SAL and the learnable threshold", out / f"beta{sfx}.png"
            )
            figs.append(
                Figure(
                    p,
                    f"beta per epoch from the clean run's SAL ({where}), with each layer's SAL (the paper's Figure 5).",
                    "beta",
                )
            )
    if any(c.epoch for c in results.curves.values()):
        figs.append(
            Figure(accuracy_figure(results, out / "accuracy.png"), "Test accuracy per epoch of every run.", "accuracy")
        )
    samples = out / "samples.safetensors"
    poisons = []
    for p in results.poisons:
        # one row per poison label: the first seed's file (the plan lists seeds in order)
        if (out / p.file).is_file() and not any(lbl == p.label for lbl, _ in poisons):
            poison = Poison.load(out / p.file)
            if poison.paired:  # an unpaired poison has no clean image to show beside its own
                poisons.append((p.label, poison))
    if samples.is_file() and poisons:
        figs.append(
            Figure(
                sample_grid(read_samples(samples), poisons, out / "samples.png"),
                "A few training images: clean, poisoned (what a victim downloads), and the perturbation magnified.",
                "samples",
            )
        )
    udp = ud_figure(results, out / "ud.png")
    if udp is not None:
        figs.append(
            Figure(
                udp,
                f"UD per attack (seed {seed0}) with its 90% bootstrap interval over probed epochs; diamonds: the "
                "same search read with the eval origin; dashed: the clean run (UD 1).",
                "ud",
            )
        )
    if len(defenses) > 1:
        figs.append(
            Figure(
                matrix_figure(results, out / "matrix.png"),
                "Attacks x defenses: final test accuracy and UD (the APBench leaderboard layout).",
                "matrix",
            )
        )
    return figs
