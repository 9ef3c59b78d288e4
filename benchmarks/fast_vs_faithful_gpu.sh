#!/usr/bin/env bash
# The fast-vs-faithful SAL study at full size on a GPU: the `cpu` preset's 5,000-image bench on the real CIFAR-10
# subset, every snapshot, two faithful passes each (benchmarks/fast_vs_faithful.py). Installs the pinned torch (its
# CUDA build, what PyPI serves for Linux) and uebench into .venv-gpu like gpu_check.sh. Resumable: rerun it to go on;
# each snapshot's faithful result lands in benchmarks/results/fast_vs_faithful/cpu-n5000/ as soon as it is measured.
# Two workers share the device (each claims a snapshot pass before measuring it).
#   bash benchmarks/fast_vs_faithful_gpu.sh [--data-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_venv.sh
gpu_venv fast_vs_faithful_gpu
run() { .venv-gpu/bin/python benchmarks/fast_vs_faithful.py --subset 5000 --device cuda "$@"; }
run --phase bench "$@"
run --phase faithful "$@" & run --phase faithful "$@"
wait
run --phase report "$@"
