"""Do the paper's Table 1 claims hold on poisons that work? Read from finished bench folders, under both SAL origins.

For each bench folder (one seed each, e.g. `uebench bench --preset cpu ... --out runs/sal-claims-s0`) it reads
results.csv and the run folders, and prints for the running origin (the public code's L0) and the eval origin:
- the share of layers whose SAL, averaged over probed epochs, is lower under each poison than on clean data
  (the paper's Figure 4: UEs lower the SAL of most layers);
- UD per attack with its bootstrap interval, and whether TAP's UD is above 1 (the paper: 1.639, the exception);
- Kendall tau of UD over the six attacks the paper lists against its CIFAR-10 column;
- Kendall tau of UD against final test accuracy and against the shortcut probe (does UD track unlearnability?).

    python benchmarks/sal_claims.py runs/sal-claims-s0 [runs/sal-claims-s1 ...]
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import numpy as np

from uebench.metrics.ranking import kendall_tau
from uebench.training.records import load_run_sal

PAPER_UD = {"em": 0.187, "rem": 0.464, "dc": 0.301, "tap": 1.639, "lsp": 0.343, "ops": 0.157}  # Table 1, CIFAR-10


def tau(a: list[float], b: list[float]) -> str:
    t = kendall_tau(a, b)
    return "-" if t is None else f"{t:+.2f}"


def one_bench(folder: Path, origin_key: str) -> dict:
    with open(folder / "results.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["defense"] == "none" and r["status"] == "finished"]
    clean = next(r for r in rows if r["attack"] == "clean")
    origin = None if origin_key == "ud" else "eval"
    c = load_run_sal(folder / clean["run"], origin=origin)
    out = {}
    for r in rows:
        if r["attack"] == "clean" or not r[origin_key]:
            continue
        p = load_run_sal(folder / r["run"], layers=c.layers, origin=origin)
        lower = float(np.mean(p.sal.mean(0) < c.sal.mean(0)))
        out[r["attack"]] = {
            "ud": float(r[origin_key]),
            "acc": float(r["final_test_acc"]),
            "shortcut": float(r["shortcut_acc"]) if r["shortcut_acc"] else float("nan"),
            "lower": lower,
            "ci": (r.get("ud_ci_low"), r.get("ud_ci_high")) if origin_key == "ud" else None,
            "clean_acc": float(clean["final_test_acc"]),
            "learned": r.get("learned") or "unknown",
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("benches", nargs="+", type=Path)
    args = ap.parse_args()
    for key, name in (("ud", "running origin (public code, Table 1)"), ("ud_eval", "eval origin (the formula)")):
        per = [one_bench(b, key) for b in args.benches]
        attacks = [a for a in per[0] if all(a in x for x in per)]
        print(f"\n### {name}, {len(per)} seed(s)\n")
        print(
            "| attack | acc % | shortcut % | learned (per seed) | UD (mean) | UD interval (seed 0) "
            "| layers with lower SAL than clean |"
        )
        print("|---|---|---|---|---|---|---|")
        for a in attacks:
            ud = statistics.mean(x[a]["ud"] for x in per)
            ci = per[0][a]["ci"]
            cis = f"{float(ci[0]):.2f} - {float(ci[1]):.2f}" if ci and ci[0] else "-"
            print(
                f"| {a.upper()} | {statistics.mean(x[a]['acc'] for x in per):.1f} | "
                f"{statistics.mean(x[a]['shortcut'] for x in per):.1f} | {', '.join(x[a]['learned'] for x in per)} "
                f"| {ud:.3f} | {cis} | "
                f"{statistics.mean(x[a]['lower'] for x in per):.0%} |"
            )
        mean = {a: {k: statistics.mean(x[a][k] for x in per) for k in ("ud", "acc", "shortcut")} for a in attacks}
        six = [a for a in PAPER_UD if a in mean]
        print(f"\nclean accuracy {statistics.mean(x[attacks[0]]['clean_acc'] for x in per):.1f}%")
        print(f"TAP UD > 1: {mean['tap']['ud'] > 1 if 'tap' in mean else 'n/a'}")
        print(
            f"Kendall tau, UD vs the paper's CIFAR-10 column ({', '.join(six)}): "
            f"{tau([mean[a]['ud'] for a in six], [PAPER_UD[a] for a in six])}"
        )
        print(
            f"Kendall tau, UD vs final accuracy (all {len(attacks)} attacks): "
            f"{tau([mean[a]['ud'] for a in attacks], [mean[a]['acc'] for a in attacks])}"
        )
        print(
            f"Kendall tau, UD vs shortcut accuracy: "
            f"{tau([mean[a]['ud'] for a in attacks], [mean[a]['shortcut'] for a in attacks])}"
        )
        learned = [a for a in attacks if all(x[a]["learned"] in ("yes", "partly") for x in per)]
        print(
            f"Kendall tau, UD vs final accuracy, learned on every seed ({', '.join(learned) or 'none'}): "
            f"{tau([mean[a]['ud'] for a in learned], [mean[a]['acc'] for a in learned])}"
        )


if __name__ == "__main__":
    main()
