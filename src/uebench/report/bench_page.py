"""report.html of a bench: one self-contained page (figures embedded) built with report.html's helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from ..metrics.shortcut import SHORTCUT_KEYS
from . import html as H
from .tables import SHORTCUT_NOTE, matrix, setting_line, table1


def _costs(results: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    header = [
        "poison",
        "seed",
        "norm",
        "budget",
        "crafting time (s)",
        "crafting cost (epoch-equivalents)",
        "variant",
        "file",
    ]
    rows = []
    for p in results["poisons"]:
        m = p["meta"] or {}
        budget = m.get("budget")
        b = f"{budget * 255:.3g}/255" if m.get("norm") == "linf" and budget is not None else budget
        rows.append(
            [
                p["label"].upper(),
                p["seed"],
                m.get("norm"),
                b,
                m.get("craft_seconds"),
                m.get("epoch_equivalents"),
                m.get("variant"),
                H.raw(f"<code>{H.escape(p['file'])}</code>" + (" (missing)" if not p["meta"] else "")),
            ]
        )
    return header, rows


def _runs(results: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
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
    for r in results["rows"]:
        peak = "-" if r["peak_test_acc"] is None else f"{r['peak_test_acc']:.2f} ({r['peak_epoch']})"
        rows.append(
            [
                r["attack"],
                r["defense"],
                r["seed"],
                r["status"],
                f"{r['epochs_done']}/{r['epochs']}",
                None if r["final_test_acc"] is None else round(r["final_test_acc"], 2),
                peak,
                *(None if r.get(k) is None else round(r[k], 1) for k in SHORTCUT_KEYS),
                None if r["lp"] is None else round(r["lp"], 3),
                None if r["ud"] is None else round(r["ud"], 3),
                None if r.get("ud_ci_low") is None else f"{r['ud_ci_low']:.2f} - {r['ud_ci_high']:.2f}",
                r["beta"],
                None if r.get("ud_eval") is None else round(r["ud_eval"], 3),
                None if r.get("sal_offset") is None else round(r["sal_offset"], 3),
                round(r["train_seconds"], 1),
                round(r["sal_seconds"], 1),
                H.raw(f"<code>{H.escape(r['run'])}</code>"),
            ]
        )
    return header, rows


def write_page(results: dict[str, Any], figures: list, path: str | Path) -> Path:
    c = results["bench"]["config"]
    defenses = list(c["defenses"])
    by_section: dict[str, list] = {}
    for f in figures:
        by_section.setdefault(f.section, []).append(f)

    def figs(section: str) -> str:
        return "\n".join(H.figure(f.path, f.caption) for f in by_section.get(section, []))

    multi = len(defenses) > 1
    ref = (
        (
            "beta, and with it #LP and UD, come from the clean run trained under the <b>same defense</b> and seed: a UD under "
            "a defense compares that defense's poisoned and clean runs."
        )
        if multi
        else "beta, and with it #LP and UD, come from the clean run of the same seed."
    )
    intro = H.paragraph(
        f"Preset <b>{H.escape(c['preset'])}</b>: {H.escape(setting_line(results))}. "
        "acc = final test accuracy (%); #LP = number of (epoch, layer) cells whose SAL exceeds the learnable threshold "
        f"beta, per epoch; UD = #LP / #LP(clean), lower = more unlearnable (the paper's Table 1). {ref} "
        "UD is read with the origin the runs were probed with (the public code's: L0 = the epoch's running training "
        "loss); <i>UD (eval origin)</i> reads the same search with L0 = the loss of the final weights on the probe "
        "data, as the paper's formula says. Their gap, <i>L0 offset</i> = L0(eval) - L0(running), is the same for "
        "every layer of an epoch: where it is large, running-origin #LP compares that offset with beta more than it "
        "compares layers. The UD interval resamples the probed epochs (bootstrap, 1,000 replicates)."
    )
    body = [f"<h1>uebench bench: how unlearnable is {H.escape(c['dataset'])} under these attacks?</h1>", intro]
    if c.get("description"):
        body.append(H.paragraph(H.escape(c["description"]), cls="note"))
    body.append(H.section("Table 1: accuracy, #LP and UD", H.table(*table1(results))))
    if multi:
        body.append(
            H.section(
                "Attacks x defenses (APBench leaderboard layout)",
                H.paragraph("Final test accuracy (%):")
                + H.table(*matrix(results, "final_test_acc"))
                + H.paragraph("Peak test accuracy (%):")
                + H.table(*matrix(results, "peak_test_acc"))
                + H.paragraph("UD (reference: the clean run under the same defense):")
                + H.table(*matrix(results, "ud"))
                + figs("matrix"),
            )
        )
    if any(a.get("shortcut_acc_mean") is not None for a in results["aggregate"]):
        body.append(
            H.section(
                "Is the poison learned? (shortcut probe)",
                H.paragraph(H.escape(SHORTCUT_NOTE))
                + H.paragraph("Shortcut accuracy (%, final epoch):")
                + H.table(*matrix(results, "shortcut_acc"))
                + H.paragraph("Clean-train accuracy (%, final epoch):")
                + H.table(*matrix(results, "clean_train_acc")),
            )
        )
    if results["notes"]:
        body.append(H.section("Notes", "<ul>" + "".join(f"<li>{H.escape(n)}</li>" for n in results["notes"]) + "</ul>"))
    body.append(H.section("UD and its uncertainty", figs("ud")))
    body.append(H.section("SAL per layer and epoch (Figure 4)", figs("sal")))
    body.append(H.section("Learnable threshold beta (Figure 5)", figs("beta")))
    body.append(H.section("Test accuracy per epoch", figs("accuracy")))
    body.append(H.section("Poisons: samples and crafting cost", figs("samples") + H.table(*_costs(results))))
    betas = [
        [b["defense"], b["seed"], b["beta"], b["clean_lp"], b["sal_mode"], b["sal_origin"], len(b["layers"])]
        for b in results["betas"]
    ]
    body.append(
        H.section(
            "Runs",
            H.table(*_runs(results))
            + H.paragraph("Thresholds:")
            + H.table(["defense", "seed", "beta", "#LP clean", "SAL mode", "L0 origin", "layers"], betas)
            + H.paragraph(
                "Every number here is read from the run folders (metrics.jsonl, summary.json) and the poison files; "
                "<code>uebench report DIR</code> rebuilds this page, results.json/.csv and table.md from them.",
                cls="note",
            ),
        )
    )
    atomic_write_text(path, H.page(f"uebench bench ({c['preset']})", "\n".join(body)))
    return Path(path)
