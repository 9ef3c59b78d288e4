"""Do bench, crosstask and landscape still compute the same results? Runs a tests-sized version of each command at one
thread, then prints one digest per result file, with what legitimately changes between two runs left out (times,
dates, host, git revision). Run it before and after a refactor and diff the two outputs:

    python benchmarks/identity_check.py runs/identity-before > before.txt
    python benchmarks/identity_check.py runs/identity-after > after.txt && diff before.txt after.txt

Tensors (poisons, kept weights, checkpoints) are hashed by their bytes; JSON, JSONL and CSV by their content without
the volatile fields. Figures and HTML are skipped (they show the same numbers, drawn).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

VOLATILE = re.compile(
    r"(seconds|_time|^time$|created|updated|started|host|git_revision|platform|wall|^out$|path|source|^run$|^dir$)"
)
COMMANDS = {
    "bench": [
        "bench",
        "--data-option",
        "n_train=120",
        "--data-option",
        "n_test=60",
        "--attacks",
        "ops,em",
        "--width",
        "0.125",
        "--epochs",
        "2",
        "--sal-subset",
        "16",
        "--sal-rounds",
        "1",
        "--sal-every",
        "1",
        "--precision",
        "fp32",
        "--attack-option",
        "em.max_rounds=1",
        "--keep-weights",
    ],
    "crosstask": [
        "crosstask",
        "--data-option",
        "n_train=96",
        "--data-option",
        "n_test=48",
        "--tasks",
        "class,segment",
        "--attacks",
        "ops",
        "--epochs",
        "2",
        "--width",
        "0.125",
        "--sal-subset",
        "16",
    ],
    "landscape": [
        "landscape",
        "--dataset",
        "scenes",
        "--attack",
        "ops",
        "--subset",
        "200",
        "--epochs",
        "2",
        "--grid",
        "9",
        "--eval-size",
        "100",
    ],
}


def clean(obj):
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items() if not VOLATILE.search(str(k))}
    if isinstance(obj, list):
        return [clean(v) for v in obj]
    if isinstance(obj, float):
        return float.hex(obj)  # exact
    return obj


def digest_file(path: Path) -> str | None:
    h = hashlib.sha256()
    suffix = path.suffix
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        for k, v in sorted(load_file(str(path)).items()):
            h.update(k.encode() + v.numpy().tobytes())
    elif suffix == ".pt":
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
        for k, v in sorted(state["model"].items()):
            h.update(k.encode() + v.numpy().tobytes())
        h.update(json.dumps(clean(state["history"]), sort_keys=True).encode())
    elif suffix == ".json":
        h.update(json.dumps(clean(json.loads(path.read_text())), sort_keys=True).encode())
    elif suffix == ".toml":  # a config written for `--config`: its values, not its header comment
        import tomllib

        h.update(json.dumps(clean(tomllib.loads(path.read_text())), sort_keys=True).encode())
    elif suffix == ".jsonl":
        for line in path.read_text().splitlines():
            h.update(json.dumps(clean(json.loads(line)), sort_keys=True).encode())
    elif suffix in (".npy", ".md"):  # raw arrays; tables rendered from the numbers
        h.update(path.read_bytes())
    elif suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        h.update(json.dumps([clean(r) for r in rows], sort_keys=True).encode())
    else:
        return None
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--commands", default=",".join(COMMANDS))
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for name in args.commands.split(","):
        folder = args.out / name
        if not folder.exists():
            subprocess.run(
                [sys.executable, "-m", "uebench.cli", *COMMANDS[name], "--out", str(folder), "--quiet"],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            d = digest_file(path)
            if d is not None:
                # run and poison folders are named by a hash of their settings: the name is part of the identity
                print(f"{d}  {name}/{path.relative_to(folder)}")


if __name__ == "__main__":
    main()
