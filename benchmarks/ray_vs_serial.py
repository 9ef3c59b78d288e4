"""Wall time of one small bench, serial against Ray with two workers, in one process on this machine.

    python benchmarks/ray_vs_serial.py OUT [--n-train 512] [--epochs 3]

Both benches are the same (clean + OPS + LSP + EM, SAL every epoch); the serial one runs with as many torch threads as
Ray's two workers hold together (2), each Ray task with one. Prints both times and their ratio. On a 2-core machine
the gain can only come from running two runs side by side with one thread each instead of one run with two.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from uebench.experiments.bench.ray_executor import run_bench_on_ray
from uebench.experiments.bench.run import BenchConfig, SALSettings, run_bench


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--n-train", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    config = BenchConfig(
        preset="ray-bench",
        dataset="scenes",
        dataset_options={"n_train": args.n_train, "n_test": 256},
        attacks=("ops", "lsp", "em"),
        attack_params={"em": {"max_rounds": 2}},
        width=0.125,
        epochs=args.epochs,
        sal=SALSettings(mode="fast", rounds=2, subset=128),
        precision="fp32",
    )
    shutil.rmtree(args.out, ignore_errors=True)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    run_bench(config, args.out / "serial", progress=False, log=None)
    serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_bench_on_ray(config, args.out / "ray", cpus_per_run=1, num_cpus=2, log=None)
    on_ray = time.perf_counter() - t0  # includes starting the local cluster
    print(
        f"serial (2 threads): {serial:.1f} s | ray (2 workers x 1 thread): "
        f"{on_ray:.1f} s | ratio {serial / on_ray:.2f}x"
    )


if __name__ == "__main__":
    main()
