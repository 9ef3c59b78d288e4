"""The bench report, rebuilt from the bench folder alone (bench.json, run folders, poison files, samples).

    paths = write_bench_report("runs/quick")      # results.json, results.csv, table.md, PNGs, report.html

beta comes from the clean run trained under the same defense and seed as the poisoned runs it measures, so a
UD under JPEG compares a JPEG-trained poisoned run with a JPEG-trained clean run (a defense changes the clean
run's SAL too). #LP and UD are computed by uebench.metrics (ud_table); nothing here re-derives them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io import atomic_write_json, atomic_write_text, read_json
from ..lock import FolderLock
from ..metrics.shortcut import SHORTCUT_KEYS

RESULTS_JSON, RESULTS_CSV, RESULTS_MEAN_CSV, TABLE_MD, REPORT_HTML = (
    "results.json",
    "results.csv",
    "results-mean.csv",
    "table.md",
    "report.html",
)
FIGURES_INDEX = "figures.json"  # the names of the figures the report wrote
REPORT_FILES = (RESULTS_JSON, RESULTS_CSV, RESULTS_MEAN_CSV, TABLE_MD, REPORT_HTML, FIGURES_INDEX)
REPORTED_METRICS = ("final_test_acc", "peak_test_acc", "lp", "ud", "ud_eval", *SHORTCUT_KEYS)


def poison_meta(path: Path) -> dict[str, Any] | None:
    """The metadata of a poison file, read from its header only (no image bytes)."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {})["uebench_poison"])
    except Exception:
        return None


def _read_run(folder: Path) -> dict[str, Any]:
    """What a run folder holds: status, per-epoch records, summary (None until finished)."""
    from ..records import METRICS as METRICS_FILE
    from ..records import SUMMARY, read_metrics

    history = read_metrics(folder) if (folder / METRICS_FILE).exists() else []
    summary = read_json(folder / SUMMARY) if (folder / SUMMARY).exists() else None
    return {"history": history, "summary": summary}


def _mean_offset(history: list[dict[str, Any]]) -> float | None:
    """Mean over probed epochs of L0(eval) - L0(running): the part of every layer's running-origin SAL that is the
    same for all layers of an epoch (BatchNorm's train/eval gap, augmentation, weights moving during the epoch)."""
    offsets = [h["sal_offset"] for h in history if isinstance(h.get("sal_offset"), (int, float))]
    return sum(offsets) / len(offsets) if offsets else None


def collect(out: str | Path) -> dict[str, Any]:
    """Every number of the report, as one JSON-able dict (written as results.json)."""
    from ..bench_folder import CLEAN, read_bench
    from ..metrics import load_run_sal, ud_table

    out = Path(out)
    saved, plan = read_bench(out)
    config = saved["config"]
    poisons = {
        p.file: {
            "label": p.label,
            "seed": p.seed,
            "file": p.file,
            "attack": p.attack,
            "source": p.source,
            "meta": poison_meta(out / p.file),
        }
        for p in plan.poisons
    }
    rows: list[dict[str, Any]] = []
    curves: dict[str, dict[str, list]] = {}
    for spec in plan.runs:
        folder = out / spec.dir
        got = _read_run(folder)
        s, hist = got["summary"], got["history"]
        epochs = (s or {}).get("epochs") or (hist[0].get("epochs") if hist else None)
        meta = poisons[spec.poison]["meta"] if spec.poison else None
        from ..trainer import TrainConfig

        recipe = TrainConfig(**spec.train).resolved_recipe().to_dict()
        recipe.pop("description", None)  # prose, not a setting
        rows.append(
            {
                "attack": spec.attack,
                "defense": spec.defense,
                "seed": spec.seed,
                "status": "finished" if s else ("unfinished" if hist else "not started"),
                "epochs_done": len(hist),
                "epochs": recipe["epochs"] if epochs is None else epochs,
                "final_test_acc": s["final_test_acc"] if s else None,
                "peak_test_acc": s["peak_test_acc"] if s else None,
                "peak_epoch": s["peak_epoch"] if s else None,
                "final_train_acc": s["final_train_acc"] if s else None,
                # the shortcut probe (poisoned runs only): does the model follow the poison or the content?
                **{k: (s or {}).get(f"final_{k}") for k in SHORTCUT_KEYS},
                "lp": None,
                "ud": None,
                "beta": None,
                "ud_ci_low": None,
                "ud_ci_high": None,
                "lp_eval": None,
                "ud_eval": None,
                "beta_eval": None,
                "sal_offset": _mean_offset(hist),
                "craft_seconds": meta["craft_seconds"] if meta else (0.0 if spec.poison is None else None),
                "craft_epoch_equivalents": meta["epoch_equivalents"]
                if meta
                else (0.0 if spec.poison is None else None),
                "train_seconds": sum(h.get("train_seconds", 0.0) for h in hist),
                "sal_seconds": sum(h.get("sal_seconds", 0.0) for h in hist),
                "model": spec.train["model"],
                "width": spec.train["width"],
                "recipe": recipe["name"],
                "recipe_settings": recipe,
                "precision": (s or {}).get("precision"),
                "device": (s or {}).get("device"),
                "poison_norm": meta["norm"] if meta else None,
                "poison_budget": meta["budget"] if meta else None,
                "run": spec.dir,
                "poison": spec.poison,
            }
        )
        curves[spec.dir] = {
            "epoch": [h["epoch"] for h in hist],
            "test_acc": [h.get("test_acc") for h in hist],
            "train_acc": [h.get("train_acc") for h in hist],
            "train_loss": [h.get("train_loss") for h in hist],
        }

    # beta, #LP and UD per (defense, seed), against that defense's clean run
    notes: list[str] = []
    betas: list[dict[str, Any]] = []
    for key in sorted(
        {(r["defense"], r["seed"]) for r in rows},
        key=lambda k: (config["defenses"].index(k[0]) if k[0] in config["defenses"] else 99, k[1]),
    ):
        group = [r for r in rows if (r["defense"], r["seed"]) == key and r["status"] == "finished"]
        clean = next((r for r in group if r["attack"] == CLEAN), None)
        if clean is None:
            notes.append(f"defense {key[0]}, seed {key[1]}: the clean run is not finished, so no beta, #LP or UD")
            continue
        try:
            clean_sal = load_run_sal(out / clean["run"])
            others = [r for r in group if r is not clean]
            beta, ud_rows = ud_table(clean_sal, [load_run_sal(out / r["run"], layers=clean_sal.layers) for r in others])
        except UserError as e:
            notes.append(f"defense {key[0]}, seed {key[1]}: {e}")
            continue
        for r, u in zip([clean, *others], ud_rows):
            r["lp"], r["ud"], r["beta"], r["ud_ci_low"], r["ud_ci_high"] = u.lp, u.ud, beta, u.ud_ci_low, u.ud_ci_high
        try:  # the same search read with the other origin's L0 (the eval loss of W0 on the probe data)
            clean_eval = load_run_sal(out / clean["run"], origin="eval")
            beta_eval, eval_rows = ud_table(
                clean_eval,
                [load_run_sal(out / r["run"], layers=clean_eval.layers, origin="eval") for r in others],
                bootstrap=0,
            )
            for r, u in zip([clean, *others], eval_rows):
                r["lp_eval"], r["ud_eval"], r["beta_eval"] = u.lp, u.ud, beta_eval
        except UserError as e:
            notes.append(f"defense {key[0]}, seed {key[1]}, eval origin: {e}")
        betas.append(
            {
                "defense": key[0],
                "seed": key[1],
                "beta": beta,
                "clean_lp": ud_rows[0].lp,
                "clean_run": clean["run"],
                "sal_mode": clean_sal.mode,
                "sal_origin": clean_sal.origin,
                "layers": clean_sal.layers,
            }
        )
    unfinished = [r["run"] for r in rows if r["status"] != "finished"]
    if unfinished:
        notes.append(
            f"{len(unfinished)} of {len(rows)} runs are not finished: rerun the bench command to complete them"
        )
    num_classes = None
    for spec in plan.runs:  # the data as the runs saw it (manifest.json of any started run)
        m = out / spec.dir / "manifest.json"
        if m.is_file():
            num_classes = (read_json(m) or {}).get("train_set", {}).get("num_classes")
            break
    return {
        "bench": {
            "preset": config["preset"],
            "config": config,
            "identity": saved["identity"],
            "updated": saved.get("updated"),
            "num_classes": num_classes,
        },
        "rows": rows,
        "aggregate": aggregate(rows, config),
        "betas": betas,
        "poisons": list(poisons.values()),
        "curves": curves,
        "notes": notes,
    }


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return None, None
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0  # sample std over seeds
    return m, sd


def aggregate(rows: list[dict[str, Any]], config: dict[str, Any]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per (attack, defense), in plan order."""
    keys: list[tuple[str, str]] = []
    for r in rows:
        if (r["attack"], r["defense"]) not in keys:
            keys.append((r["attack"], r["defense"]))
    out = []
    for attack, defense in keys:
        group = [r for r in rows if (r["attack"], r["defense"]) == (attack, defense)]
        done = [r for r in group if r["status"] == "finished"]
        agg: dict[str, Any] = {"attack": attack, "defense": defense, "seeds": [r["seed"] for r in done], "n": len(done)}
        for m in (*REPORTED_METRICS, "craft_seconds", "train_seconds"):
            agg[f"{m}_mean"], agg[f"{m}_std"] = _mean_std([r[m] for r in done])
        out.append(agg)
    return out


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


def write_bench_report(out: str | Path) -> list[Path]:
    """Write results.json, results.csv (results-mean.csv with several seeds), table.md, the figures and report.html."""
    from . import bench_figures, bench_page, tables

    out = Path(out)
    # not while a bench writes there (re-entrant: the bench itself calls this under its lock); a bench holds it briefly
    with FolderLock(out, wait=120):
        return _write_report(out, bench_figures, bench_page, tables)


def _write_report(out: Path, bench_figures, bench_page, tables) -> list[Path]:
    results = collect(out)
    paths = [out / RESULTS_JSON]
    atomic_write_json(out / RESULTS_JSON, results)
    paths.append(tables.write_csv(results["rows"], out / RESULTS_CSV, tables.RUN_COLUMNS))
    if len(results["bench"]["config"]["seeds"]) > 1:
        paths.append(tables.write_csv(results["aggregate"], out / RESULTS_MEAN_CSV, tables.MEAN_COLUMNS))
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
