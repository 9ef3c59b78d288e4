"""Tables of the bench report: results.csv (one row per run), results-mean.csv, and table.md (the paper's Table 1
layout, then the APBench leaderboard layout: attacks x defenses)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..io import atomic_write_text
from ..metrics.shortcut import SHORTCUT_KEYS

if TYPE_CHECKING:
    from .results import BenchResults, MeanRow

RUN_COLUMNS = (
    "attack",
    "defense",
    "seed",
    "status",
    "epochs_done",
    "epochs",
    "final_test_acc",
    "peak_test_acc",
    "peak_epoch",
    "final_train_acc",
    "shortcut_acc",
    "clean_train_acc",
    "lp",
    "ud",
    "ud_ci_low",
    "ud_ci_high",
    "beta",
    "lp_eval",
    "ud_eval",
    "beta_eval",
    "sal_offset",
    "craft_seconds",
    "craft_epoch_equivalents",
    "train_seconds",
    "sal_seconds",
    "model",
    "width",
    "recipe",
    "recipe_settings",
    "precision",
    "device",
    "poison_norm",
    "poison_budget",
    "run",
    "poison",
)
MEAN_COLUMNS = (
    "attack",
    "defense",
    "n",
    "seeds",
    *(
        f"{m}_{s}"
        for m in (
            "final_test_acc",
            "peak_test_acc",
            "lp",
            "ud",
            "ud_eval",
            *SHORTCUT_KEYS,
            "craft_seconds",
            "train_seconds",
        )
        for s in ("mean", "std")
    ),
)
DIGITS = {
    "final_test_acc": 2,
    "peak_test_acc": 2,
    "lp": 2,
    "ud": 3,
    **dict.fromkeys(SHORTCUT_KEYS, 1),
}  # the first four as the paper prints them


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True)
    return v  # numbers at full precision: the CSV must equal the run records


def write_csv(rows: Sequence[dict[str, Any]], path: Path, columns: Sequence[str]) -> Path:
    """One row per record (the records' to_dict()), the columns in the order given."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    atomic_write_text(path, buf.getvalue())
    return Path(path)


# ---- formatted cells ---------------------------------------------------------------------------------------------
def cell(agg: MeanRow | None, metric: str, seeds: int) -> str:
    """'12.34' for one seed, '12.34 ± 0.56' for several; '-' where there is no value."""
    if agg is None or agg.mean(metric) is None:
        return "-"
    d = DIGITS.get(metric, 3)
    m = f"{agg.mean(metric):.{d}f}"
    if seeds > 1 and agg.n > 1:
        m += f" ± {agg.std(metric):.{d}f}"
    return m


def lookup(results: BenchResults) -> dict[tuple[str, str], MeanRow]:
    return {(a.attack, a.defense): a for a in results.aggregate}


def attacks_and_defenses(results: BenchResults) -> tuple[list[str], list[str]]:
    attacks = list(dict.fromkeys(a.attack for a in results.aggregate))
    return attacks, list(results.config["defenses"])


def table1(results: BenchResults) -> tuple[list[str], list[list[str]]]:
    """The paper's Table 1: rows = methods (clean first), one (acc, #LP, UD) column group per defense (the paper
    has one per dataset). The clean row's UD is '-' as in the paper."""
    attacks, defenses = attacks_and_defenses(results)
    seeds = len(results.config["seeds"])
    look = lookup(results)
    multi = len(defenses) > 1
    header = ["method"]
    for d in defenses:
        sfx = f" ({d})" if multi else ""
        header += [f"acc{sfx}", f"#LP{sfx}", f"UD{sfx}"]
    rows = []
    for a in attacks:
        row = [a.upper() if a != "clean" else "clean"]
        for d in defenses:
            agg = look.get((a, d))
            row += [
                cell(agg, "final_test_acc", seeds),
                cell(agg, "lp", seeds),
                "-" if a == "clean" else cell(agg, "ud", seeds),
            ]
        rows.append(row)
    return header, rows


def matrix(results: BenchResults, metric: str) -> tuple[list[str], list[list[str]]]:
    """APBench leaderboard layout: rows = attacks, columns = defenses ('none' = standard training)."""
    attacks, defenses = attacks_and_defenses(results)
    seeds = len(results.config["seeds"])
    look = lookup(results)
    header = ["attack", *("standard" if d == "none" else d for d in defenses)]
    return header, [
        [a.upper() if a != "clean" else "clean", *(cell(look.get((a, d)), metric, seeds) for d in defenses)]
        for a in attacks
    ]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def setting_line(results: BenchResults) -> str:
    c = results.config
    r = results.rows[0].recipe_settings if results.rows else {}
    data = (
        c["dataset"]
        + (f" {c['dataset_options']}" if c["dataset_options"] else "")
        + (f", subset {c['subset']}" if c["subset"] else "")
    )
    sal = c["sal"]
    seeds = c["seeds"]
    return (
        f"{data}; {c['model']} width {c['width']:g}; recipe {r.get('name')} ({r.get('epochs')} epochs, batch {r.get('batch_size')}, "
        f"lr {r.get('lr')}, {r.get('schedule')}); attacks preset {c['attack_preset']}; SAL {sal['mode']} "
        f"(origin {sal['origin']}, eps {sal['eps']}, rounds {sal['rounds'] or 'default'}"
        + (f", {sal['subset']} probe images{_corrections(sal)}" if sal["mode"] == "fast" else "")
        + f", every {sal['every']} epoch(s)); "
        f"seeds {', '.join(map(str, seeds))}" + (" (mean ± sample std)" if len(seeds) > 1 else "")
    )


def _corrections(sal: dict) -> str:
    """The fast mode's corrections, as the bench ran them (a folder from before they existed ran without them)."""
    on = [name for name, key in (("cross-fitted", "crossfit"), ("anchored", "anchor")) if sal.get(key, False)]
    return f", {' and '.join(on)}" if on else ", no corrections"


SHORTCUT_NOTE = (
    "shortcut = accuracy, against the poison's labels, on clean images of other classes carrying the poisoned "
    "images' perturbations; clean-train = accuracy on the clean originals of the poisoned training images. "
    "A working poison: shortcut high, clean-train near chance. Shortcut near 0: the model reads the host image's "
    "content and ignores the perturbation, i.e. it never picked the poison up (uebench.metrics.shortcut)."
)


def markdown_report(results: BenchResults) -> str:
    attacks, defenses = attacks_and_defenses(results)
    out = [
        f"# uebench bench ({results.bench.preset})\n",
        setting_line(results) + "\n",
        "## Table 1: accuracy (final, %), #LP and UD\n",
        "acc = final test accuracy; #LP = (epoch, layer) cells with SAL > beta, per epoch; UD = #LP / #LP(clean). "
        "beta comes from the clean run"
        + (
            " trained under the same defense (UD under a defense compares with a clean run under that defense)"
            if len(defenses) > 1
            else ""
        )
        + ".\n",
        markdown_table(*table1(results)),
    ]
    if len(defenses) > 1:
        out += [
            "## Attack x defense (APBench leaderboard layout)\n",
            "### Final test accuracy (%)\n",
            markdown_table(*matrix(results, "final_test_acc")),
            "### Peak test accuracy (%)\n",
            markdown_table(*matrix(results, "peak_test_acc")),
            "### UD (reference: the clean run under the same defense)\n",
            markdown_table(*matrix(results, "ud")),
        ]
    else:
        out += ["## Peak test accuracy (%)\n", markdown_table(*matrix(results, "peak_test_acc"))]
    if any(a.mean("shortcut_acc") is not None for a in results.aggregate):
        out += [
            "## Is the poison learned? (shortcut probe, final epoch, %)\n",
            SHORTCUT_NOTE + "\n",
            "### Shortcut accuracy\n",
            markdown_table(*matrix(results, "shortcut_acc")),
            "### Clean-train accuracy\n",
            markdown_table(*matrix(results, "clean_train_acc")),
        ]
    if results.notes:
        out += ["## Notes\n", "".join(f"- {n}\n" for n in results.notes)]
    return "\n".join(s.strip("\n") + "\n" for s in out)
