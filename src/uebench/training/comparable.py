"""Which runs may be put side by side: UD divides one run's #LP by another's, so both must be measured alike.

A run folder says what made it (config.json, manifest.json) and how its SAL was measured (the epoch records'
sal_mode and sal_settings, the probed layers). Two runs are comparable when they agree on the data (dataset and its
options), the model (name, width), the training recipe as resolved, the precision the run trained in, and the SAL
settings (mode, eps, rounds, lr, probe subset, augmentation, batch, corrections, layers), and the pretrained weights a
run started from (their sha256) with the modules it froze. The poison, the defense and the seed may differ: they are
what a comparison is about.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from ..metrics.fast_sal import BEFORE_OPTION

# the SAL settings that change what a SAL value means (not what it cost, nor the anchor's per-run shift)
SAL_KEYS = (
    "eps",
    "rounds",
    "lr",
    "batch_size",
    "augment",
    "probe_size",
    "subset",
    "crossfit",
    "anchor",
    "step_rule",
    "rescore",
)


def _read(path: Path) -> dict[str, Any]:
    from ..core.io import read_json

    return read_json(path) if path.is_file() else {}


def run_settings(run_dir: str | Path, records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The settings of a run that comparability looks at, read from its folder."""
    from .records import read_metrics

    run_dir = Path(run_dir)
    config, manifest = _read(run_dir / "config.json"), _read(run_dir / "manifest.json")
    records = read_metrics(run_dir) if records is None else records
    probed = next((r for r in records if isinstance(r.get("sal"), dict) and r["sal"]), {})
    recipe = dict(config.get("resolved_recipe") or {})
    recipe.pop("description", None)  # prose
    sal = probed.get("sal_settings") or {}
    if probed.get("sal_mode") == "fast":
        sal = {**BEFORE_OPTION, **sal}  # a fast record older than an option measured with its old value
    return {
        "dataset": config.get("dataset"),
        "dataset options": config.get("dataset_options") or {},
        "model": config.get("model"),
        "width": config.get("width"),
        "recipe": recipe or config.get("recipe"),
        "precision": manifest.get("precision", config.get("precision")),
        "SAL mode": probed.get("sal_mode"),
        **{f"SAL {k}": sal[k] for k in SAL_KEYS if k in sal},
        "SAL layers": sorted(probed.get("sal", {})),
        # a pretrained start (--init-from) and what it froze: said only by runs that have one, so a run from scratch
        # compares as before, and a pretrained run never beside a run from scratch
        **({"init sha256": config["init_sha256"]} if config.get("init_sha256") else {}),
        **({"frozen": config["freeze"]} if config.get("freeze") else {}),
    }


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """'name (value in a vs value in b)' for every setting the two differ in."""

    def show(v: Any) -> str:
        text = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)
        return text if len(text) <= 60 else text[:57] + "..."

    other_mode = a.get("SAL mode") != b.get("SAL mode")  # then the estimators' own settings say nothing more
    out = []
    for key in dict.fromkeys([*a, *b]):
        if other_mode and key.startswith("SAL ") and key not in ("SAL mode", "SAL layers"):
            continue
        if a.get(key) != b.get(key):
            if key == "SAL layers":
                out.append(f"SAL layers ({len(a.get(key) or [])} vs {len(b.get(key) or [])} probed, not the same)")
            else:
                out.append(f"{key} ({show(a.get(key))} vs {show(b.get(key))})")
    return out


def check_comparable(reference: str | Path, others: list[str | Path], *, force: bool = False) -> list[str]:
    """Refuse (UserError, one line naming each setting that differs) runs measured unlike `reference`; with
    `force`, return the lines instead so the caller can print them beside its result."""
    base = run_settings(reference)
    found = []
    for other in others:
        diff = differences(base, run_settings(other))
        if diff:
            found.append(f"{other} differs from {reference} in: {'; '.join(diff)}")
    if found and not force:
        raise UserError(
            found[0]
            + (f" (and {len(found) - 1} more run(s))" if len(found) > 1 else "")
            + "; --force compares them anyway"
        )
    return found
