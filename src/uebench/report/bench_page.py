"""report.html of a bench: one self-contained page (figures embedded) built with report.html's helpers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.io import atomic_write_text
from ..poisons.imperceptibility import is_valid
from ..training.shortcut import SHORTCUT_KEYS
from . import html as page
from .tables import SHORTCUT_NOTE, matrix, number, setting_line, table1, verdict_lines

if TYPE_CHECKING:
    from .results import BenchResults


def _round(v: float | None, digits: int) -> float | None:
    return None if v is None else round(v, digits)


def _costs(results: BenchResults) -> tuple[list[str], list[list[Any]]]:
    header = [
        "poison",
        "seed",
        "norm",
        "budget",
        "crafting time (s)",
        "crafting cost (epoch-equivalents)",
        "PSNR dB: mean (worst image)",
        "SSIM: mean (worst image)",
        "variant",
        "file",
    ]
    rows = []
    for p in results.poisons:
        m = p.meta or {}
        q = m.get("imperceptibility") if is_valid(m.get("imperceptibility")) else {}
        budget = m.get("budget")
        b = f"{budget * 255:.3g}/255" if m.get("norm") == "linf" and budget is not None else budget
        b = "unbounded" if m.get("norm") == "none" else b  # a multiplicative attack (CUDA) has no Lp budget
        rows.append(
            [
                p.label.upper(),
                p.seed,
                m.get("norm"),
                b,
                m.get("craft_seconds"),
                m.get("epoch_equivalents"),
                _quality(q, "psnr", 2),
                _quality(q, "ssim", 4),
                m.get("variant"),
                page.raw(f"<code>{page.escape(p.file)}</code>" + (" (missing)" if not p.meta else "")),
            ]
        )
    return header, rows


def _quality(stats: dict[str, Any], metric: str, digits: int) -> str:
    """'34.40 (28.15, image 2404)': the per-image mean and the worst image with its dataset index; '-' where the poison
    has no such numbers (a file of an earlier uebench, an unpaired poison)."""
    mean, worst, index = (stats.get(f"{metric}_{k}") for k in ("mean", "worst", "worst_index"))
    if mean is None or worst is None:
        return "-"
    at = f", image {index}" if isinstance(index, int) and not isinstance(index, bool) else ""
    return f"{mean:.{digits}f} ({worst:.{digits}f}{at})"


def _runs(results: BenchResults) -> tuple[list[str], list[list[Any]]]:
    header = [
        "attack",
        "defense",
        "seed",
        "status",
        "epochs",
        "final acc %",
        "peak acc % (epoch)",
        "shortcut %",
        "clean-train %",
        "learned",
        "#LP",
        "UD",
        "UD 90% interval",
        "beta",
        "UD (eval origin)",
        "L0 offset",
        "training s",
        "SAL s",
        "run folder",
    ]
    rows = []
    for r in results.rows:
        peak = "-" if r.peak_test_acc is None else f"{number(r.peak_test_acc, 'peak_test_acc')} ({r.peak_epoch})"
        rows.append(
            [
                r.attack,
                r.defense,
                r.seed,
                r.status,
                f"{r.epochs_done}/{r.epochs}",
                number(r.final_test_acc, "final_test_acc"),  # accuracies as Table 1 prints them
                peak,
                *(number(getattr(r, k), k) for k in SHORTCUT_KEYS),
                r.learned or "-",
                _round(r.lp, 3),
                _round(r.ud, 3),
                None if r.ud_ci_low is None else f"{r.ud_ci_low:.2f} - {r.ud_ci_high:.2f}",
                r.beta,
                _round(r.ud_eval, 3),
                _round(r.sal_offset, 3),
                round(r.train_seconds, 1),
                round(r.sal_seconds, 1),
                page.raw(f"<code>{page.escape(r.run)}</code>"),
            ]
        )
    return header, rows


def write_page(results: BenchResults, figures: list, path: str | Path) -> Path:
    c = results.config
    defenses = list(c["defenses"])
    by_section: dict[str, list] = {}
    for f in figures:
        by_section.setdefault(f.section, []).append(f)

    def figs(section: str) -> str:
        return "\n".join(page.figure(f.path, f.caption) for f in by_section.get(section, []))

    multi = len(defenses) > 1
    ref = (
        (
            "beta, and with it #LP and UD, come from the clean run "
            "trained under the <b>same defense</b> and seed: a UD under "
            "a defense compares that defense's poisoned and clean runs."
        )
        if multi
        else "beta, and with it #LP and UD, come from the clean run of the same seed."
    )
    intro = page.paragraph(
        f"Preset <b>{page.escape(c['preset'])}</b>: {page.escape(setting_line(results))}. "
        "acc = final test accuracy (%); #LP = number of (epoch, layer) cells whose SAL exceeds the learnable threshold "
        f"beta, per epoch; UD = #LP / #LP(clean) (the paper's Table 1; the paper reads a lower UD as more "
        "unlearnable, and the paragraph above says whether this bench's numbers bear that reading out). "
        "<i>learned</i> says whether the model picked the poison up at all (the shortcut probe); a poison it did not "
        f"learn has no #LP or UD in the tables and no bar in the figures. {ref} "
        "UD is read with the origin the runs were probed with (the public code's: L0 = the epoch's running training "
        "loss); <i>UD (eval origin)</i> reads the same search with L0 = the loss of the final weights on the probe "
        "data, as the paper's formula says. Their gap, <i>L0 offset</i> = L0(eval) - L0(running), is the same for "
        "every layer of an epoch: where it is large, running-origin #LP compares that offset with beta more than it "
        "compares layers. The UD interval resamples the probed epochs (bootstrap, 1,000 replicates)."
    )
    verdict = page.section(
        "What this bench says",
        "<ul>" + "".join(f"<li>{page.escape(line)}</li>" for line in verdict_lines(results)) + "</ul>",
    )
    body = [
        f"<h1>uebench bench: how unlearnable is {page.escape(c['dataset'])} under these attacks?</h1>",
        verdict,
        intro,
    ]
    if c.get("description"):
        body.append(page.paragraph(page.escape(c["description"]), cls="note"))
    body.append(page.section("Table 1: accuracy, #LP and UD", page.table(*table1(results))))
    if multi:
        body.append(
            page.section(
                "Attacks x defenses (APBench leaderboard layout)",
                page.paragraph("Final test accuracy (%):")
                + page.table(*matrix(results, "final_test_acc"))
                + page.paragraph("Peak test accuracy (%):")
                + page.table(*matrix(results, "peak_test_acc"))
                + page.paragraph("Was the poison learned?")
                + page.table(*matrix(results, "learned"))
                + page.paragraph("UD (reference: the clean run under the same defense):")
                + page.table(*matrix(results, "ud"))
                + figs("matrix"),
            )
        )
    if any(a.mean("shortcut_acc") is not None for a in results.aggregate):
        body.append(
            page.section(
                "Is the poison learned? (shortcut probe)",
                page.paragraph(page.escape(SHORTCUT_NOTE))
                + page.paragraph("Shortcut accuracy (%, final epoch):")
                + page.table(*matrix(results, "shortcut_acc"))
                + page.paragraph("Clean-train accuracy (%, final epoch):")
                + page.table(*matrix(results, "clean_train_acc")),
            )
        )
    if results.notes:
        body.append(
            page.section("Notes", "<ul>" + "".join(f"<li>{page.escape(n)}</li>" for n in results.notes) + "</ul>")
        )
    body.append(page.section("UD and its uncertainty", figs("ud")))
    body.append(page.section("SAL per layer and epoch (Figure 4)", figs("sal")))
    body.append(page.section("Learnable threshold beta (Figure 5)", figs("beta")))
    body.append(page.section("Test accuracy per epoch", figs("accuracy")))
    body.append(page.section("Poisons: samples and crafting cost", figs("samples") + page.table(*_costs(results))))
    betas = [[b.defense, b.seed, b.beta, b.clean_lp, b.sal_mode, b.sal_origin, len(b.layers)] for b in results.betas]
    body.append(
        page.section(
            "Runs",
            page.table(*_runs(results))
            + page.paragraph("Thresholds:")
            + page.table(["defense", "seed", "beta", "#LP clean", "SAL mode", "L0 origin", "layers"], betas)
            + page.paragraph(
                "Every number here is read from the run folders (metrics.jsonl, summary.json) and the poison files; "
                "<code>uebench report DIR</code> rebuilds this page, results.json/.csv and table.md from them.",
                cls="note",
            ),
        )
    )
    atomic_write_text(path, page.page(f"uebench bench ({c['preset']})", "\n".join(body)))
    return Path(path)
