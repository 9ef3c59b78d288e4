"""What the bench-level tests share: one small bench and readers of what two benches must agree on."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from uebench.experiments.bench.run import BenchConfig, SALSettings

# clean + OPS + LSP on 96 scenes images, 2 epochs, fast SAL every epoch: a bench in seconds
SMALL = BenchConfig(
    preset="test",
    dataset="scenes",
    dataset_options={"n_train": 96, "n_test": 48},
    attacks=("ops", "lsp"),
    width=0.125,
    recipe="quick",
    epochs=2,
    batch_size=32,
    sal=SALSettings(mode="fast", rounds=1, subset=16),
    precision="fp32",
)


def results(out: Path) -> list[dict[str, str]]:
    """results.csv without what changes between two identical benches (times)."""
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


def histories(out: Path) -> dict[str, list[dict]]:
    """Every run's epoch records without their times, by run folder name."""
    return {
        p.parent.name: [
            {k: v for k, v in json.loads(line).items() if "seconds" not in k} for line in p.read_text().splitlines()
        ]
        for p in sorted(out.glob("runs/*/metrics.jsonl"))
    }
