"""Tables of the bench report: results.csv (one row per run), results-mean.csv, and table.md (the paper's Table 1
layout, then the APBench leaderboard layout: attacks x defenses)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..core.io import atomic_write_text
from ..training.shortcut import SHORTCUT_KEYS

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
    "shortcut_n",
    "learned",
    "unpaired",
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
    "poison_psnr_mean",
    "poison_psnr_worst",
    "poison_ssim_mean",
    "poison_ssim_worst",
    "run",
    "poison",
)
MEAN_COLUMNS = (
    "attack",
    "defense",
    "n",
    "seeds",
    "learned",
    "verdicts",
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
def number(value: float | None, metric: str) -> str:
    """One metric's value as every table of the report prints it: accuracies with 2 decimals ('50.00'), the shortcut
    probe with 1, UD with 3 (DIGITS); '-' where there is no value."""
    return "-" if value is None else f"{value:.{DIGITS.get(metric, 3)}f}"


def cell(agg: MeanRow | None, metric: str, seeds: int) -> str:
    """'12.34' for one seed, '12.34 ± 0.56' for several; '-' where there is no value."""
    if agg is None or agg.mean(metric) is None:
        return "-"
    m = number(agg.mean(metric), metric)
    if seeds > 1 and agg.n > 1:
        m += f" ± {number(agg.std(metric), metric)}"
    return m


def lookup(results: BenchResults) -> dict[tuple[str, str], MeanRow]:
    return {(a.attack, a.defense): a for a in results.aggregate}


def attacks_and_defenses(results: BenchResults) -> tuple[list[str], list[str]]:
    attacks = list(dict.fromkeys(a.attack for a in results.aggregate))
    return attacks, list(results.config["defenses"])


NOT_LEARNED = "not learned"


def ranked_cell(agg: MeanRow | None, metric: str, seeds: int, interval: str = "") -> str:
    """A #LP or UD cell of a poison: the number only where its verdict says the poison was learned ("partly" and
    "unknown" marked), "not learned" where the model ignored it (its number stays in results.csv)."""
    if agg is None:
        return "-"
    if agg.learned == "no":
        return NOT_LEARNED
    text = cell(agg, metric, seeds)
    if text == "-":
        return text
    text += interval
    return text if agg.learned == "yes" else f"{text} ({'verdict unknown' if agg.learned == 'unknown' else 'partly'})"


def _interval(results: BenchResults, agg: MeanRow | None) -> str:
    """' [lo, hi]': the UD's bootstrap interval, for a single seed (several seeds show their spread instead)."""
    if agg is None or agg.n != 1:
        return ""
    r = next(
        (r for r in results.rows if (r.attack, r.defense, r.seed) == (agg.attack, agg.defense, agg.seeds[0])), None
    )
    if r is None or r.ud_ci_low is None or r.ud_ci_high is None:
        return ""
    return f" [{r.ud_ci_low:.2f}, {r.ud_ci_high:.2f}]"


def table1(results: BenchResults) -> tuple[list[str], list[list[str]]]:
    """The paper's Table 1, with what says whether its numbers mean anything: rows = methods (clean first), per
    defense (the paper has one group per dataset) final accuracy, the shortcut probe (shortcut and clean-train
    accuracy), the verdict (metrics.verdict), #LP and UD with its 90% interval. A poison the model did not learn
    gets "not learned" for #LP and UD: its UD is no measure of protection."""
    attacks, defenses = attacks_and_defenses(results)
    seeds = len(results.config["seeds"])
    look = lookup(results)
    multi = len(defenses) > 1
    header = ["method"]
    for d in defenses:
        sfx = f" ({d})" if multi else ""
        header += [f"acc{sfx}", f"shortcut{sfx}", f"clean-train{sfx}", f"learned{sfx}", f"#LP{sfx}", f"UD{sfx}"]
    rows = []
    for a in attacks:
        row = [a.upper() if a != "clean" else "clean"]
        for d in defenses:
            agg = look.get((a, d))
            if a == "clean":
                row += [cell(agg, "final_test_acc", seeds), "-", "-", "-", cell(agg, "lp", seeds), "-"]
                continue
            row += [
                cell(agg, "final_test_acc", seeds),
                cell(agg, "shortcut_acc", seeds),
                cell(agg, "clean_train_acc", seeds),
                (agg.learned or "-") if agg else "-",
                ranked_cell(agg, "lp", seeds),
                ranked_cell(agg, "ud", seeds, _interval(results, agg)),
            ]
        rows.append(row)
    return header, rows


def matrix(results: BenchResults, metric: str) -> tuple[list[str], list[list[str]]]:
    """APBench leaderboard layout: rows = attacks, columns = defenses ('none' = standard training)."""
    attacks, defenses = attacks_and_defenses(results)
    seeds = len(results.config["seeds"])
    look = lookup(results)
    header = ["attack", *("standard" if d == "none" else d for d in defenses)]
    ranked = metric in ("lp", "ud", "ud_eval")  # shown only where the poison was learned

    def one(a: str, d: str) -> str:
        agg = look.get((a, d))
        if metric == "learned":
            return (agg.learned or "-") if agg and a != "clean" else "-"
        return ranked_cell(agg, metric, seeds) if ranked and a != "clean" else cell(agg, metric, seeds)

    return header, [[a.upper() if a != "clean" else "clean", *(one(a, d) for d in defenses)] for a in attacks]


# a clean #LP below this many layers per probed epoch: one layer moves a UD by more than half
SMALL_CLEAN_LP = 2.0
# what the fast-vs-faithful study (docs/results/sal-and-ud.md) found, said where UD is read
FAST_SAL_CAVEAT = (
    "UD here comes from fast SAL. Checked against the paper's faithful SAL on real poisons, fast SAL's UD agrees "
    "under the running origin on most runs and is approximate under the eval origin, where one or two layers near "
    "beta can move it by several tenths; where a conclusion rests on a UD, measure faithful SAL on the runs' kept "
    "weights (bench --keep-weights, then uebench sal-sweep DIR --modes faithful)."
)


def verdict_lines(results: BenchResults) -> list[str]:
    """The report's opening paragraph, as sentences written from this bench's own numbers: which poisons were
    learned; for the learned ones how UD relates to accuracy here (Kendall tau, its sign read out); whether the two
    SAL origins agree; and why a baseline is missing where one is."""
    from ..metrics.ranking import kendall_tau
    from ..metrics.verdict import RULE

    attacks, defenses = attacks_and_defenses(results)
    look = lookup(results)
    lines = []
    for d in defenses:
        where = "" if len(defenses) == 1 else (" under standard training" if d == "none" else f" under {d}")
        verdicts: dict[str, list[str]] = {}
        for a in attacks:
            agg = look.get((a, d))
            if a != "clean" and agg is not None and agg.learned is not None:
                verdicts.setdefault(agg.learned, []).append(a.upper())
        if not verdicts:
            continue
        parts = []
        for kind, say in (
            ("yes", "learned"),
            (
                "partly",
                "partly learned (the perturbation moves predictions, or holds the content back, without deciding them)",
            ),
            ("no", "not learned: the model ignored them, so their #LP and UD say nothing about protection"),
            ("unknown", "of unknown status (no shortcut probe, or the model learned neither poison nor content)"),
        ):
            if verdicts.get(kind):
                parts.append(f"{', '.join(verdicts[kind])} {say}")
        lines.append(f"Poisons{where}: " + "; ".join(parts) + ".")
        ranked = [look[(a, d)] for a in attacks if a != "clean" and look.get((a, d)) and look[(a, d)].ranked]
        pairs = [(m.mean("ud"), m.mean("final_test_acc")) for m in ranked]
        pairs = [(u, acc) for u, acc in pairs if u is not None and acc is not None]
        if len(pairs) < 2:
            lines.append(
                f"With {len(pairs)} learned poison{'s' if len(pairs) != 1 else ''} with a UD{where}, this bench cannot "
                "say how UD relates to accuracy; read UD as a per-poison measurement, not a ranking."
            )
        else:
            tau = kendall_tau([u for u, _ in pairs], [acc for _, acc in pairs])
            if tau is None:
                lines.append(f"UD or accuracy is the same for every learned poison{where}: no relation to read.")
            elif tau > 0:
                lines.append(
                    f"Among the {len(pairs)} learned poisons{where}, UD falls with accuracy (Kendall tau "
                    f"{tau:+.2f}): here a lower UD goes with a stronger poison, as the paper reads it."
                )
            else:
                lines.append(
                    f"Among the {len(pairs)} learned poisons{where}, UD rises as accuracy falls (Kendall tau "
                    f"{tau:+.2f}): here a higher UD goes with a stronger poison, the opposite of the paper's "
                    '"lower = more unlearnable"; do not rank these poisons by lower UD.'
                )
        clean = look.get(("clean", d))
        lp_clean = clean.mean("lp") if clean is not None and ranked else None
        if lp_clean:  # UD's denominator: how far one layer moves a UD
            lines.append(
                f"UD divides by the clean run's #LP{where}, {lp_clean:.1f} layers above beta per probed epoch: one "
                f"more such layer per epoch in a poisoned run moves its UD by {1 / lp_clean:.2f}"
                + (
                    "; a denominator this small makes every UD here unstable (on the cpu preset the clean #LP moves "
                    "between seeds, and the poisons' UD order with it: docs/results/sal-and-ud.md)."
                    if lp_clean < SMALL_CLEAN_LP
                    else "."
                )
            )
        both = [(m.mean("ud"), m.mean("ud_eval")) for m in ranked]
        both = [(r, e) for r, e in both if r is not None and e is not None]
        if len(both) >= 2:
            t = kendall_tau([r for r, _ in both], [e for _, e in both])
            gap = max(abs(r - e) for r, e in both)
            agree = t is not None and t > 0.5 and gap <= 0.5
            lines.append(
                f"The two SAL origins {'agree' if agree else 'disagree'}{where} (UD running vs eval: Kendall tau "
                f"{'-' if t is None else f'{t:+.2f}'}, largest difference {gap:.2f})"
                + (
                    "."
                    if agree
                    else ": the per-epoch offset L0(eval) - L0(running), equal for every layer of an epoch, decides "
                    "#LP under the running origin as much as the layers do; compare the heatmaps of both origins."
                )
            )
    if any("not clearly above chance" in n for n in results.notes):
        lines.append("A clean run did not learn the task, so its group has no beta, #LP or UD (see the notes).")
    if (results.config.get("sal") or {}).get("mode") == "fast" and any(m.ranked for m in results.aggregate):
        lines.append(FAST_SAL_CAVEAT)
    lines.append(f"Rule ({RULE}).")
    return lines


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
        f"{data}; {c['model']} width {c['width']:g}; recipe {r.get('name')} "
        f"({r.get('epochs')} epochs, batch {r.get('batch_size')}, "
        f"lr {r.get('lr')}, {r.get('schedule')}); attacks preset {c['attack_preset']}; SAL {sal['mode']} "
        f"(origin {sal['origin']}, eps {sal['eps']}, rounds {sal['rounds'] or 'default'}"
        + (f", {sal['subset']} probe images{_corrections(sal)}" if sal["mode"] == "fast" else "")
        + f", every {sal['every']} epoch(s)); "
        f"seeds {', '.join(map(str, seeds))}" + (" (mean ± sample std)" if len(seeds) > 1 else "")
    )


STEP_RULE_NAMES = {"sgd": "minibatch steps", "full": "full-batch steps", "steps": "faithful-size steps"}


def _corrections(sal: dict) -> str:
    """The fast mode's step rule and corrections, as the bench ran them (a folder from before an option existed ran
    with its old value: the full-batch rule, no corrections)."""
    rule = STEP_RULE_NAMES.get(sal.get("step_rule", "full"), sal.get("step_rule"))
    on = [name for name, key in (("cross-fitted", "crossfit"), ("anchored", "anchor")) if sal.get(key, False)]
    return f", {rule}, {' and '.join(on) if on else 'no corrections'}"


SHORTCUT_NOTE = (
    "shortcut = accuracy, against the poison's labels, on clean images of other classes carrying the poisoned "
    "images' perturbations; clean-train = accuracy on the clean originals of the poisoned training images. "
    "A working poison: shortcut high, clean-train near chance. Shortcut near 0: the model reads the host image's "
    "content and ignores the perturbation, i.e. it never picked the poison up (uebench.training.shortcut)."
)


def markdown_report(results: BenchResults) -> str:
    attacks, defenses = attacks_and_defenses(results)
    out = [
        f"# uebench bench ({results.bench.preset})\n",
        setting_line(results) + "\n",
        "## What this bench says\n",
        "".join(f"- {line}\n" for line in verdict_lines(results)),
        "## Table 1: accuracy (final, %), whether the poison was learned, #LP and UD\n",
        "acc = final test accuracy; shortcut and clean-train = the shortcut probe (%); learned = the verdict; #LP = "
        "(epoch, layer) cells with SAL > beta, per epoch; UD = #LP / #LP(clean), with its 90% bootstrap interval "
        "(one seed). A poison that was not learned has no #LP or UD here (results.csv keeps them). beta comes from "
        "the clean run"
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
            "### Was the poison learned?\n",
            markdown_table(*matrix(results, "learned")),
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
